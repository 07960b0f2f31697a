"""What a base draws from text alone: text-to-video samples of the synthetic world's captions, scored by the
synthetic shape and colour metric, and a grid of them (how vivid/model/tiny_base's README figures are made).

    python -m vivid.evaluation.text_to_video MODEL_DIR --out DIR [--per-caption 4 --steps 20 --guidance 4]

Samples come from diffusers' own CogVideoXPipeline on the base folder: the base as a text-to-video model, with no
VIVID part involved.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vivid.io.atomic import write_json_atomic
from vivid.io.images import write_image
from vivid.metrics import synthetic_alignment
from vivid.synthetic_world import COLORS, SHAPES

# A synthetic shape covers 2-7% of a 64x96 frame: the whole frame is the region, so the dominant colour needs to
# cover 1% of it (the muted backgrounds have no palette colours).
MIN_COLOR_FRACTION = 0.01


def caption_grid() -> list[tuple[str, str]]:
    """(colour, shape) of every synthetic entity, colours by row."""
    return [(c, s) for c in COLORS for s in SHAPES]


@torch.no_grad()
def sample_text_to_video(
    pipe: Any, prompts: Sequence[str], frames: int, height: int, width: int, steps: int, guidance: float, seed: int
) -> list[np.ndarray]:
    """One (F, H, W, 3) uint8 video per prompt from a diffusers CogVideoXPipeline, prompt i with seed `seed + i`."""
    max_len = pipe.transformer.config.max_text_seq_length
    videos = []
    for i, prompt in enumerate(prompts):
        out = pipe(prompt=prompt, num_frames=frames, height=height, width=width, num_inference_steps=steps,
                   guidance_scale=guidance, generator=torch.Generator().manual_seed(seed + i), output_type="np",
                   max_sequence_length=max_len, use_dynamic_cfg=False).frames[0]
        videos.append((np.clip(out, 0, 1) * 255).round().astype(np.uint8))
    return videos


def score_text_to_video(video: np.ndarray, color: str, shape: str) -> dict[str, Any]:
    """Synthetic alignment of a whole text-to-video sample with its caption's colour and shape."""
    region = np.ones(video.shape[:3], bool)
    return synthetic_alignment(video, region, color, shape, min_color_fraction=MIN_COLOR_FRACTION)


def evaluate_text_to_video(
    model: str | os.PathLike, per_caption: int = 4, frames: int = 9, height: int = 64, width: int = 96,
    steps: int = 20, guidance: float = 4.0, seed: int = 0,
) -> tuple[dict[str, Any], dict[tuple[str, str], list[np.ndarray]]]:
    """Sample `per_caption` videos of each caption "a {colour} {shape}" and score them: (report, videos by
    (colour, shape)). The report has the fractions `match` (colour right and shape not contradicted),
    `color_match`, `shape_match` (of the samples whose shape can be told), `shape_told`, per shape and overall."""
    from diffusers import CogVideoXPipeline

    if per_caption < 1:
        raise ValueError(f"per_caption must be >= 1, got {per_caption}")
    pipe = CogVideoXPipeline.from_pretrained(model)
    pipe.set_progress_bar_config(disable=True)
    rows, videos = [], {}
    for k, (color, shape) in enumerate(caption_grid()):
        prompt = f"a {color} {shape}"
        found = sample_text_to_video(pipe, [prompt] * per_caption, frames, height, width, steps, guidance,
                                     seed + k * per_caption)
        videos[(color, shape)] = found
        for video in found:
            score = score_text_to_video(video, color, shape)
            rows.append(dict(prompt=prompt, color=color, shape=shape, found_color=score["color"],
                             found_shape=score["shape"], match=score["match"], color_match=score["color_match"],
                             shape_match=score["shape_match"]))

    def summary(subset: list[dict]) -> dict[str, float | int | None]:
        told = [r["shape_match"] for r in subset if r["shape_match"] is not None]
        return dict(n=len(subset), match=float(np.mean([r["match"] for r in subset])),
                    color_match=float(np.mean([r["color_match"] for r in subset])),
                    shape_match=float(np.mean(told)) if told else None, shape_told=len(told) / len(subset))

    report = dict(
        model=str(model), settings=dict(per_caption=per_caption, frames=frames, height=height, width=width,
                                        steps=steps, guidance=guidance, seed=seed),
        overall=summary(rows), per_shape={s: summary([r for r in rows if r["shape"] == s]) for s in SHAPES},
        per_color={c: summary([r for r in rows if r["color"] == c]) for c in COLORS},
        samples=rows,
    )
    return report, videos


def grid_image(videos: dict[tuple[str, str], list[np.ndarray]], frame: int | None = None, scale: int = 2) -> np.ndarray:
    """One row per colour, one column per shape and sample: the middle frame (or `frame`) of each video, uint8."""
    rows = []
    for color in COLORS:
        tiles = []
        for shape in SHAPES:
            for video in videos[(color, shape)]:
                k = len(video) // 2 if frame is None else frame
                tiles.append(np.pad(video[k], ((1, 1), (1, 1), (0, 0)), constant_values=255))
            tiles.append(np.full((tiles[-1].shape[0], 4, 3), 255, np.uint8))  # a gap between shapes
        rows.append(np.concatenate(tiles[:-1], axis=1))
    img = np.concatenate(rows, axis=0)
    return np.repeat(np.repeat(img, scale, axis=0), scale, axis=1)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m vivid.evaluation.text_to_video", description=__doc__.split("\n\n")[0])
    p.add_argument("model", help="a diffusers CogVideoX folder (e.g. `vivid init-tiny DIR --pretrained base`)")
    p.add_argument("--out", required=True, help="folder for text_to_video.json and text_to_video.png")
    p.add_argument("--per-caption", type=int, default=4, help="samples per caption (default 4)")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--guidance", type=float, default=4.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--height", type=int, default=64, help="sample height in pixels (default 64, the tiny base's)")
    p.add_argument("--width", type=int, default=96, help="sample width in pixels (default 96)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = p.parse_args(argv)
    for name in ("height", "width"):
        if getattr(args, name) < 16 or getattr(args, name) % 16:
            p.error(f"--{name} must be a positive multiple of 16, got {getattr(args, name)}")
    if args.threads:
        torch.set_num_threads(args.threads)
    report, videos = evaluate_text_to_video(args.model, per_caption=args.per_caption, height=args.height,
                                            width=args.width, steps=args.steps, guidance=args.guidance,
                                            seed=args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "text_to_video.json", report)
    write_image(out / "text_to_video.png", grid_image(videos))
    o = report["overall"]
    print(json.dumps({"overall": o, "per_shape": report["per_shape"]}, indent=2))
    print(f"wrote {out / 'text_to_video.json'} and {out / 'text_to_video.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
