"""Cache quality benchmark: each of diffusers' caches (vivid.speed.CACHES) edits a synthetic eval set, measured
against the same model without a cache: time per edit, speed-up, the change of the synthetic metrics and the
PSNR of the cached output against the uncached one.

    python benchmarks/bench_cache_quality.py --model runs/demo/tiny-cogvideox \\
        --weights runs/demo/train/checkpoints/checkpoint-1200/vivid-weights --data runs/demo/data/eval-00000.jsonl \\
        --limit 4 --steps 15
    # on a GPU, the 5B with the fast options under every configuration (the cache on top of them):
    python benchmarks/bench_cache_quality.py --model THUDM/CogVideoX-5b --weights WEIGHTS --data eval.jsonl \\
        --steps 50 --guidance 6 --attention-backend auto --merge-lora --fuse-qkv --compile --json

Every configuration edits the same samples with the same seeds (sample i uses seed + i) through
vivid.evaluation (load_eval_samples, pipeline_editor, evaluate), from a freshly loaded pipeline. Metrics:
synthetic TA (fraction of add/modify edits showing the caption's colour and shape; higher is better), BP
(mean |source - output| outside the mask, 0-255; lower is better), remnant (fraction of a deletion region
still showing the removed colour; lower is better). PSNR compares each cached output with the uncached output
of the same sample (uint8 frames; identical outputs are reported as 100 dB). "flips": add/modify samples whose
synthetic match differs from the uncached run. Time per edit is the median time of one pipeline call (T5 + VAE +
all steps): wall time on a GPU, the process's CPU time on a CPU (less sensitive to other jobs on a shared
machine; run single-threaded, --threads 1); the transformer's share is timed by hooks on its forward.
"tr. work": the transformer FLOPs actually executed in one edit (torch's FlopCounterMode on the first warm-up
edit) relative to no cache, a noise-free measure of what the cache skips (on by default on CPU without --compile).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere in the checkout

from common import clock_name, sync, timer  # noqa: E402

from vivid.speed import ATTENTION_BACKENDS, CACHES, SpeedOptions, apply_speed_options  # noqa: E402

PSNR_IDENTICAL = 100.0  # dB reported for a bit-identical output


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="base CogVideoX: a diffusers folder or hub id")
    p.add_argument("--weights", default=None, help="VIVID weights folder (default: none, the untrained model)")
    p.add_argument("--data", required=True, nargs="+", help="eval manifest(s) (JSONL)")
    p.add_argument("--limit", type=int, default=4, help="at most N samples per task")
    p.add_argument("--caches", nargs="+", choices=("none", *CACHES), default=["none", *CACHES],
                   help="configurations to run; 'none' (the reference) is always run first")
    p.add_argument("--steps", type=int, default=15, help="denoising steps")
    p.add_argument("--guidance", type=float, default=4.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-fps", type=float, default=7.5, help="score frames resampled to this rate (0: all)")
    p.add_argument("--cache-threshold", type=float, default=0.05, help="FirstBlockCache threshold")
    p.add_argument("--cache-interval", type=int, default=3, help="PAB / TaylorSeer: recompute every N steps")
    p.add_argument("--attention-backend", choices=ATTENTION_BACKENDS, default=None,
                   help="speed options applied under every configuration, the reference included")
    p.add_argument("--merge-lora", action="store_true")
    p.add_argument("--fuse-qkv", action="store_true")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--warmup", type=int, default=1, help="untimed edits per configuration before the timed ones")
    p.add_argument("--count-flops", action=argparse.BooleanOptionalAction, default=None,
                   help="count the executed FLOPs of the first warm-up edit (default: on CPU without --compile)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    p.add_argument("--device", default=None)
    p.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default=None)
    p.add_argument("--out", default=None, help="also write the JSON report here")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    if args.limit < 1 or args.steps < 1 or args.warmup < 0:
        p.error("--limit and --steps must be >= 1, --warmup >= 0")
    return args


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR (dB) of two uint8 arrays; PSNR_IDENTICAL when they are equal."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return PSNR_IDENTICAL if mse == 0 else min(PSNR_IDENTICAL, 10 * math.log10(255.0**2 / mse))


def load_pipe(args: argparse.Namespace, device: torch.device, dtype: torch.dtype, cache: str | None):
    """A freshly loaded pipeline (no hooks left over from another configuration) with the options applied."""
    from vivid.pipeline import VIVIDPipeline

    pipe = VIVIDPipeline.from_pretrained(args.model, dtype=dtype)
    if args.weights:
        pipe.load_vivid_weights(args.weights)
    pipe.set_progress_bar_config(disable=True)
    options = SpeedOptions(
        attention_backend=args.attention_backend, merge_lora=args.merge_lora, fuse_qkv=args.fuse_qkv,
        compile=args.compile, cache=cache, cache_threshold=args.cache_threshold,
        cache_interval=args.cache_interval, device=str(device),
    )
    apply_speed_options(pipe, options)
    return pipe


def transformer_timer(transformer: torch.nn.Module, device: torch.device, seconds: list[float]) -> None:
    """Append the time (`timer(device)`) of every transformer forward to `seconds`."""
    start = [0.0]
    clock = timer(device)

    def before(module, args, kwargs):
        sync(device)
        start[0] = clock()

    def after(module, args, kwargs, output):
        sync(device)
        seconds.append(clock() - start[0])

    transformer.register_forward_pre_hook(before, with_kwargs=True)
    transformer.register_forward_hook(after, with_kwargs=True)


def counted(edit, sample, device: torch.device) -> dict[str, float]:
    """FLOPs executed by one edit: in all and in the transformer (what FlopCounterMode sees; on CPU SDPA runs
    its math kernel so that attention is counted)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    math_sdpa = sdpa_kernel(SDPBackend.MATH) if device.type == "cpu" else contextlib.nullcontext()
    with math_sdpa, FlopCounterMode(display=False) as counter:
        edit(sample)
    by_module = {name: sum(c.values()) for name, c in counter.get_flop_counts().items() if "." not in name}
    return {"total": float(counter.get_total_flops()),
            "transformer": float(by_module.get("CogVideoXTransformer3DModel", 0))}


