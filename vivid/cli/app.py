"""`vivid app`: the interactive KIVE editing app (Gradio) on a local port."""

from __future__ import annotations

import argparse

from vivid.cli.edit import add_model_arguments, add_size_arguments, guidance_scale, load_pipeline, positive_int


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("app", help="interactive editing app in the browser (Gradio)")
    add_model_arguments(p)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 for every interface)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--share", action="store_true", help="a public gradio.live link")
    p.add_argument("--steps", type=positive_int, default=50, help="denoising steps of every edit (>= 1)")
    p.add_argument("--guidance", type=guidance_scale, default=6.0,
                   help="classifier-free guidance scale (>= 0; 1 or less = off)")
    add_size_arguments(p)
    p.add_argument("--workdir", default=None, help="folder for uploads and results (default: a temporary one)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        import gradio  # noqa: F401
    except ImportError:
        raise ValueError("vivid app needs Gradio: pip install 'vivid[app]' (or pip install gradio)") from None
    from vivid.app import VividApp, launch
    from vivid.inputs import check_edit_options

    check_edit_options(args.height, args.width)
    pipe = load_pipeline(args)
    app = VividApp(pipe, args.workdir, steps=args.steps, guidance=args.guidance, height=args.height, width=args.width)
    print(f"vivid app on http://{args.host}:{args.port} (Ctrl-C to stop)")
    launch(app, host=args.host, port=args.port, share=args.share, block=True)
    return 0
