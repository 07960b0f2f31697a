"""`vivid export --checkpoint DIR --out DIR [--push-to-hub REPO_ID] [--private] [--dry-run]`."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("export", help="export trained VIVID weights with a model card; optionally upload them")
    p.add_argument("--checkpoint", required=True,
                   help="training checkpoint folder, run folder (its newest checkpoint) or VIVID weights folder")
    p.add_argument("--out", required=True,
                   help="folder to write (weights, vivid_config.json, README.md); in an earlier export only these "
                        "files are replaced, anything else there (.git/, notes) stays")
    p.add_argument("--base-model", default=None,
                   help="hub id of the base model to record (default: the one the run trained on)")
    p.add_argument("--license", default=None, help="license for the model card (default: the base model's)")
    p.add_argument("--push-to-hub", metavar="REPO_ID", default=None, help="upload the folder to this model repo")
    p.add_argument("--private", action="store_true",
                   help="create the Hub repository as private (an existing public one is refused, not uploaded to)")
    p.add_argument("--dry-run", action="store_true", help="list what would be uploaded; contact nothing")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from vivid.apps.export import export_weights, push_to_hub

    if (args.private or args.dry_run) and not args.push_to_hub:
        raise ValueError("--private and --dry-run only apply with --push-to-hub REPO_ID")
    out = export_weights(args.checkpoint, args.out, base_model=args.base_model, repo_id=args.push_to_hub,
                         license=args.license)
    print(f"exported VIVID weights to {out}")
    if args.push_to_hub:
        print(push_to_hub(out, args.push_to_hub, private=args.private, dry_run=args.dry_run))
    return 0
