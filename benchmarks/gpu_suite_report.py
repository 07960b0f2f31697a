"""Merge the JSON outputs of `benchmarks/gpu_suite.sh` into one report (called by the script).

    python benchmarks/gpu_suite_report.py RUN_DIR --mode full --seconds 431 --out gpu_suite.json

RUN_DIR holds NAME.json (a benchmark's --json output) and NAME.seconds (its wall seconds) per run. Added to the
raw results: each inference row's time of a 50-step edit, extrapolated from the measured run as its total time
(T5, VAE and the measured steps) plus the per-step time for each step it did not run; and `wan`, the Wan2.1 rows
(runs inference_wan2.1_<size>_guidance / _no_guidance, training_wan2.1_<size>) side by side per size.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
from pathlib import Path

import torch

from vivid.io.atomic import atomic_path

FULL_STEPS = 50
WAN_RUN = re.compile(r"^(inference|training)_wan2\.1_(?P<size>[0-9.]+b)(?:_(?P<what>.+))?$")


def extrapolate(rows: list[dict], steps: int) -> None:
    for row in rows:
        if "step_s" in row and "total_s" in row:
            row["extrapolated_50_step_s"] = row["total_s"] + (FULL_STEPS - steps) * row["step_s"]


def wan_summary(runs: dict[str, dict]) -> dict[str, dict]:
    """{size: {run: {row name: {step_s, total_s, peak_memory_gb, extrapolated_50_step_s}}}} of the Wan2.1 runs
    (a failed run: {"error": ...})."""
    keys = ("step_s", "total_s", "peak_memory_gb", "extrapolated_50_step_s")
    summary: dict[str, dict] = {}
    for name, run in runs.items():
        match = WAN_RUN.match(name)
        if not match:
            continue
        what = match["what"] or "training"
        rows = {"error": run["error"]} if "error" in run else {
            row["name"]: {k: row[k] for k in keys if k in row} for row in run.get("results", [])}
        summary.setdefault(match["size"], {})[what] = rows
    return summary


def device_info() -> dict:
    info = {"torch": torch.__version__, "python": platform.python_version()}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(gpu=props.name, gpu_memory_gb=round(props.total_memory / 2**30, 1), cuda=torch.version.cuda)
    else:
        info["gpu"] = None
    return info


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir")
    p.add_argument("--mode", choices=["full", "quick", "dry"], required=True)
    p.add_argument("--seconds", type=int, required=True, help="the whole suite's wall seconds")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    run_dir = Path(args.run_dir)
    runs: dict[str, dict] = {}
    for path in sorted(run_dir.glob("*.json")):
        text = path.read_text()
        try:
            result = json.loads(text)
        except json.JSONDecodeError as e:
            raise SystemExit(f"{path.name}: not the JSON a benchmark prints ({e})") from None
        result["suite_wall_s"] = int((run_dir / f"{path.stem}.seconds").read_text())
        if path.stem.startswith("inference"):
            extrapolate(result.get("results", []), int(result.get("steps", 0) or 0))
        runs[path.stem] = result
    report = {
        "suite": "benchmarks/gpu_suite.sh",
        "mode": args.mode,
        "figures_are_meaningful": args.mode != "dry",
        "wall_s": args.seconds,
        "failed_runs": sorted(name for name, run in runs.items() if "error" in run),
        **device_info(),
        "wan": wan_summary(runs),
        "runs": runs,
    }
    out = Path(args.out)
    with atomic_path(out) as tmp:
        tmp.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"wrote {out} ({len(runs)} runs, {args.seconds} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
