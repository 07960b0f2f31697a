"""`vivid train --config YAML [key=value ...] [--resume latest|PATH | --overwrite]`: train VIVID (see docs/training.md).

One process here; for several GPUs or machines use `./launch.sh` or `accelerate launch -m train ...`, which run
this same entry point.
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="YAML training config (configs/tiny.yaml, configs/vivid-5b.yaml)")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="dotted overrides, e.g. optim.lr=1e-4 data.frames=9 checkpoint.output_dir=runs/x")
    p.add_argument("--resume", default=None, metavar="latest|PATH",
                   help="resume from the newest checkpoint of the run folder, or from a checkpoint folder")
    p.add_argument("--overwrite", action="store_true",
                   help="start afresh in a run folder that holds an earlier run: its files are moved aside into "
                        "<output_dir>/previous-<n>/ (nothing is deleted); without it such a folder is refused")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("train", help="train VIVID (LoRA + patch embedding) with accelerate")
    add_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Train; a run stopped by non-finite losses or by bad data is a one-line error (CLIError), not a traceback."""
    from data_loaders.errors import DataError
    from train.config import load_config
    from train.trainer import NonFiniteLossError, train
    from vivid.cli import CLIError

    if args.resume and args.overwrite:
        raise CLIError("--resume continues the run in the output folder and --overwrite moves it aside: pass one")
    config = load_config(args.config, args.overrides)
    try:
        result = train(config, resume=args.resume, overwrite=args.overwrite)
    except NonFiniteLossError as err:
        raise CLIError(str(err)) from err
    except DataError as err:
        raise CLIError(f"data: {err}") from err
    loss = f"{result.loss:.6f}" if result.loss is not None else "n/a"
    print(f"trained to step {result.step} (loss {loss}); checkpoint: {result.checkpoint}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """The `python -m train` entry point (what `accelerate launch -m train` runs on every process)."""
    parser = argparse.ArgumentParser(prog="python -m train", description="train VIVID")
    add_arguments(parser)
    args = parser.parse_args(argv)
    from train.config import ConfigError
    from vivid.cli import CLIError

    try:
        return run(args)
    except (ConfigError, CLIError, FileNotFoundError, FileExistsError) as err:
        print(f"train: error: {err}", file=sys.stderr)
        return 2
