"""Probe: from how much noise does a text-to-video base keep the shape it is shown? Renders single-shape clips,
noises their latents to `strength` and denoises them with diffusers' CogVideoXVideoToVideoPipeline, captioned with
their own colour and shape, and scores the shape of the result (synthetic metric, whole frame).

    python scripts/shape_denoise_probe.py MODEL_DIR --strengths 0.3,0.6,0.9 --per-shape 8

At a low strength the layout is given and only the last denoising steps run: a shape lost there is lost to the
model's low-noise (detail) skill, not to its choice of layout. A one-off probe behind the tiny base's README.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

import numpy as np
import torch

from data_loaders.synthetic import _random_entity, background, render
from vivid.evaluation.text_to_video import score_text_to_video
from vivid.synthetic_world import COLORS, SHAPES


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model", help="a diffusers CogVideoX folder")
    p.add_argument("--strengths", default="0.3,0.6,0.9", help="comma-separated noise strengths in (0, 1]")
    p.add_argument("--per-shape", type=int, default=8)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--guidance", type=float, default=4.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    from diffusers import CogVideoXVideoToVideoPipeline
    from PIL import Image

    torch.set_num_threads(args.threads)
    pipe = CogVideoXVideoToVideoPipeline.from_pretrained(args.model)
    pipe.set_progress_bar_config(disable=True)
    rng = np.random.default_rng(args.seed)
    clips = []
    for i in range(args.per_shape * len(SHAPES)):
        shape, color = SHAPES[i % len(SHAPES)], list(COLORS)[(i // len(SHAPES)) % len(COLORS)]
        entity = _random_entity(rng, 9, 64, 96, color, shape, moving=True)
        clips.append((color, shape, render(background(rng, 9, 64, 96), [entity])))
    report = {}
    for strength in (float(s) for s in args.strengths.split(",")):
        kept = {s: 0 for s in SHAPES}
        for i, (color, shape, video) in enumerate(clips):
            out = pipe(video=[Image.fromarray(f) for f in video], prompt=f"a {color} {shape}", strength=strength,
                       num_inference_steps=args.steps, guidance_scale=args.guidance, height=64, width=96,
                       generator=torch.Generator().manual_seed(args.seed + i), output_type="np",
                       max_sequence_length=pipe.transformer.config.max_text_seq_length, use_dynamic_cfg=False).frames[0]
            out = (np.clip(out, 0, 1) * 255).round().astype(np.uint8)
            kept[shape] += bool(score_text_to_video(out, color, shape)["shape_match"])
        report[strength] = {s: k / args.per_shape for s, k in kept.items()}
        print(json.dumps({"strength": strength, "shape_kept": report[strength]}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
