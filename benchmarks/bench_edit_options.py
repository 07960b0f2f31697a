"""One `vivid edit` with a speed or memory flag, through the CLI's own loading code, on a tiny base (prints JSON).

    python benchmarks/bench_edit_options.py --family wan --device cuda --flags "--memory sequential" --json

The tiny bases make the row about the path, not the figure: that the option loads, places and samples on this
device through `vivid edit` (offload hooks, attention kernels, compilation, caches), as a user runs it. Time and
peak GPU memory are printed all the same; docs/performance.md's figures come from bench_inference.py.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere in the checkout

from vivid.cli import main as vivid_main  # noqa: E402
from vivid.io.video import write_video  # noqa: E402


def write_inputs(folder: Path, frames: int = 9, height: int = 64, width: int = 96) -> tuple[Path, Path]:
    """A random-texture video and a box mask (the frames do not matter to the path)."""
    video = np.random.default_rng(0).integers(0, 255, (frames, height, width, 3), dtype=np.uint8)
    mask = np.zeros((height, width), np.uint8)
    mask[height // 4 : 3 * height // 4, width // 4 : 3 * width // 4] = 255
    cv2.imwrite(str(folder / "mask.png"), mask)
    return write_video(folder / "in.mp4", video, 8.0, lossless=True), folder / "mask.png"


def tiny_model(family: str, folder: Path) -> Path:
    if family == "wan":
        from vivid.model.tiny_wan import write_tiny_wan_model

        return write_tiny_wan_model(folder / "tiny-wan", seed=0)
    from vivid.model.tiny import write_tiny_model

    return write_tiny_model(folder / "tiny-cogvideox", seed=0)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--family", choices=["cogvideox", "wan"], default="cogvideox")
    p.add_argument("--flags", default="", help="vivid edit's speed/memory flags, as one string")
    p.add_argument("--device", default=None)
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--json", action="store_true", help="(always JSON; accepted for gpu_suite.sh)")
    args = p.parse_args(argv)
    flags = shlex.split(args.flags)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    with tempfile.TemporaryDirectory(prefix="bench-edit-options-") as tmp:
        tmp = Path(tmp)
        video, mask = write_inputs(tmp)
        model = tiny_model(args.family, tmp)
        if device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        code = vivid_main(["edit", "--model", str(model), "--video", str(video), "--mask", str(mask), "--out",
                           str(tmp / "out.mp4"), "--task", "add", "--prompt", "a red ball", "--steps",
                           str(args.steps), "--guidance", "6", "--device", device, *flags])
        seconds = time.perf_counter() - t0
        if code != 0:
            raise SystemExit(f"vivid edit {args.flags} failed (exit {code})")
    row = {"family": args.family, "flags": args.flags, "device": device, "seconds": round(seconds, 3)}
    if device.startswith("cuda"):
        row["peak_gpu_gb"] = torch.cuda.max_memory_allocated() / 2**30
    print(json.dumps(row))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
