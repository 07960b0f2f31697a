"""Shared by the benchmarks: model construction at either size, timing, peak memory, achievable FLOP/s."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere in the checkout

from vivid.model.configs import (  # noqa: E402
    COGVIDEOX_5B_TRANSFORMER,
    COGVIDEOX_5B_VAE,
    COGVIDEOX_SCHEDULER,
    T5_XXL,
    TINY_TRANSFORMER,
    TINY_VAE,
)
from process_memory import peak_rss_bytes  # noqa: E402

# Default shapes: the 5B's 49x480x720; the tiny model's native 9x64x96.
SHAPES = {"5b": (49, 480, 720), "tiny": (9, 64, 96)}


def add_shape_arguments(parser) -> None:
    """--size/--frames/--height/--width/--device, shared by the benchmarks; see `shape_of_run`."""
    parser.add_argument("--size", choices=sorted(SHAPES), default="tiny")
    parser.add_argument("--frames", type=int, default=None)
    parser.add_argument("--height", type=int, default=None)
    parser.add_argument("--width", type=int, default=None)
    parser.add_argument("--device", default=None)


def add_isolation_arguments(parser: argparse.ArgumentParser, configs: tuple[str, ...]) -> None:
    """--isolate/--no-isolate and the internal --only CONFIG; see `run_isolated`."""
    parser.add_argument("--isolate", action=argparse.BooleanOptionalAction, default=None,
                        help="run each configuration in its own Python process (default: on for CPU, where the "
                             "peak memory is the process's max RSS and never goes down; off on a GPU)")
    parser.add_argument("--only", choices=configs, default=None, help=argparse.SUPPRESS)  # one configuration


def wants_isolation(args: argparse.Namespace, device: torch.device, configs: list[str]) -> bool:
    """Whether to run `configs` in subprocesses: asked for, or by default on CPU with more than one."""
    if args.only is not None or len(configs) < 2:
        return False
    return args.isolate if args.isolate is not None else device.type == "cpu"


ISOLATED_MEMORY_KIND = "process max RSS of this configuration's own process (CPU)"
SHARED_CPU_MEMORY_KIND = "process max RSS (CPU): an upper bound, includes every configuration run before it"


def run_isolated(script: str | Path, argv: list[str], configs: list[str]) -> tuple[list[dict], dict]:
    """Run `script argv --only C --json` for each configuration C in its own process; (rows, extra) merged.

    On CPU the peak memory is the process's max RSS, which only grows: in one process a later configuration
    would report at least the earlier ones' peak. Its stderr passes through; a failing configuration stops all.
    """
    rows: list[dict] = []
    extra: dict = {}
    for name in configs:
        cmd = [sys.executable, str(script), *argv, "--only", name, "--json", "--no-isolate"]
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"configuration {name!r} failed (exit {proc.returncode}): {' '.join(cmd)}")
        out = json.loads(proc.stdout[proc.stdout.index("{"):])
        for row in out.pop("results"):
            if row.get("peak_memory_kind", "").startswith("process max RSS"):
                row["peak_memory_kind"] = ISOLATED_MEMORY_KIND
            rows.append(row)
        out.pop("benchmark", None)
        extra = extra or out
    extra["isolated"] = True
    return rows, extra


def shape_of_run(args) -> tuple[int, int, int]:
    """(frames, height, width): the arguments given, else the size's default shape."""
    frames, height, width = SHAPES[args.size]
    return args.frames or frames, args.height or height, args.width or width


def pick_device(size: str, device: str | None) -> torch.device:
    if device:
        return torch.device(device)
    if size == "5b":
        if not torch.cuda.is_available():
            raise SystemExit("--size 5b needs a CUDA GPU (or pass --device meta to check shapes only)")
        return torch.device("cuda")
    return torch.device("cpu")


def default_dtype(device: torch.device) -> torch.dtype:
    return torch.bfloat16 if device.type == "cuda" else torch.float32


