"""`vivid mask`: the mask of what you point at (clicks, a box) or name (words), through the whole video, as a file
that `vivid edit --mask` takes as it is. Also the target options of `vivid edit` (`--target`, `--point`, `--box`):
`add_target_arguments` and `target_mask`, which turn them into a mask file before the edit is built."""

from __future__ import annotations

import argparse
from pathlib import Path

from vivid.cli.numbers import count, pixels


def _point(value: str) -> tuple[float, float]:
    from vivid.segmentation.prompts import PromptError, parse_numbers

    try:
        return parse_numbers(value, 2, "point")
    except PromptError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _box(value: str) -> tuple[float, float, float, float]:
    from vivid.segmentation.prompts import PromptError, parse_numbers

    try:
        return parse_numbers(value, 4, "box")
    except PromptError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def add_prompt_arguments(p: argparse.ArgumentParser, text_flag: str = "--text") -> None:
    """Clicks, boxes or words on one frame; the segmenter and its weights; the mask's shape."""
    p.add_argument("--frame", type=count, default=0, help="the frame the points and box are on (default 0)")
    p.add_argument("--point", type=_point, action="append", default=[], metavar="X,Y",
                   help="a click on the object, in pixels (repeatable)")
    p.add_argument("--negative", type=_point, action="append", default=[], metavar="X,Y",
                   help="a click on what is not the object (repeatable)")
    p.add_argument("--box", type=_box, action="append", default=[], metavar="X0,Y0,X1,Y1",
                   help="a box around the object, in pixels")
    p.add_argument(text_flag, dest="text", default=None, metavar="WORDS",
                   help="words naming the object(s): every instance found (sam3)")
    p.add_argument("--instance", type=count, default=None, metavar="K",
                   help="words: only the K-th instance by score (1 = the best)")
    p.add_argument("--max-instances", type=count, default=None, metavar="N", help="words: at most the N best")
    p.add_argument("--segmenter", choices=["sam2", "sam3", "classic"], default=None,
                   help="sam3 for words, sam2 for points and boxes (default); classic: GrabCut + tracking, no weights")
    p.add_argument("--shape", choices=["mask", "hull", "box"], default="mask",
                   help="the mask as segmented, its convex hull, or its bounding box, per frame")
    p.add_argument("--grow", type=pixels, default=0, help="dilate the mask by this many pixels")
    p.add_argument("--segmenter-device", default=None, help="torch device of the segmenter (default: cuda if any)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")


def prompt_from_args(args: argparse.Namespace):
    from vivid.segmentation.prompts import Prompt

    return Prompt(frame=args.frame, points=list(args.point), negatives=list(args.negative), boxes=list(args.box),
                  text=args.text, instance=args.instance, max_instances=args.max_instances)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("mask", help="make a mask video from clicks, a box or words")
    p.add_argument("--video", required=True, help="the video to segment")
    p.add_argument("--out", required=True,
                   help="the mask: a video (.mp4/.mov/.m4v, lossless), a .npz, or a new folder of PNG frames")
    add_prompt_arguments(p)
    p.add_argument("--model", default=None,
                   help="the segmenter's weights: hub id or folder (default facebook/sam2.1-hiera-large, "
                        "facebook/sam3), or 'tiny' (seeded random models of the same classes: plumbing only)")
    p.add_argument("--preview", default=None, help="also write the video with the mask drawn over it (.mp4)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from vivid.segmentation.make import make_mask

    result = make_mask(args.video, args.out, prompt_from_args(args), args.segmenter, args.model, args.shape,
                       args.grow, args.preview, device=args.segmenter_device, progress=args.progress)
    lost = f", empty on {result.empty_frames} frame(s)" if result.empty_frames else ""
    print(f"wrote {result.path} ({result.frames} frames, {result.instances} object(s), "
          f"{100 * result.area:.1f}% of the frame on average{lost})")
    if args.preview:
        print(f"wrote {args.preview}")
    return 0


# ---------------------------------------------------------------------------------------- `vivid edit --target`

def add_target_arguments(p: argparse.ArgumentParser) -> None:
    """`vivid edit`'s target options: the mask made from clicks, a box or words instead of `--mask`."""
    g = p.add_argument_group("target: make the mask from clicks, a box or words (instead of --mask)")
    g.add_argument("--target", dest="text", default=None, metavar="WORDS", help="words naming what to edit (sam3)")
    for flag, kind, meta, text in (("--point", _point, "X,Y", "a click on what to edit (repeatable)"),
                                   ("--negative", _point, "X,Y", "a click on what not to edit (repeatable)"),
                                   ("--box", _box, "X0,Y0,X1,Y1", "a box around what to edit")):
        g.add_argument(flag, type=kind, action="append", default=[], metavar=meta, help=text)
    g.add_argument("--target-frame", dest="frame", type=count, default=0, help="the frame the clicks are on")
    g.add_argument("--instance", type=count, default=None, metavar="K", help="words: only the K-th instance")
    g.add_argument("--max-instances", type=count, default=None, metavar="N", help="words: at most the N best")
    g.add_argument("--segmenter", choices=["sam2", "sam3", "classic"], default=None,
                   help="sam3 for words, sam2 for clicks and boxes (default); classic: no weights")
    g.add_argument("--segmenter-model", default=None, help="the segmenter's weights: hub id, folder or 'tiny'")
    g.add_argument("--segmenter-device", default=None, help="torch device of the segmenter")
    g.add_argument("--shape", choices=["mask", "hull", "box"], default="mask", help="mask shape per frame")
    g.add_argument("--grow", type=pixels, default=0, help="dilate the target mask by this many pixels")
    g.add_argument("--save-mask", default=None, help="keep the mask made here (.mp4, .npz or a new folder)")


def target_mask(args: argparse.Namespace, work_dir: Path) -> str | None:
    """The mask file for `vivid edit`: `--mask` as given, or the one made from the target options (written to
    `--save-mask` or into the work folder, and kept); one line if both or neither are given."""
    targeted = bool(args.text or args.point or args.negative or args.box)
    if args.mask and targeted:
        raise ValueError("give either --mask or a target (--target, --point, --box), not both")
    if not targeted:
        if not args.mask:
            raise ValueError("no mask: give --mask FILE, or --target WORDS / --point X,Y / --box X0,Y0,X1,Y1")
        return args.mask
    from vivid.segmentation.make import make_mask

    out = Path(args.save_mask) if args.save_mask else work_dir / "target-mask.npz"
    result = make_mask(args.video, out, prompt_from_args(args), args.segmenter, args.segmenter_model, args.shape,
                       args.grow, device=args.segmenter_device, tiny_root=work_dir / "tiny-models",
                       progress=getattr(args, "progress", True))
    print(f"target mask: {result.path} ({result.instances} object(s), {100 * result.area:.1f}% of the frame)")
    return str(result.path)
