"""`vivid flops`: analytic FLOPs of one edit, per component, beside the published KIVE numbers."""

from __future__ import annotations

import argparse
import json

from vivid.cli.init_tiny import TRAINABLE_FAMILIES


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("flops", help="analytic FLOPs of an edit (per component) vs the published numbers")
    p.add_argument("--frames", type=int, default=49, help="frames (padded to 4k+1 like the pipeline)")
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--width", type=int, default=720)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--guidance", action=argparse.BooleanOptionalAction, default=True,
                   help="classifier-free guidance (transformer batch 2, two T5 passes)")
    # the families as `vivid init-tiny` names them: the model registry (torch, diffusers) loads only to run
    p.add_argument("--family", choices=TRAINABLE_FAMILIES, default="cogvideox", help="the base model (default: %(default)s)")
    p.add_argument("--model-size", default=None,
                   help="an architecture of the family, e.g. 5b (default: the family's published size; an unknown "
                        "size is refused naming the known ones)")
    p.add_argument("--long-mode", choices=["chain", "parallel"], default=None,
                   help="count a long edit of --frames in clips of the base's length: chain, or parallel (plus the "
                        "joint keyframe pass, one keyframe at each end of every clip)")
    p.add_argument("--kv-budget", type=int, default=None,
                   help="with --long-mode parallel: other keyframes' tokens each keyframe attends to (default: all)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from vivid.flops.counter import PETA, edit_flops, kive_comparison

    if args.frames < 1:
        raise ValueError(f"--frames must be >= 1, got {args.frames}")
    from vivid.model.registry import spec_by_name

    spec = spec_by_name(args.family)
    size = args.model_size or spec.default_architecture
    if size not in spec.architectures:
        raise ValueError(f"--model-size {size}: {spec.display_name} has the sizes {', '.join(spec.architectures)}")
    shape = (args.frames, args.height, args.width, args.steps, args.guidance)
    if args.long_mode is not None:
        return _run_long(args, size, shape)
    edit = edit_flops(size, *shape, family=args.family)
    stock = edit_flops(size, *shape, vivid=False, family=args.family)
    comparison = kive_comparison(size, args.steps) if (args.family, size) == ("cogvideox", "5b") else None
    if args.json:
        out = {"edit": edit.to_dict(), f"stock_{args.family}": stock.to_dict(), "kive_comparison": comparison}
        print(json.dumps(out, indent=2))
        return 0

    unit, scale = ("GFLOPs", 1e9) if size == "tiny" else ("PFLOPs", PETA)
    print(f"{edit.model} edit, {edit.frames}x{edit.height}x{edit.width}, {edit.steps} steps, "
          f"guidance {'on (batch 2)' if edit.guidance else 'off'}: "
          f"{edit.video_tokens:,} video + {edit.text_tokens} text tokens")
    print(f"{'component':<24}{unit:>12}{'share':>9}")
    for name, value in edit.components.items():
        print(f"{name:<24}{value / scale:>12.4f}{100 * value / edit.total:>8.1f}%")
    print(f"{'total':<24}{edit.total / scale:>12.4f}")
    print(f"stock {args.family} at this shape (no LoRA, 16 input channels, no VAE encode): {stock.total / scale:.4f} {unit}")
    if comparison is not None:
        print("\nPublished KIVE costs (PFLOPs) vs our count under several conventions (49x480x720 / 1x480x720):")
        cols = list(comparison["published"])
        print(f"{'convention':<52}" + "".join(f"{c:>18}" for c in cols))
        print(f"{'published (VIVID project page)':<52}" + "".join(f"{comparison['published'][c]:>18.1f}" for c in cols))
        for name, row in comparison["ours_pflops"].items():
            print(f"{name:<52}" + "".join(f"{row[c]:>18.2f}" for c in cols))
        print("The published numbers match 'transformer linear layers only, guidance': a module-hook counter that "
              "misses F.scaled_dot_product_attention (QK^T, AV), which at 17.8k tokens is as large as the linears.")
    return 0


def _run_long(args: argparse.Namespace, size: str, shape: tuple) -> int:
    """`--long-mode`: the FLOPs of a long edit, its clips and (parallel) its joint keyframe pass."""
    from vivid.flops.counter import PETA, long_edit_flops

    if args.kv_budget is not None and args.kv_budget < 1:
        raise ValueError(f"--kv-budget must be >= 1, got {args.kv_budget}")
    out = long_edit_flops(size, *shape, family=args.family, long_mode=args.long_mode, kv_budget=args.kv_budget)
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    unit, scale = ("GFLOPs", 1e9) if size == "tiny" else ("PFLOPs", PETA)
    print(f"{args.family} {size} long edit ({args.long_mode}), {args.frames}x{args.height}x{args.width}, "
          f"{args.steps} steps: {out['clips']} clips of {out['clip_frames']} frames {out['clips_flops'] / scale:.2f}"
          f" {unit}, joint pass over {out['joint_keyframes']} keyframes {out['joint_pass_flops'] / scale:.2f} {unit}"
          f", total {out['total'] / scale:.2f} {unit}")
    return 0
