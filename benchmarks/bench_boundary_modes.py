"""Adaptive clip boundaries against fixed windows: edit one video once per boundary mode and measure each output's
boundary TC (`vivid.metrics.boundary`) and the clips that span a true hard cut. An experiment, not part of vivid:
run it on a video joined from several shots, e.g.

    python benchmarks/bench_boundary_modes.py --model MODEL --video joined.mp4 --mask mask.png --prompt "..." \
        --task add --cuts 60,120 --out-dir boundary-modes
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vivid.cli.edit import add_model_arguments, load_pipeline
from vivid.io.video import VideoSource, read_video
from vivid.longvideo.request import EditOptions, edit_request
from vivid.longvideo.runner import chain_edit
from vivid.metrics.boundary import boundary_tc, cut_spanning, pixel_features


def compare_boundary_modes(
    pipe: Any,
    video: str | os.PathLike,
    mask: str | os.PathLike | np.ndarray,
    prompt: str | None,
    task: str,
    out_dir: str | os.PathLike,
    cuts: Sequence[int] = (),
    modes: Sequence[str] = ("fixed", "adaptive"),
    **options: Any,
) -> dict[str, dict]:
    """Edit `video` once per boundary mode and measure each output's boundary TC (pixel features): TC at the
    seams against TC inside clips, with the pairs across `cuts` (true hard cuts) left out for every mode.
    The source's TC at the same pairs is reported too, since seams at content changes are less alike anyway, and
    `cut_spanning` (`vivid.metrics.boundary.cut_spanning`): the clips that span one of `cuts`, which TC cannot see."""
    out_dir = Path(out_dir)
    reader = VideoSource(video)  # one forward pass over the source
    source = np.concatenate([pixel_features(reader.frames(range(s, min(s + 64, len(reader)))))
                             for s in range(0, len(reader), 64)])
    del reader
    report = {}
    for mode in modes:
        out = out_dir / f"{mode}.mp4"
        t0 = time.perf_counter()
        request = edit_request(video, mask, prompt, task, out,
                               options=EditOptions(boundaries=mode, keep_work=True, **options))
        result = chain_edit(pipe, request)
        seconds = time.perf_counter() - t0
        frames, _ = read_video(out)
        edited = pixel_features(frames)
        seams = result.plan.seams()
        report[mode] = {
            "clips": len(result.plan.clips), "seams": seams, "seconds": seconds,
            "edited": boundary_tc(edited, seams, cuts).as_dict(), "source": boundary_tc(source, seams, cuts).as_dict(),
            "cut_spanning": cut_spanning(result.plan.clips, cuts).as_dict(),
        }
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_model_arguments(p)
    p.add_argument("--video", required=True)
    p.add_argument("--mask", required=True)
    p.add_argument("--prompt", default=None)
    p.add_argument("--task", required=True)
    p.add_argument("--cuts", default="", help="frames that start a new shot, comma-separated")
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--out-dir", required=True)
    args = p.parse_args(argv)
    cuts = [int(c) for c in args.cuts.split(",") if c]
    report = compare_boundary_modes(load_pipeline(args), args.video, args.mask, args.prompt, args.task, args.out_dir,
                                    cuts=cuts, num_inference_steps=args.steps)
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
