"""The training command's arguments, shared by `python -m train` (train/cli.py) and `vivid train`."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="YAML training config (configs/tiny.yaml, configs/vivid-5b.yaml)")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="dotted overrides, e.g. optim.lr=1e-4 data.frames=9 checkpoint.output_dir=runs/x")
    p.add_argument("--resume", default=None, metavar="latest|PATH",
                   help="resume from the newest checkpoint of the run folder, or from a checkpoint folder")
    p.add_argument("--overwrite", action="store_true",
                   help="start afresh in a run folder that holds an earlier run: its files are moved aside into "
                        "<output_dir>/previous-<n>/ (nothing is deleted); without it such a folder is refused")
