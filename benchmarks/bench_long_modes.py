"""`--long-mode chain` against `parallel` on a long synthetic-world video (a shape moving across a panning textured
background, many model clips): drift of the edited entity (per clip, the colour distance of the edit region to
the first keyframe's, and synthetic TA: does the region show the caption's colour and shape), boundary TC at the
clip joins (`vivid.metrics.boundary`), BP, and wall time; and the keyframes of the parallel plan edited jointly
against one by one (how well they agree with each other).

    python benchmarks/bench_long_modes.py --model MODEL [--weights W] --clips 10 --steps 4 --out-dir long-modes

Modes: "chain"; "parallel" as the weights allow (their vivid_config's kive_last_frame_prob: the report's
`between_keyframes` says whether its clips ran between two keyframes or fell back to chaining); with
--assume-last-frame-kive also "parallel-between" (every clip between two joint keyframes, the weights' config
overridden: for weights trained without it, the mechanics only, not the quality). --no-keyframes skips the
keyframe comparison.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from data_loaders.synthetic import Entity, background, entity_masks, render
from vivid.cli.edit import add_model_arguments, load_pipeline
from vivid.io.video import read_video, write_video
from vivid.longvideo.joint_keyframes import JointKeyframeOptions, edit_keyframes_jointly
from vivid.longvideo.parallel import JOINT, last_frame_kive
from vivid.longvideo.request import edit_request
from vivid.longvideo.runner import chain_edit
from vivid.metrics.boundary import boundary_tc, pixel_features
from vivid.metrics.bp import background_preservation
from vivid.metrics.synthetic import synthetic_alignment
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


def region_colour(frames: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """The mean RGB colour inside the masks over the frames."""
    return np.concatenate([f[m] for f, m in zip(frames, masks)]).astype(np.float64).mean(axis=0)


def written(clips: list[dict]) -> list[range]:
    """The frames each clip writes to the output."""
    return [range(c["write_start"], c["write_stop"] + 1) for c in clips if c["write_stop"] >= c["write_start"]]


def drift(frames: np.ndarray, masks: np.ndarray, clips: list[dict]) -> list[float]:
    """Per clip: the distance (RGB, 0-255) of the mean colour inside the mask over the clip's written frames to
    the mean colour inside the mask at frame 0 (the first keyframe)."""
    first = region_colour(frames[:1], masks[:1])
    return [float(np.linalg.norm(region_colour(frames[r], masks[r]) - first)) for r in written(clips)]


def clip_alignment(frames: np.ndarray, masks: np.ndarray, clips: list[dict], prompt: str) -> list[dict]:
    """Per clip: synthetic TA of its written frames against the caption "a COLOUR SHAPE"."""
    color, shape = prompt.split()[-2:]
    return [synthetic_alignment(frames[r], masks[r], color, shape) for r in written(clips)]


def keyframe_agreement(keyframes: list[np.ndarray], masks: list[np.ndarray], prompt: str) -> dict:
    """How a set of edited keyframes agree with each other and with the caption "a COLOUR SHAPE": the mean RGB
    distance between the edit regions' mean colours over all pairs and to keyframe 0's; the fraction showing the
    caption (synthetic TA), and the fractions sharing the most common colour and shape found (a keyframe where
    none was found counts as disagreeing)."""
    from collections import Counter

    colours = [region_colour(k[None], m[None]) for k, m in zip(keyframes, masks)]
    pairs = [np.linalg.norm(a - b) for i, a in enumerate(colours) for b in colours[i + 1:]]
    color, shape = prompt.split()[-2:]
    found = [synthetic_alignment(k[None], m[None], color, shape) for k, m in zip(keyframes, masks)]

    def agreement(key: str) -> float:
        values = Counter(f[key] for f in found if f[key] is not None)
        return values.most_common(1)[0][1] / len(found) if values else 0.0

    return {"keyframes": len(keyframes), "colour_distance_pairs": round(float(np.mean(pairs)), 1),
            "colour_distance_to_first": round(float(np.mean([np.linalg.norm(c - colours[0]) for c in colours[1:]])), 1),
            "synthetic_ta": round(float(np.mean([f["match"] for f in found])), 2),
            "colour_agreement": round(agreement("color"), 2), "shape_agreement": round(agreement("shape"), 2),
            "found": [f"{f['color'] or '-'} {f['shape'] or '-'}" for f in found]}


def compare_keyframes(pipe: Any, frames: np.ndarray, masks: np.ndarray, keyframe_frames: list[int], args) -> dict:
    """The parallel plan's keyframes edited jointly (one pass, AAS's budget as asked) and one by one (keyframe i
    alone with seed + i, as it is seeded in the joint pass), with the same sampling: their agreement each."""
    options = JointKeyframeOptions(task="modify", kv_budget=args.kv_budget, num_inference_steps=args.steps,
                                   guidance_scale=args.guidance, seed=args.seed)
    keys, key_masks = [frames[t] for t in keyframe_frames], [masks[t] for t in keyframe_frames]
    prompts = [args.prompt] * len(keys)
    t0 = time.perf_counter()
    joint = edit_keyframes_jointly(pipe, keys, key_masks, prompts, options)
    t1 = time.perf_counter()
    alone = [edit_keyframes_jointly(pipe, [k], [m], [args.prompt], replace(options, seed=args.seed + i))[0]
             for i, (k, m) in enumerate(zip(keys, key_masks))]
    t2 = time.perf_counter()
    for name, images in (("joint", joint), ("one_by_one", alone)):
        write_video(args.out_dir / f"keyframes_{name}.mp4", np.stack(images), 1.0, lossless=True)
    return {"frames": keyframe_frames,
            "joint": {**keyframe_agreement(joint, key_masks, args.prompt), "seconds": round(t1 - t0, 1)},
            "one_by_one": {**keyframe_agreement(alone, key_masks, args.prompt), "seconds": round(t2 - t1, 1)}}


def run_mode(pipe: Any, mode: str, video: Path, masks: np.ndarray, out_dir: Path, args) -> dict:
    long_mode = "chain" if mode == "chain" else "parallel"
    saved = pipe.vivid_config
    if mode == "parallel-between":
        from vivid.model.weights import VIVIDWeightsConfig

        pipe.vivid_config = VIVIDWeightsConfig(kive_last_frame_prob=0.5)
    try:
        t0 = time.perf_counter()
        request = edit_request(video, masks, args.prompt, "modify", out_dir / f"{mode}.mp4", clip_frames=9,
                               boundaries="fixed", num_inference_steps=args.steps, guidance_scale=args.guidance,
                               seed=args.seed, lossless=True, keep_work=True, long_mode=long_mode,
                               kv_budget=args.kv_budget, restart=True)
        result = chain_edit(pipe, request)
        seconds = time.perf_counter() - t0
    finally:
        pipe.vivid_config = saved
    frames, _ = read_video(result.path)
    source, _ = read_video(video)
    clips = result.plan.to_json()["clips"]
    per_clip = drift(frames, masks, clips)
    found = clip_alignment(frames, masks, clips, args.prompt)
    tc = boundary_tc(pixel_features(frames), result.plan.seams())
    return {"clips": len(clips), "between_keyframes": sum(c["last_key"] == JOINT for c in clips),
            "seconds": round(seconds, 1), "drift_per_clip": [round(d, 1) for d in per_clip],
            "drift_last_clip": round(per_clip[-1], 1), "drift_mean": round(float(np.mean(per_clip)), 1),
            "synthetic_ta_per_clip": [int(f["match"]) for f in found],
            "synthetic_ta": round(float(np.mean([f["match"] for f in found])), 2),
            "found_per_clip": [f"{f['color'] or '-'} {f['shape'] or '-'}" for f in found],
            "tc_boundary": round(tc.tc_boundary, 2), "tc_inside": round(tc.tc_inside, 2), "tc_gap": round(tc.gap, 2),
            "bp": round(background_preservation(source, frames, masks), 2)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_model_arguments(p)
    p.add_argument("--clips", type=int, default=10, help="model clips of 9 frames (sharing their end frames)")
    p.add_argument("--height", type=int, default=96)
    p.add_argument("--width", type=int, default=160)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--guidance", type=float, default=None, help="guidance scale (default: the base's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--kv-budget", type=int, default=None)
    p.add_argument("--prompt", default="a red square")
    p.add_argument("--assume-last-frame-kive", action="store_true")
    p.add_argument("--no-keyframes", dest="keyframes", action="store_false",
                   help="skip the keyframes edited jointly against one by one")
    p.add_argument("--out-dir", type=Path, default=Path("long-modes"))
    args = p.parse_args()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    frames, masks = synthetic_long_video(8 * args.clips + 1, args.height, args.width, args.seed)
    video = write_video(args.out_dir / "source.mp4", frames, 24.0, lossless=True)
    pipe = load_pipeline(args)
    between = last_frame_kive(pipe)
    print(f"weights {'with' if between else 'without'} last-frame KIVE: parallel runs "
          + ("every clip between two joint keyframes" if between else "joint keyframes + chaining (the fallback)"))
    modes = ["chain", "parallel"] + (["parallel-between"] if args.assume_last_frame_kive else [])
    report: dict[str, Any] = {"weights_last_frame_kive": between}
    report.update((mode, run_mode(pipe, mode, video, masks, args.out_dir, args)) for mode in modes)
    if args.keyframes:
        report["keyframes"] = compare_keyframes(pipe, frames, masks, list(range(0, len(frames), 8)), args)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
