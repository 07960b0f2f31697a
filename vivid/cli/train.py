"""`vivid train --config YAML [key=value ...] [--resume latest|PATH | --overwrite]`: train VIVID (see docs/training.md).

One process here; for several GPUs or machines use `./launch.sh` or `accelerate launch -m train ...`, which run
the same training command (train/cli.py).
"""

from __future__ import annotations

import argparse

from train.arguments import add_arguments
from vivid.cli import CLIError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("train", help="train VIVID (LoRA + patch embedding) with accelerate")
    add_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Train; a run stopped by non-finite losses or by bad data is a one-line error (CLIError), not a traceback."""
    from train.cli import RunStopped, run as run_training  # torch, diffusers: loaded when a command needs them

    try:
        return run_training(args)
    except RunStopped as err:
        raise CLIError(str(err)) from err.__cause__
