"""`vivid init-tiny OUT_DIR [--family cogvideox|wan]`: write a tiny model family (offline, seeded)."""

from __future__ import annotations

import argparse
from pathlib import Path

FAMILIES = ("cogvideox", "wan", "vace")  # vivid.model.registry.FAMILIES, named here so `vivid --help` imports no torch
TRAINABLE_FAMILIES = ("cogvideox", "wan")  # the bases VIVID trains on (VACE is inference only)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("init-tiny", help="write a tiny random CogVideoX, Wan2.1 or Wan2.1-VACE family as a diffusers folder")
    p.add_argument("out_dir", help="folder to write (model_index.json, transformer/, vae/, text_encoder/, ...)")
    p.add_argument("--family", choices=FAMILIES, default="cogvideox",
                   help="base model family: cogvideox (default), wan (Wan2.1's classes) or vace (Wan2.1-VACE's, "
                        "an inference-only base)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--pretrained", choices=("none", "vae", "base"), default="none",
                   help="CogVideoX only. none: every weight random (default); vae: the committed synthetic-world VAE "
                        "with a random transformer of the base's architecture (where text-to-video pretraining "
                        "starts); base: the committed VAE and the pretrained text-to-video base "
                        "(vivid/model/tiny_base)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from vivid.cli import CLIError

    out = Path(args.out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise CLIError(f"{out} exists and is not an empty folder; init-tiny writes a new folder only")
    if args.family == "vace":
        from vivid.model.tiny_vace import write_tiny_vace_model

        if args.pretrained != "none":
            raise CLIError("--pretrained is for the tiny CogVideoX family; the tiny VACE family is random only")
        path = write_tiny_vace_model(args.out_dir, seed=args.seed)
        print(f"wrote tiny Wan2.1-VACE model (random) to {path}")
        return 0
    if args.family == "wan":
        from vivid.model.tiny_wan import write_tiny_wan_model

        if args.pretrained != "none":
            raise CLIError("--pretrained is for the tiny CogVideoX family; the tiny Wan2.1 family is random only")

        path = write_tiny_wan_model(args.out_dir, seed=args.seed)
        print(f"wrote tiny Wan2.1 model to {path}")
        return 0
    from vivid.model.tiny import write_tiny_model

    path = write_tiny_model(args.out_dir, seed=args.seed, pretrained=args.pretrained)
    kind = {"none": "random", "vae": "random transformer, pretrained VAE", "base": "pretrained base"}[args.pretrained]
    print(f"wrote tiny CogVideoX model ({kind}) to {path}")
    return 0