def run_config(args, cache: str | None, samples, settings, device, dtype) -> dict:
    """Edit every sample with one configuration: timings, the eval report and the outputs by sample id."""
    from vivid.evaluation import evaluate, pipeline_editor

    pipe = load_pipe(args, device, dtype, cache)
    warm = pipeline_editor(pipe, settings)  # its own seed counter: the timed editor starts at sample 0's seed
    count = args.count_flops if args.count_flops is not None else (device.type == "cpu" and not args.compile)
    flops = None
    for i in range(args.warmup):
        if i == 0 and count:
            flops = counted(warm, samples[0], device)
        else:
            warm(samples[i % len(samples)])
    edit = pipeline_editor(pipe, settings)
    edit_s: list[float] = []
    transformer_calls: list[float] = []
    transformer_per_edit: list[float] = []
    outputs: dict[str, np.ndarray] = {}
    transformer_timer(pipe.transformer, device, transformer_calls)
    clock = timer(device)

    def timed(sample):
        transformer_calls.clear()
        sync(device)
        t0 = clock()
        out = edit(sample)
        sync(device)
        edit_s.append(clock() - t0)
        transformer_per_edit.append(sum(transformer_calls))
        outputs[sample.id] = out
        return out

    report = evaluate(samples, timed, settings, scorer=None, method=cache or "none")
    del pipe
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return {"report": report, "outputs": outputs, "edit_s": edit_s, "transformer_s": transformer_per_edit,
            "flops": flops}


def _mean(values) -> float | None:
    vals = [float(v) for v in values if v is not None]
    return float(np.mean(vals)) if vals else None


def summarize(run: dict) -> dict:
    """Time per edit and the synthetic metrics over the whole set."""
    rows = run["report"]["samples"]
    return {
        "edit_s": float(np.median(run["edit_s"])),
        "transformer_s": float(np.median(run["transformer_s"])),
        "flops": run["flops"],
        "synthetic_ta": _mean(r.get("synthetic_match") for r in rows if r["task"] != "delete"),
        "bp": _mean(r["bp"] for r in rows),
        "remnant": _mean(r.get("remnant") for r in rows if r["task"] == "delete"),
        "per_task": {t: v for t, v in run["report"].items() if t in ("add", "modify", "delete")},
    }


