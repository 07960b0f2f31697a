"""`vivid app`: the interactive KIVE editing app (Gradio) on a local port."""

from __future__ import annotations

import argparse

import math

from vivid.cli.edit import (
    add_model_arguments,
    add_size_arguments,
    guidance_scale,
    load_pipeline,
    pixel_limits,
)
from vivid.cli.numbers import positive_int
from vivid.constants import APP_KEEP_HOURS, APP_MAX_UPLOAD_MB


def positive_float(value: str) -> float:
    """argparse type: a finite number > 0."""
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {value!r}") from None
    if not math.isfinite(number) or number <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {number}")
    return number


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("app", help="interactive editing app in the browser (Gradio)")
    add_model_arguments(p)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 for every interface)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--share", action="store_true", help="a public gradio.live link (needs --auth)")
    p.add_argument("--auth", default=None, metavar="USER:PASS",
                   help="require this login (required with --share; visible to other users of this machine in the "
                        "process list)")
    p.add_argument("--steps", type=positive_int, default=None,
                   help="denoising steps of every edit (>= 1; default: the base's)")
    p.add_argument("--guidance", type=guidance_scale, default=None,
                   help="classifier-free guidance scale (>= 0; 1 or less = off; default: the base's)")
    add_size_arguments(p)
    p.add_argument("--workdir", default=None,
                   help="folder for the per-session results, in its vivid-sessions/ (default: a temporary one); "
                        "nothing else in it is served or removed")
    p.add_argument("--segmenter", choices=["sam2", "sam3", "classic"], default="sam2",
                   help="what turns clicks (sam2, classic) or words (sam3) into masks (default sam2; classic: GrabCut "
                        "+ tracking, no weights)")
    p.add_argument("--segmenter-model", default=None,
                   help="the segmenter's weights: hub id or folder (default facebook/sam2.1-hiera-large, "
                        "facebook/sam3), or 'tiny' (seeded random models of the same classes: plumbing only)")
    p.add_argument("--max-upload-mb", type=positive_float, default=APP_MAX_UPLOAD_MB,
                   help=f"largest upload accepted, in MiB (default {APP_MAX_UPLOAD_MB})")
    p.add_argument("--keep-hours", type=positive_float, default=APP_KEEP_HOURS,
                   help=f"remove a session's files this long after its last change (default {APP_KEEP_HOURS:g}); "
                        "also when its tab closes")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        import gradio  # noqa: F401
    except ImportError:
        raise ValueError("vivid app needs Gradio: pip install -e \".[app]\" in a vivid checkout "
                         "(or pip install gradio)") from None
    from vivid.apps.gradio_app import VividApp, check_share, launch, parse_auth
    from vivid.io.edit_inputs import check_edit_options

    check_edit_options(args.height, args.width)
    auth = parse_auth(args.auth) if args.auth is not None else None
    check_share(args.share, auth)  # before the model is loaded
    pipe = load_pipeline(args)
    app = VividApp(pipe, args.workdir, steps=args.steps, guidance=args.guidance, height=args.height, width=args.width,
                   keep_hours=args.keep_hours, limits=pixel_limits(args), segmenter=args.segmenter,
                   segmenter_model=args.segmenter_model)
    print(f"vivid app on http://{args.host}:{args.port} (Ctrl-C to stop)")
    launch(app, host=args.host, port=args.port, share=args.share, block=True, auth=auth,
           max_upload_mb=args.max_upload_mb)
    return 0
