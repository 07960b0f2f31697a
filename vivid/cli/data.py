"""`vivid data check MANIFEST...`, `vivid data synth --out DIR ...`, `vivid data vivid10m ROOT --out DIR` and
`vivid data embed-captions MANIFEST... --model MODEL --out DIR`, `vivid data build INPUT... --out DIR`."""

from __future__ import annotations

import argparse
import sys

from vivid.cli import CLIError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("data", help="training data: validate manifests, write synthetic data, import VIVID-10M")
    sub = p.add_subparsers(dest="data_command", metavar="DATA_COMMAND", required=True)

    c = sub.add_parser("check", help="validate data set manifests and every file they name; exit 1 if anything is bad")
    c.add_argument("manifests", nargs="+", metavar="MANIFEST", help="JSONL manifest shards (globs allowed)")
    c.add_argument("--frames", type=int, default=None, help="also require clips of at least this many frames")
    c.add_argument("--bad-list", default=None, metavar="FILE",
                   help="write every bad record to FILE, one 'where: problem' line each (the summary shows the "
                        "first 5 per reason)")
    c.set_defaults(func=run_check)

    s = sub.add_parser("synth", help="write a synthetic data set (moving coloured shapes) with a held-out eval split")
    s.add_argument("--out", required=True, help="output folder (train-*.jsonl, eval-*.jsonl, train/, eval/)")
    s.add_argument("--videos", type=int, default=32, help="training videos (default 32)")
    s.add_argument("--images", type=int, default=64, help="training images (default 64)")
    s.add_argument("--eval", type=int, default=4, dest="eval_per_task", help="eval videos per task: add, modify, delete (default 4)")
    s.add_argument("--size", default="64x96", help="HxW (default 64x96)")
    s.add_argument("--frames", type=int, default=9, help="frames per video (default 9)")
    s.add_argument("--fps", type=float, default=8.0)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--max-distractors", type=int, default=2,
                   help="uncaptioned shapes beside the captioned one in a training sample, at most (default 2; "
                        "0 for text-to-video pretraining, where the caption describes the whole scene)")
    s.set_defaults(func=run_synth)

    v = sub.add_parser("vivid10m", help="write manifests for an extracted VIVID-10M download (see docs/data_format.md)")
    v.add_argument("root", help="folder holding vivid-video/ and/or vivid-image/")
    v.add_argument("--out", required=True, help="folder for the manifest shards")
    v.add_argument("--shard-size", type=int, default=10000)
    v.set_defaults(func=run_vivid10m)

    e = sub.add_parser("embed-captions", help="precompute the T5 embedding of every caption for training "
                                              "(config: caption_embeddings: DIR; see docs/training.md)")
    e.add_argument("manifests", nargs="+", metavar="MANIFEST", help="JSONL manifest shards (globs allowed): train "
                                                                    "and eval")
    e.add_argument("--model", required=True, help="the run's base model (hub id or diffusers folder): its T5")
    e.add_argument("--out", required=True, help="the store folder (new, empty, or a store to add to)")
    e.add_argument("--dtype", choices=["bf16", "fp16", "fp32"], default="bf16",
                   help="the run's mixed_precision (no = fp32); default bf16")
    e.add_argument("--batch-size", type=int, default=8, help="captions per T5 call (default 8)")
    e.add_argument("--shard-size", type=int, default=256, help="captions per safetensors shard (default 256)")
    e.add_argument("--device", default=None, help="where T5 runs (default: cuda if there is a GPU, else cpu)")
    e.set_defaults(func=run_embed_captions)
    register_build(sub)


def _parse_size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise CLIError(f"--size must be HxW, e.g. 64x96, got {text!r}") from None
    return h, w


def run_check(args: argparse.Namespace) -> int:
    import contextlib
    from pathlib import Path

    from data_loaders.check import EXAMPLES, check_manifests
    from data_loaders.errors import REASONS
    from data_loaders.format import expand_manifests
    from vivid.io.atomic import atomic_path

    if args.bad_list and Path(args.bad_list).resolve() in {p.resolve() for p in expand_manifests(args.manifests)}:
        raise CLIError(f"--bad-list {args.bad_list} is one of the manifests: give another file")
    with contextlib.ExitStack() as stack:
        bad_list = None
        if args.bad_list:  # renamed into place once the check is done
            bad_list = stack.enter_context(open(stack.enter_context(atomic_path(args.bad_list)), "w", encoding="utf-8"))
        report = check_manifests(args.manifests, frames=args.frames, bad_list=bad_list)
    print(f"records: {report.records}  valid: {sum(report.counts.values())}  bad: {report.bad_total}")
    for kind in ("video", "image"):
        for task in ("add_modify", "delete"):
            print(f"  {kind:5s} {task:10s} {report.counts.get((kind, task), 0)}")
        print(f"  {kind:5s} deletion donors {report.donors.get(kind, 0)} (add_modify masks covering at most half "
              "of the frame)")
    if report.bad_total:
        print("bad records by reason:")
        for reason in [*REASONS, *sorted(set(report.bad_counts) - set(REASONS))]:
            if report.bad_counts.get(reason):
                print(f"  {reason}: {report.bad_counts[reason]}  ({REASONS.get(reason, reason)})")
        for reason, examples in report.examples.items():
            for where, bad in examples:
                print(f"BAD {where}: {bad.message}")
            if report.bad_counts[reason] > len(examples):
                print(f"  ... and {report.bad_counts[reason] - len(examples)} more {reason} (first {EXAMPLES} shown"
                      f"{f'; all in {args.bad_list}' if args.bad_list else '; --bad-list FILE lists all'})")
        print(f"vivid data check: {report.bad_total} bad record(s)", file=sys.stderr)
        return 1
    print("ok")
    return 0