def compare(row: dict, ref: dict, run: dict, ref_run: dict) -> dict:
    """Speed-up, metric changes and output PSNR of one configuration against the uncached reference."""
    out = dict(row)
    out["speedup"] = ref["edit_s"] / row["edit_s"]
    out["transformer_speedup"] = ref["transformer_s"] / row["transformer_s"] if row["transformer_s"] else None
    out["transformer_work"] = (row["flops"]["transformer"] / ref["flops"]["transformer"]
                               if row["flops"] and ref["flops"] and ref["flops"]["transformer"] else None)
    for key in ("synthetic_ta", "bp", "remnant"):
        out[f"d_{key}"] = None if row[key] is None or ref[key] is None else row[key] - ref[key]
    out["d_bp_rel"] = out["d_bp"] / ref["bp"] if out["d_bp"] is not None and ref["bp"] else None
    values = [psnr(run["outputs"][k], ref_run["outputs"][k]) for k in ref_run["outputs"]]
    out["psnr_db_mean"] = float(np.mean(values))
    out["psnr_db_min"] = float(np.min(values))
    ref_match = {r["id"]: r.get("synthetic_match") for r in ref_run["report"]["samples"]}
    out["flips"] = sum(1 for r in run["report"]["samples"]
                       if r["task"] != "delete" and r.get("synthetic_match") != ref_match[r["id"]])
    return out


def _f(value, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def print_table(result: dict) -> None:
    print("== cache quality: each cache vs no cache, same samples and seeds")
    for k, v in result["settings"].items():
        print(f"  {k}: {v}")
    print(f"  {'cache':<12}{'s/edit':>8}{'speedup':>8}{'tr. s':>8}{'tr. x':>7}{'tr. work':>9}{'synth TA':>9}{'dTA':>7}"
          f"{'BP':>7}{'dBP %':>7}{'remnant':>8}{'dremn':>8}{'PSNR dB':>8}{'min':>6}{'flips':>6}")
    for r in result["results"]:
        print(f"  {r['cache']:<12}{r['edit_s']:>8.3f}{r['speedup']:>8.2f}{r['transformer_s']:>8.3f}"
              f"{_f(r['transformer_speedup'], '.2f'):>7}{_f(r['transformer_work'], '.3f'):>9}"
              f"{_f(r['synthetic_ta'], '.3f'):>9}"
              f"{_f(r['d_synthetic_ta'], '+.3f'):>7}{_f(r['bp'], '.2f'):>7}"
              f"{_f(None if r['d_bp_rel'] is None else 100 * r['d_bp_rel'], '+.1f'):>7}"
              f"{_f(r['remnant'], '.4f'):>8}{_f(r['d_remnant'], '+.4f'):>8}"
              f"{_f(r['psnr_db_mean'], '.1f'):>8}{_f(r['psnr_db_min'], '.1f'):>6}{r['flips']:>6}")


def main(argv: list[str] | None = None) -> int:
    from vivid.evaluation import EvalSettings, load_eval_samples

    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = getattr(torch, args.dtype or ("bfloat16" if device.type == "cuda" else "float32"))
    settings = EvalSettings(steps=args.steps, guidance=args.guidance, seed=args.seed, eval_fps=args.eval_fps or None,
                            limit=args.limit, strip_samples=0)
    samples = load_eval_samples(args.data, limit=args.limit)
    caches = ["none"] + [c for c in dict.fromkeys(args.caches) if c != "none"]
    runs, rows = {}, []
    for cache in caches:
        runs[cache] = run_config(args, None if cache == "none" else cache, samples, settings, device, dtype)
        row = {"cache": cache, **summarize(runs[cache])}
        rows.append(compare(row, rows[0] if rows else row, runs[cache], runs["none"]))
    result = {
        "benchmark": "cache quality",
        "settings": {
            "model": args.model, "weights": args.weights, "data": list(args.data), "samples": len(samples),
            "tasks": {t: sum(s.task == t for s in samples) for t in ("add", "modify", "delete")},
            "frames": f"{samples[0].frames.shape[0]}x{samples[0].frames.shape[1]}x{samples[0].frames.shape[2]}",
            "steps": args.steps, "guidance": args.guidance, "cache_threshold": args.cache_threshold,
            "cache_interval": args.cache_interval, "attention_backend": args.attention_backend,
            "merge_lora": args.merge_lora, "fuse_qkv": args.fuse_qkv, "compile": args.compile,
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else str(device),
            "dtype": str(dtype).replace("torch.", ""), "threads": torch.get_num_threads(),
            "clock": clock_name(device),
        },
        "results": rows,
    }
    text = json.dumps(result, indent=2, default=str)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
    if args.json:
        print(text)
    else:
        print_table(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
