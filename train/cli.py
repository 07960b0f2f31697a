"""`python -m train` / `accelerate launch -m train --config CONFIG [key=value ...] [--resume latest|PATH | --overwrite]`.

`run` is also what `vivid train` runs; it reports a run stopped by non-finite losses or by bad data as `RunStopped`
(one line, the cause chained), not as a traceback.
"""

from __future__ import annotations

import argparse
import sys

from data_loaders.errors import DataError
from train import trainer
from train.arguments import add_arguments
from train.checkpoint import CheckpointError, CheckpointSaveError, PreviousRunError, RunFolderError
from train.config import ConfigError, load_config


class RunStopped(Exception):
    """A run that could not start or stopped early for a reason one line tells (its cause is chained)."""


def run(args: argparse.Namespace) -> int:
    """Train as the parsed arguments say and print where it ended."""
    config = load_config(args.config, args.overrides)
    try:
        result = trainer.train(config, resume=args.resume, overwrite=args.overwrite)
    except PreviousRunError as err:
        raise RunStopped(f"{err} (--resume latest continues it, --overwrite moves it aside)") from err
    except (RunFolderError, CheckpointError, CheckpointSaveError) as err:
        raise RunStopped(str(err)) from err
    except trainer.NonFiniteLossError as err:
        raise RunStopped(str(err)) from err
    except DataError as err:
        raise RunStopped(f"data: {err}") from err
    loss = f"{result.loss:.6f}" if result.loss is not None else "n/a"
    print(f"trained to step {result.step} (loss {loss}); checkpoint: {result.checkpoint}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """The `python -m train` entry point (what `accelerate launch -m train` runs on every process)."""
    parser = argparse.ArgumentParser(prog="python -m train", description="train VIVID")
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except (ConfigError, RunStopped, FileNotFoundError, FileExistsError) as err:
        print(f"train: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
