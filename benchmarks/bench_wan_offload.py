"""A Wan edit under model CPU offload or sequential CPU offload, loaded as `vivid edit` loads it, beside the same
edit without offload (same process, same seed): that it runs (a crash or non-finite frames fail the row), how far its
frames are from the plain edit's, and its time and peak memory.

    python benchmarks/bench_wan_offload.py --memory model_offload       # on a GPU
    python benchmarks/bench_wan_offload.py --memory sequential_offload
    python benchmarks/bench_wan_offload.py --memory sequential_offload --device cpu   # CI (dry run)

The model is the tiny Wan family (vivid/model/tiny_wan.py, seeded, written to a temporary folder): the offload
paths (where the VAE's inputs go, which device the hooks run on) are the same at any size. On a GPU the pipeline
is built by `vivid.cli.edit.load_pipeline` (model offload: `--cpu-offload`) or loaded by
`VIVIDPipeline.from_pretrained` and placed by `vivid.speed.apply_speed_options(memory="sequential_offload")`. On a
CPU, where diffusers' offload needs an accelerator, accelerate's hooks are applied with the CPU as execution device
(as tests/vivid/test_pipeline_offload.py does): sequential offload still puts the weights on `meta`.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from bench_inference import edit_inputs
from common import clock_name, peak_memory, sync, timer

MEMORY_MODES = ("model_offload", "sequential_offload")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--memory", choices=MEMORY_MODES, required=True)
    p.add_argument("--device", default=None, help="default: cuda if there is one, else cpu")
    p.add_argument("--frames", type=int, default=9, help="4k+1")
    p.add_argument("--height", type=int, default=64)
    p.add_argument("--width", type=int, default=96)
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--guidance", type=float, default=5.0)
    p.add_argument("--json", action="store_true")
    return p.parse_args(argv)


def load(model: Path, device: str, offload: bool):
    """The pipeline as `vivid edit` builds it (`load_pipeline`), with `--cpu-offload` where asked and possible."""
    from vivid.cli.edit import load_pipeline

    args = SimpleNamespace(model=str(model), device=device, dtype=None, weights=None, vae_tiling=False,
                           cpu_offload=offload and device.startswith("cuda"))
    pipe = load_pipeline(args)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def offloaded(model: Path, memory: str, device: str):
    """The pipeline under `memory`: diffusers' offload on a GPU, accelerate's hooks on the CPU execution device."""
    if memory == "model_offload":
        pipe = load(model, device, offload=True)
        if not device.startswith("cuda"):
            pipe.enable_model_cpu_offload(device=device)
        return pipe
    if device.startswith("cuda"):
        from vivid.pipeline import VIVIDPipeline
        from vivid.speed import apply_speed_options

        pipe = VIVIDPipeline.from_pretrained(str(model), dtype=torch.bfloat16)
        pipe.set_progress_bar_config(disable=True)
        apply_speed_options(pipe, memory="sequential_offload", device=device)
        return pipe
    from accelerate import cpu_offload

    pipe = load(model, device, offload=False)
    for module in pipe.components.values():
        if isinstance(module, torch.nn.Module):
            cpu_offload(module, execution_device=device, offload_buffers=len(module._parameters) > 0)
    return pipe


def edit(pipe, args: argparse.Namespace) -> np.ndarray:
    video, mask = edit_inputs(args.frames, args.height, args.width)
    return pipe(video=video, mask=mask, prompt="a red ball", num_inference_steps=args.steps,
                guidance_scale=args.guidance, generator=torch.Generator().manual_seed(0), output_type="np").frames[0]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from vivid.model.tiny_wan import write_tiny_wan_model

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    with tempfile.TemporaryDirectory() as tmp:
        model = write_tiny_wan_model(Path(tmp) / "tiny-wan", seed=0)
        plain = edit(load(model, device, offload=False), args)
        pipe = offloaded(model, args.memory, device)
        clock, row = timer(torch.device(device)), {"name": f"wan_{args.memory}"}
        with peak_memory(torch.device(device), row):
            start = clock()
            frames = edit(pipe, args)
            sync(torch.device(device))
            row["total_s"] = clock() - start
    row.update(max_abs_diff_vs_plain=float(np.abs(frames - plain).max()), vae_device=str(pipe.vae.device),
               execution_device=str(pipe._execution_device), vae_dtype=str(pipe.vae.dtype))
    report = {"benchmark": "wan_offload", "device": device, "clock": clock_name(torch.device(device)),
              "shape": [args.frames, args.height, args.width], "steps": args.steps, "guidance": args.guidance,
              "results": [row]}
    print(json.dumps(report, indent=1) if args.json else report)
    if not np.isfinite(frames).all():
        print(f"{args.memory}: the edit's frames are not finite", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
