"""`vivid init-tiny OUT_DIR`: write the tiny CogVideoX family (offline, seeded)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("init-tiny", help="write a tiny random CogVideoX family as a diffusers folder")
    p.add_argument("out_dir", help="folder to write (model_index.json, transformer/, vae/, text_encoder/, ...)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from vivid.model.tiny import write_tiny_model

    path = write_tiny_model(args.out_dir, seed=args.seed)
    print(f"wrote tiny CogVideoX model to {path}")
    return 0
