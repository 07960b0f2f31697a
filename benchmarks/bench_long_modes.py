"""`--long-mode chain` against `parallel` on a long synthetic-world video (a shape moving across a panning textured
background, many model clips): drift of the edited entity (per clip, the colour distance of the edit region to
the first keyframe's), boundary TC at the clip joins (`vivid.metrics.boundary`), BP, and wall time.

    python benchmarks/bench_long_modes.py --model MODEL [--weights W] --clips 10 --steps 4 --out-dir long-modes

Modes: "chain"; "parallel" as the weights allow (their vivid_config's kive_last_frame_prob); with
--assume-last-frame-kive also "parallel-between" (every clip between two joint keyframes, the weights' config
overridden: for weights trained without it, the mechanics only, not the quality).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from data_loaders.synthetic import Entity, background, entity_masks, render
from vivid.cli.edit import add_model_arguments, load_pipeline
from vivid.io.video import read_video, write_video
from vivid.longvideo.request import edit_request
from vivid.longvideo.runner import chain_edit
from vivid.metrics.boundary import boundary_tc, pixel_features
from vivid.metrics.bp import background_preservation
from vivid.segmentation.shaping import bounding_box, dilate


def synthetic_long_video(frames: int, height: int, width: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A blue circle crossing the frame left to right over a panning background, and its per-frame box mask."""
    rng = np.random.default_rng(seed)
    bg = background(rng, frames, height, width)
    radius = 0.18 * min(height, width)
    xs = np.linspace(radius + 2, width - radius - 2, frames)
    centers = np.stack([xs, np.full(frames, height / 2)], axis=1)
    entity = Entity("blue", "circle", "medium", "left to right", centers, radius)
    masks = np.stack([dilate(bounding_box(m[None]), 2, rect=True)[0] for m in entity_masks(entity, height, width)])
    return render(bg, [entity]), masks


def drift(frames: np.ndarray, masks: np.ndarray, clips: list[dict]) -> list[float]:
    """Per clip: the distance (RGB, 0-255) of the mean colour inside the mask over the clip's written frames to
    the mean colour inside the mask at frame 0 (the first keyframe)."""
    def mean_colour(idx):
        return np.concatenate([frames[t][masks[t]] for t in idx]).astype(np.float64).mean(axis=0)

    first = mean_colour([0])
    return [float(np.linalg.norm(mean_colour(range(c["write_start"], c["write_stop"] + 1)) - first))
            for c in clips if c["write_stop"] >= c["write_start"]]


def run_mode(pipe: Any, mode: str, video: Path, masks: np.ndarray, out_dir: Path, args) -> dict:
    long_mode = "chain" if mode == "chain" else "parallel"
    saved = pipe.vivid_config
    if mode == "parallel-between":
        from vivid.model.weights import VIVIDWeightsConfig

        pipe.vivid_config = VIVIDWeightsConfig(kive_last_frame_prob=0.5)
    try:
        t0 = time.perf_counter()
        request = edit_request(video, masks, args.prompt, "modify", out_dir / f"{mode}.mp4", clip_frames=9,
                               boundaries="fixed", num_inference_steps=args.steps, seed=args.seed, lossless=True,
                               keep_work=True, long_mode=long_mode, kv_budget=args.kv_budget, restart=True)
        result = chain_edit(pipe, request)
        seconds = time.perf_counter() - t0
    finally:
        pipe.vivid_config = saved
    frames, _ = read_video(result.path)
    source, _ = read_video(video)
    clips = result.plan.to_json()["clips"]
    per_clip = drift(frames, masks, clips)
    tc = boundary_tc(pixel_features(frames), result.plan.seams())
    return {"clips": len(clips), "seconds": round(seconds, 1), "drift_per_clip": [round(d, 1) for d in per_clip],
            "drift_last_clip": round(per_clip[-1], 1), "drift_mean": round(float(np.mean(per_clip)), 1),
            "tc_boundary": round(tc.tc_boundary, 2), "tc_inside": round(tc.tc_inside, 2), "tc_gap": round(tc.gap, 2),
            "bp": round(background_preservation(source, frames, masks), 2)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_model_arguments(p)
    p.add_argument("--clips", type=int, default=10, help="model clips of 9 frames (sharing their end frames)")
    p.add_argument("--height", type=int, default=96)
    p.add_argument("--width", type=int, default=160)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--kv-budget", type=int, default=None)
    p.add_argument("--prompt", default="a red square")
    p.add_argument("--assume-last-frame-kive", action="store_true")
    p.add_argument("--out-dir", type=Path, default=Path("long-modes"))
    args = p.parse_args()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    frames, masks = synthetic_long_video(8 * args.clips + 1, args.height, args.width, args.seed)
    video = write_video(args.out_dir / "source.mp4", frames, 24.0, lossless=True)
    pipe = load_pipeline(args)
    modes = ["chain", "parallel"] + (["parallel-between"] if args.assume_last_frame_kive else [])
    report = {mode: run_mode(pipe, mode, video, masks, args.out_dir, args) for mode in modes}
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
