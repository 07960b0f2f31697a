"""Inference benchmark: VIVID editing vs stock diffusers' CogVideoXPipeline, side by side, same process, same shape.

    python benchmarks/bench_inference.py --size tiny                       # CPU, the tiny model
    python benchmarks/bench_inference.py --size 5b --attention-backend auto --merge-lora --fuse-qkv --compile
    python benchmarks/bench_inference.py --size 5b --cache fbc --json
    python benchmarks/bench_inference.py --size 5b --memory group_offload --vae-tiling   # the 24 GB mode
    python benchmarks/bench_inference.py --size tiny --steps 1 --frames 5 --height 32 --width 48  # CI smoke

--size 5b builds the CogVideoX-5B architecture (and T5-XXL) with random weights on the GPU: timings and memory
are those of the real model; outputs are noise. Printed per configuration: seconds per denoising step (median),
total seconds per edit (T5 + VAE + all steps), peak memory, and model FLOPs utilisation of the denoising steps
(analytic FLOPs from vivid.flops.counter / step time / measured matmul FLOP/s). Ratios to stock are the figures to quote.
Seconds are wall time on a GPU and the process's CPU time on a CPU (steadier on a shared machine).
On CPU each configuration runs in its own Python process (--no-isolate to share one), so that its peak memory
(the process's max RSS, which never goes down) is its own.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch

from common import (
    add_isolation_arguments,
    add_shape_arguments,
    build_components,
    clock_name,
    default_dtype,
    measure_peak_flops,
    median,
    new_transformer,
    peak_memory,
    pick_device,
    print_report,
    run_isolated,
    shape_of_run,
    sync,
    timer,
    wants_isolation,
)

from vivid.flops.counter import architecture, formulas_for
from vivid.speed import ATTENTION_BACKENDS, CACHES, MEMORY_MODES, SpeedOptions, apply_speed_options


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_shape_arguments(p)
    p.add_argument("--steps", type=int, default=None, help="denoising steps (default: 50 for 5b, 10 for tiny)")
    p.add_argument("--guidance", type=float, default=6.0)
    p.add_argument("--repeats", type=int, default=1, help="timed edits per configuration (after one warm-up)")
    p.add_argument("--no-stock", dest="stock", action="store_false", help="skip the stock baseline")
    p.add_argument("--no-vivid-default", dest="vivid_default", action="store_false",
                   help="skip VIVID with default settings (run only the optimised configuration)")
    p.add_argument("--attention-backend", choices=ATTENTION_BACKENDS, default=None)
    p.add_argument("--merge-lora", action="store_true")
    p.add_argument("--fuse-qkv", action="store_true")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--compile-mode", default=None)
    p.add_argument("--cache", choices=CACHES, default=None)
    p.add_argument("--cache-threshold", type=float, default=0.05)
    p.add_argument("--cache-interval", type=int, default=3)
    p.add_argument("--vae-tiling", action="store_true")
    p.add_argument("--memory", choices=MEMORY_MODES, default="none")
    p.add_argument("--json", action="store_true")
    add_isolation_arguments(p, CONFIGS)
    return p.parse_args(argv)


CONFIGS = ("stock", "vivid-default", "vivid-options")


def speed_options(args: argparse.Namespace, device: torch.device) -> SpeedOptions:
    return SpeedOptions(
        attention_backend=args.attention_backend, merge_lora=args.merge_lora, fuse_qkv=args.fuse_qkv,
        compile=args.compile, compile_mode=args.compile_mode, cache=args.cache, cache_threshold=args.cache_threshold,
        cache_interval=args.cache_interval, vae_tiling=args.vae_tiling, memory=args.memory, device=str(device),
    )


def selected_configs(args: argparse.Namespace, device: torch.device) -> list[str]:
    """The configurations this run measures, in order (the first is the baseline of the ratios)."""
    if args.only is not None:
        return [args.only]
    chosen = [name for name, on in (("stock", args.stock), ("vivid-default", args.vivid_default)) if on]
    if speed_options(args, device) != SpeedOptions(device=str(device)):
        chosen.append("vivid-options")
    return chosen


def edit_inputs(frames: int, height: int, width: int):
    rng = np.random.RandomState(0)
    video = rng.randint(0, 256, (frames, height, width, 3), dtype=np.uint8)
    mask = np.zeros((frames, height, width), bool)
    mask[:, height // 4 : 3 * height // 4, width // 4 : 3 * width // 4] = True
    return video, mask


def timed_run(name: str, call, device: torch.device, repeats: int) -> dict:
    """Warm up once, then time `repeats` full runs; per-step times come from the step-end callback."""
    step_times: list[float] = []
    last = [0.0]
    clock = timer(device)

    def on_step_end(pipe, i, t, kwargs):
        sync(device)
        now = clock()
        step_times.append(now - last[0])
        last[0] = now
        return kwargs

    call(on_step_end)  # warm-up (compilation, allocator, cuDNN autotuning)
    step_times.clear()
    row: dict = {"name": name}
    totals = []
    with peak_memory(device, row):
        for _ in range(repeats):
            sync(device)
            t0 = last[0] = clock()
            call(on_step_end)
            sync(device)
            totals.append(clock() - t0)
    # the first step of each run also carries T5 + VAE encode: drop it from the per-step median
    per_run = len(step_times) // repeats
    steady = [s for k, s in enumerate(step_times) if k % per_run != 0] or step_times
    row["step_s"] = median(steady)
    row["total_s"] = median(totals)
    return row


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = pick_device(args.size, args.device)
    configs = selected_configs(args, device)
    if not configs:
        raise SystemExit("nothing to run: keep stock or VIVID default, or give an option")
    if wants_isolation(args, device, configs):
        rows, extra = run_isolated(__file__, list(sys.argv[1:] if argv is None else argv), configs)
        print_report("inference: VIVID vs stock CogVideoXPipeline", rows, rows[0]["name"], extra, args.json)
        return 0
    dtype = default_dtype(device)
    frames, height, width = shape_of_run(args)
    steps = args.steps or (50 if args.size == "5b" else 10)
    spec, arch = architecture(args.size, "cogvideox")  # the FLOPs count through the base's formulas
    flops = formulas_for(spec)
    tr_config, text_tokens = arch["transformer"], flops.text_tokens(arch)
    cfg_batch = 2 if args.guidance > 1 else 1
    peak = measure_peak_flops(device, dtype)

    from diffusers import CogVideoXPipeline

    from vivid.pipeline import VIVIDPipeline

    comps = build_components(args.size, device, dtype)
    video, mask = edit_inputs(frames, height, width)
    prompt = "a red ball rolling on the grass"
    rows = []

    def vivid_pipe(seed: int):
        transformer = new_transformer(args.size, device, dtype, seed)
        pipe = VIVIDPipeline(**{**comps, "transformer": transformer})
        transformer.add_adapter(pipe.spec.lora_config())  # VIVID inference carries the rank-32 LoRA
        pipe.transformer.to(device=device, dtype=dtype)
        pipe.set_progress_bar_config(disable=True)
        return pipe

    def vivid_call(pipe):
        return lambda cb: pipe(video=video, mask=mask, prompt=prompt, task="add", height=height, width=width,
                               num_inference_steps=steps, guidance_scale=args.guidance,
                               generator=torch.Generator().manual_seed(0), output_type="np",
                               paste_back_source=False, callback_on_step_end=cb)

    fwd = flops.transformer_forward(tr_config, frames, height, width, text_tokens, batch=cfg_batch)
    stock_fwd = flops.transformer_forward(tr_config, frames, height, width, text_tokens, batch=cfg_batch,
                                          in_channels=spec.latent_channels, lora_rank=0)

    if "stock" in configs:
        pipe = CogVideoXPipeline(**{**comps, "transformer": comps["transformer"]})
        pipe.to(device)
        pipe.set_progress_bar_config(disable=True)
        row = timed_run("stock CogVideoXPipeline", lambda cb: pipe(
            prompt=prompt, height=height, width=width, num_frames=frames, num_inference_steps=steps,
            guidance_scale=args.guidance, generator=torch.Generator().manual_seed(0), output_type="np",
            # the stock default is 226 text tokens (the 5B's); the tiny model takes 16, as VIVIDPipeline uses
            max_sequence_length=text_tokens, callback_on_step_end=cb), device, args.repeats)
        row["mfu"] = sum(stock_fwd.values()) / row["step_s"] / peak
        rows.append(row)
        del pipe
    comps["transformer"] = None  # the VIVID rows build their own (36-channel, LoRA) transformer
    if "vivid-default" in configs:
        pipe = vivid_pipe(10)
        pipe.to(device)
        row = timed_run("vivid (default settings)", vivid_call(pipe), device, args.repeats)
        row["mfu"] = sum(fwd.values()) / row["step_s"] / peak
        rows.append(row)
        del pipe
    options = speed_options(args, device)
    if "vivid-options" in configs:
        pipe = vivid_pipe(10)
        if args.memory != "none":
            pipe.to("cpu")
        resolved = apply_speed_options(pipe, options)
        label = ", ".join(f"{k}={v}" for k, v in resolved.to_dict().items()
                          if v != getattr(SpeedOptions(), k) and k != "device")
        row = timed_run(f"vivid ({label})", vivid_call(pipe), device, args.repeats)
        row["mfu"] = sum(fwd.values()) / row["step_s"] / peak  # with a cache: effective (skipped work counted)
        row["options"] = resolved.to_dict()
        rows.append(row)
    extra = {
        "size": args.size, "device": torch.cuda.get_device_name(device) if device.type == "cuda" else str(device),
        "dtype": str(dtype).replace("torch.", ""), "shape": f"{frames}x{height}x{width}", "steps": steps,
        "guidance": args.guidance, "matmul_peak_tflops": peak / 1e12,
        "transformer_tflops_per_step_vivid": sum(fwd.values()) / 1e12,
        "transformer_tflops_per_step_stock": sum(stock_fwd.values()) / 1e12,
        "isolated": False, "clock": clock_name(device),
    }
    baseline = rows[0]["name"]
    print_report("inference: VIVID vs stock CogVideoXPipeline", rows, baseline, extra, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