@torch.no_grad()
def random_init_(module: torch.nn.Module, seed: int = 0, std: float = 0.02) -> torch.nn.Module:
    """Give every parameter and buffer of a module materialised with `to_empty` a defined random value:
    matrices/convs N(0, std), norm weights 1, biases 0 (uninitialised memory may hold NaNs)."""
    gen = torch.Generator(device=next(module.parameters()).device).manual_seed(seed)
    for name, p in module.named_parameters():
        if p.dim() >= 2:
            p.normal_(0.0, std, generator=gen)
        elif "norm" in name and name.endswith("weight"):
            p.fill_(1.0)
        else:
            p.zero_()
    for _, b in module.named_buffers():
        if b.is_floating_point():
            b.zero_()
    return module


def _materialise(cls_or_fn: Callable[[], torch.nn.Module], device: torch.device, dtype: torch.dtype, seed: int):
    """Build on the meta device (no memory), then allocate on `device` in `dtype` and initialise randomly."""
    with torch.device("meta"):
        module = cls_or_fn()
    if device.type == "meta":
        return module.to(dtype)
    module = module.to_empty(device=device).to(dtype)
    random_init_(module, seed)
    # non-persistent buffers computed in __init__ (e.g. T5 has none; rotary tables are computed per call)
    return module.eval()


def build_components(size: str, device: torch.device, dtype: torch.dtype, text_encoder: bool = True, seed: int = 0):
    """tokenizer, text_encoder, vae, transformer (16 channels, stock) and scheduler at `size`.

    tiny: the project's seeded tiny family. 5b: the CogVideoX-5B architecture with random weights, built on
    the meta device and materialised directly on the GPU in `dtype` (no 20 GB of float32 on the host).
    """
    from diffusers import AutoencoderKLCogVideoX, CogVideoXDDIMScheduler, CogVideoXTransformer3DModel
    from transformers import T5Config, T5EncoderModel

    from vivid.model.tiny import build_tiny_components, build_tiny_tokenizer

    if size == "tiny":
        comps = build_tiny_components(seed)
        for name in ("text_encoder", "vae", "transformer"):  # eval: the tiny T5's dropout would draw random numbers
            comps[name] = comps[name].to(device=device, dtype=dtype).eval()
        if not text_encoder:
            comps["text_encoder"] = None
        return comps
    if size != "5b":
        raise ValueError(f"size must be tiny or 5b, got {size!r}")
    tokenizer = build_tiny_tokenizer(COGVIDEOX_5B_TRANSFORMER["max_text_seq_length"])  # ids < 512: valid for T5
    t5 = None
    if text_encoder:
        t5_config = T5Config(**T5_XXL, is_encoder_decoder=False, use_cache=False)
        t5 = _materialise(lambda: T5EncoderModel(t5_config), device, dtype, seed + 1)
    vae = _materialise(lambda: AutoencoderKLCogVideoX(**COGVIDEOX_5B_VAE), device, dtype, seed + 2)
    transformer = _materialise(lambda: CogVideoXTransformer3DModel(**COGVIDEOX_5B_TRANSFORMER), device, dtype, seed + 3)
    scheduler = CogVideoXDDIMScheduler(**COGVIDEOX_SCHEDULER)
    return dict(tokenizer=tokenizer, text_encoder=t5, vae=vae, transformer=transformer, scheduler=scheduler)


def new_transformer(size: str, device: torch.device, dtype: torch.dtype, seed: int):
    from diffusers import CogVideoXTransformer3DModel

    config = COGVIDEOX_5B_TRANSFORMER if size == "5b" else TINY_TRANSFORMER
    if size == "tiny":
        torch.manual_seed(seed)
        return CogVideoXTransformer3DModel(**config).to(device=device, dtype=dtype)
    return _materialise(lambda: CogVideoXTransformer3DModel(**config), device, dtype, seed)


def vae_config(size: str) -> dict:
    return COGVIDEOX_5B_VAE if size == "5b" else TINY_VAE


