"""`vivid init-tiny OUT_DIR [--family cogvideox|wan]`: write a tiny model family (offline, seeded)."""

from __future__ import annotations

import argparse
from pathlib import Path

FAMILIES = ("cogvideox", "wan")  # vivid.model.registry.FAMILIES, named here so that `vivid --help` imports no torch


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("init-tiny", help="write a tiny random CogVideoX or Wan2.1 family as a diffusers folder")
    p.add_argument("out_dir", help="folder to write (model_index.json, transformer/, vae/, text_encoder/, ...)")
    p.add_argument("--family", choices=FAMILIES, default="cogvideox",
                   help="base model family: cogvideox (default) or wan (Wan2.1's classes)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from vivid.cli import CLIError

    out = Path(args.out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise CLIError(f"{out} exists and is not an empty folder; init-tiny writes a new folder only")
    if args.family == "wan":
        from vivid.model.tiny_wan import write_tiny_wan_model

        path = write_tiny_wan_model(args.out_dir, seed=args.seed)
        print(f"wrote tiny Wan2.1 model to {path}")
        return 0
    from vivid.model.tiny import write_tiny_model

    path = write_tiny_model(args.out_dir, seed=args.seed)
    print(f"wrote tiny CogVideoX model to {path}")
    return 0
