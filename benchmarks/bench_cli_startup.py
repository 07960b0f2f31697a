"""Start-up time of the command line: `vivid --help` and each subcommand's `--help` beside `python -c "import torch"`.

    python benchmarks/bench_cli_startup.py            # best of 3, every subcommand
    python benchmarks/bench_cli_startup.py --runs 5 --commands edit,train

Each command runs in a fresh process (`python -m vivid.cli`, the tree this script sits in first on the path), the
commands interleaved run by run so that a busy machine slows them alike; the best of the runs is printed with its
ratio to `import torch`. The target (issue 30): every ratio at most 1.5.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def subcommands() -> list[str]:
    """The subcommands `vivid --help` lists (read from the parser, as the user sees them)."""
    sys.path.insert(0, str(REPO))
    from vivid.cli import build_parser

    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return list(action.choices)


def seconds(argv: list[str]) -> float:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per command; the best is printed")
    parser.add_argument("--commands", default=None, help="comma-separated subcommands (default: all)")
    args = parser.parse_args()
    names = args.commands.split(",") if args.commands else subcommands()
    commands = {"python -c 'import torch'": [sys.executable, "-c", "import torch"],
                "vivid --help": [sys.executable, "-m", "vivid.cli", "--help"]}
    commands.update({f"vivid {name} --help": [sys.executable, "-m", "vivid.cli", name, "--help"] for name in names})
    best = {label: float("inf") for label in commands}
    for _ in range(args.runs):
        for label, argv in commands.items():
            best[label] = min(best[label], seconds(argv))
    torch_s = best["python -c 'import torch'"]
    width = max(map(len, commands))
    print(f"{'command':<{width}}  {'best s':>7}  {'x torch':>7}   (best of {args.runs}, {os.cpu_count()} CPUs)")
    for label in commands:
        print(f"{label:<{width}}  {best[label]:7.2f}  {best[label] / torch_s:7.2f}")
    worst = max(best[label] / torch_s for label in commands if label.startswith("vivid"))
    print(f"slowest vivid command: {worst:.2f}x import torch (target <= 1.5)")


if __name__ == "__main__":
    main()