def timer(device: torch.device) -> Callable[[], float]:
    """The benchmarks' clock: wall time on a GPU; on a CPU the process's CPU time, which other jobs on a shared
    machine barely move (run single-threaded, OMP_NUM_THREADS=1, so that it equals the compute time)."""
    return time.process_time if device.type == "cpu" else time.perf_counter


def clock_name(device: torch.device) -> str:
    return "process CPU time" if device.type == "cpu" else "wall"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextmanager
def peak_memory(device: torch.device, out: dict):
    """Peak memory of the block: CUDA max allocated (GB); on CPU the process's peak RSS since it started, which
    covers everything the process ran before the block too (exact per configuration only under `run_isolated`)."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    yield
    if device.type == "cuda":
        out["peak_memory_gb"] = torch.cuda.max_memory_allocated(device) / 2**30
        out["peak_memory_kind"] = "cuda max allocated"
    else:
        out["peak_memory_gb"] = peak_rss_bytes() / 2**30
        out["peak_memory_kind"] = SHARED_CPU_MEMORY_KIND


def measure_peak_flops(device: torch.device, dtype: torch.dtype) -> float:
    """Achievable dense matmul FLOP/s here (the MFU denominator): 8192^3 on a GPU, 1024^3 on a CPU."""
    if device.type == "meta":
        return float("nan")
    n = 8192 if device.type == "cuda" else 1024
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(2):
        a @ b
    sync(device)
    reps = 10 if device.type == "cuda" else 5
    clock = timer(device)
    t0 = clock()
    for _ in range(reps):
        a @ b
    sync(device)
    return 2 * n**3 * reps / (clock() - t0)


def median(xs: list[float]) -> float:
    s = sorted(xs)
    return s[len(s) // 2] if s else float("nan")


def print_report(title: str, rows: list[dict], baseline: str, extra: dict, as_json: bool) -> None:
    """One line per configuration, and its ratios to `baseline` (the figures to quote)."""
    if not rows:
        raise SystemExit("no configuration was run")
    base = next(r for r in rows if r["name"] == baseline)
    for r in rows:
        r["time_ratio_vs_stock"] = r["step_s"] / base["step_s"]
        r["speedup_vs_stock"] = base["step_s"] / r["step_s"]
        r["memory_ratio_vs_stock"] = r["peak_memory_gb"] / base["peak_memory_gb"]
    if as_json:
        print(json.dumps({"benchmark": title, **extra, "results": rows}, indent=2, default=str))
        return
    print(f"== {title}")
    for k, v in extra.items():
        print(f"  {k}: {v}")
    kinds = sorted({r.get("peak_memory_kind", "") for r in rows})
    print(f"  peak memory: {'; '.join(kinds)}")
    print(f"  {'configuration':<34}{'s/step':>10}{'total s':>10}{'peak GB':>9}{'MFU':>7}{'speedup':>9}{'mem x':>7}")
    for r in rows:
        print(f"  {r['name']:<34}{r['step_s']:>10.4f}{r.get('total_s', float('nan')):>10.3f}"
              f"{r['peak_memory_gb']:>9.2f}{100 * r['mfu']:>6.1f}%{r['speedup_vs_stock']:>9.2f}"
              f"{r['memory_ratio_vs_stock']:>7.2f}")


def print_timings(benchmark: str, heading: str, rows: list[dict], extra: dict, as_json: bool,
                  name_width: int = 48) -> None:
    """The rows of a stock-vs-vivid run: JSON (`benchmark`, `extra`, `results`) or a line per row under `heading`."""
    if as_json:
        print(json.dumps({"benchmark": benchmark, **extra, "results": rows}, indent=2, default=str))
        return
    print(heading)
    for r in rows:
        print(f"  {r['name']:<{name_width}}{r['step_s']:>10.4f} s/step{r['total_s']:>10.3f} s total"
              f"{r['peak_memory_gb']:>9.2f} GB peak")