def run_synth(args: argparse.Namespace) -> int:
    from data_loaders.synthetic import write_synthetic_dataset

    result = write_synthetic_dataset(
        args.out, videos=args.videos, images=args.images, size=_parse_size(args.size), frames=args.frames,
        seed=args.seed, eval_per_task=args.eval_per_task, fps=args.fps, max_distractors=args.max_distractors,
    )
    print(f"wrote {args.videos} videos, {args.images} images and {result.counts['eval']} eval videos to {args.out}")
    for path in result.train_manifests:
        print(f"train manifest: {path}")
    for path in result.eval_manifests:
        print(f"eval manifest: {path}")
    return 0


def run_vivid10m(args: argparse.Namespace) -> int:
    from data_loaders.vivid10m import convert_vivid10m

    paths, counts = convert_vivid10m(args.root, args.out, shard_size=args.shard_size)
    print(f"{counts.get('records', 0)} records ({counts.get('skipped', 0)} skipped) in {len(paths)} shard(s) under {args.out}")
    return 0


def run_embed_captions(args: argparse.Namespace) -> int:
    import torch

    from vivid.model.registry import spec_for
    from train.caption_embeddings import DTYPES, check_out_folder, manifest_prompts, write_caption_embeddings

    if args.batch_size < 1 or args.shard_size < 1:
        raise CLIError(f"--batch-size and --shard-size must be >= 1, got {args.batch_size} and {args.shard_size}")
    check_out_folder(args.out, args.dtype)
    prompts, bad = manifest_prompts(args.manifests)
    if len(prompts) <= 2:
        raise CLIError(f"no captions in {' '.join(args.manifests)} (no valid record)")
    if bad:
        print(f"skipped {bad} invalid record(s) (see `vivid data check`)", file=sys.stderr)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    # the tokenizer and text encoder (T5, UMT5) exactly as the trainer's spec loads them, nothing else
    spec = spec_for(args.model)
    text = spec.load_text_components(args.model, DTYPES[args.dtype])
    max_length = spec.max_text_length(text["tokenizer"], spec.load_transformer_config(args.model))
    meta, added = write_caption_embeddings(
        args.out, prompts, text["tokenizer"], text["text_encoder"].to(device), max_length, args.model, spec,
        batch_size=args.batch_size, shard_size=args.shard_size,
    )
    print(f"{added} new caption embedding(s) ({len(prompts)} captions in the manifests; {meta.count} in the store) "
          f"in {args.out}: {meta.max_length} x {meta.dim} {meta.dtype} each")
    return 0


# --------------------------------------------------------------------------- vivid data build


def register_build(sub: argparse._SubParsersAction) -> None:
    b = sub.add_parser(
        "build", help="make a VIVID-10M-style data set from raw videos (shots, segmentation, filters, captions)",
        description="Raw videos in, a data set in vivid's format out (docs/data_build.md). Runs under "
                    "`accelerate launch` too: each process builds its share of the videos.",
    )
    b.add_argument("items", nargs="+", metavar="INPUT|key=value",
                   help="video files, folders or globs; section.key=value items override the config "
                        "(e.g. filters.max_empty_fraction=0.2)")
    b.add_argument("--out", required=True, help="output folder (manifests, clips, masks; resumable)")
    b.add_argument("--config", default=None,
                   help="build config YAML (default: configs/data_build/default.yaml, or tiny.yaml with --models tiny)")
    b.add_argument("--models", choices=["config", "tiny"], default="config",
                   help="tiny: seeded tiny random models of the same classes, offline (plumbing only, no quality)")
    b.add_argument("--no-progress", action="store_true", help="no progress bar")
    b.set_defaults(func=run_build)


def _split_build_items(items: list[str]) -> tuple[list[str], list[str]]:
    """(inputs, overrides): an item is an override when it reads section.key=value and is not an existing path."""
    import os
    import re

    overrides = [i for i in items if re.match(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)+=", i) and not os.path.exists(i)]
    return [i for i in items if i not in overrides], overrides


def run_build(args: argparse.Namespace) -> int:
    from data_loaders.build import build_dataset, load_build_config
    from data_loaders.build.config import TINY, preset_path

    inputs, overrides = _split_build_items(args.items)
    if not inputs:
        raise CLIError("no INPUT video, folder or glob given")
    path = args.config or preset_path("tiny" if args.models == "tiny" else "default")
    if args.models == "tiny":
        overrides = [f"models.{k}={TINY}" for k in ("sam3", "grounding_dino", "sam2", "captioner")] + overrides
    config = load_build_config(path, overrides)
    summary = build_dataset(inputs, args.out, config, progress=not args.no_progress)
    if summary is None:  # not process 0: it prints the summary
        return 0
    for line in summary.lines():
        print(line)
    if not summary.train_records:
        print("vivid data build: no training record was made (see the drops above)", file=sys.stderr)
        return 1
    return 0
