"""`vivid eval`: edit every sample of an eval manifest and measure BP, TA, TC and the synthetic text alignment;
samples longer than one clip are edited clip by clip and also get TC at the clip seams against TC inside clips."""

from __future__ import annotations

import argparse
import logging

from vivid.constants import DEFAULT_CLIP, TASKS

logger = logging.getLogger("vivid.eval")

BASELINES = ("untrained", "inpaint")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("eval", help="evaluate a VIVID model (or a baseline) on an eval manifest")
    p.add_argument("--model", help="base CogVideoX: hub id or local folder (not needed for --baseline inpaint)")
    p.add_argument("--weights", help="VIVID weights folder (LoRA + patch embedding)")
    p.add_argument("--data", required=True, nargs="+", help="eval manifest(s) (JSONL, globs allowed)")
    p.add_argument("--out", required=True, help="output folder: report.json, report.md, samples.png")
    p.add_argument("--clip", default=DEFAULT_CLIP,
                   help=f"CLIP for TA and TC: hub id or local folder (default {DEFAULT_CLIP}); 'none' to skip TA/TC")
    p.add_argument("--limit", type=int, default=None, help="at most N samples per task")
    p.add_argument("--tasks", nargs="+", choices=TASKS, default=list(TASKS))
    p.add_argument("--baseline", choices=BASELINES, default=None,
                   help="untrained: the base model without VIVID weights; inpaint: OpenCV inpainting (deletion only)")
    p.add_argument("--steps", type=int, default=20, help="denoising steps")
    p.add_argument("--guidance", type=float, default=4.0, help="classifier-free guidance scale")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--paste-back", action="store_true",
                   help="paste the source back outside the dilated mask (off by default: BP then measures the model)")
    p.add_argument("--eval-fps", type=float, default=7.5, help="score frames resampled to this rate (0: every frame)")
    p.add_argument("--max-frames", type=int, default=None,
                   help="frames per sample at 8 fps, at most, rounded down to 4k+1 (default: VIVID-10M-Eval's, "
                        "CogVideoX-5B's clip length; 0: the whole record). Samples longer than one clip are edited clip by clip and get the "
                        "boundary metric")
    p.add_argument("--clip-frames", type=int, default=None,
                   help="clip length (4k+1) of such chained edits (default: the model's clip length)")
    p.add_argument("--boundaries", choices=["adaptive", "fixed"], default="adaptive",
                   help="clip boundaries of chained edits (default adaptive, as vivid edit)")
    p.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default=None)
    p.add_argument("--device", default=None)
    p.set_defaults(func=run)


def load_scorer(name: str | None, device: str | None = None):
    """A CLIPScorer for `--clip`, or None for 'none'."""
    if name is None or name.lower() == "none":
        return None
    import torch

    from vivid.metrics import CLIPScorer

    return CLIPScorer(name, device=device or ("cuda" if torch.cuda.is_available() else "cpu"))


def run(args: argparse.Namespace) -> int:
    from vivid.cli.edit import load_pipeline
    from vivid.evaluation import (
        EVAL_MAX_FRAMES,
        EvalSettings,
        evaluate,
        format_table,
        inpaint_editor,
        load_eval_samples,
        pipeline_editor,
        write_report,
    )

    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit must be >= 1, got {args.limit}")
    if args.steps < 1:
        raise ValueError(f"--steps must be >= 1, got {args.steps}")
    if args.max_frames is not None and args.max_frames < 0:
        raise ValueError(f"--max-frames must be >= 1 (or 0 for the whole record), got {args.max_frames}")
    if args.clip_frames is not None and (args.clip_frames < 5 or (args.clip_frames - 1) % 4):
        raise ValueError(f"--clip-frames must be 4k+1 and at least 5, got {args.clip_frames}")
    tasks = list(args.tasks)
    if args.baseline == "inpaint":
        if "delete" not in tasks:
            raise ValueError("--baseline inpaint only deletes: include delete in --tasks")
        tasks = ["delete"]
    elif args.model is None:
        raise ValueError("--model is required (except for --baseline inpaint)")
    if args.baseline is None and not args.weights:
        raise ValueError("give --weights, or --baseline untrained to evaluate the base model without them")
    if args.baseline == "untrained" and args.weights:
        raise ValueError("--baseline untrained evaluates the base model: do not give --weights")

    settings = EvalSettings(
        steps=args.steps, guidance=args.guidance, seed=args.seed, paste_back=args.paste_back,
        eval_fps=args.eval_fps or None, limit=args.limit, clip_frames=args.clip_frames, boundaries=args.boundaries,
    )
    max_frames = EVAL_MAX_FRAMES if args.max_frames is None else args.max_frames or None
    samples = load_eval_samples(args.data, limit=args.limit, max_frames=max_frames)
    scorer = load_scorer(args.clip, args.device)
    if args.baseline == "inpaint":
        editor, method = inpaint_editor(), "inpaint"
    else:
        pipe = load_pipeline(args)
        pipe.set_progress_bar_config(disable=True)
        editor, method = pipeline_editor(pipe, settings), args.baseline or "vivid"
    report = evaluate(samples, editor, settings, scorer, method=method, tasks=tasks, progress=logger.info)
    report["settings"].update(model=args.model, weights=args.weights, data=list(args.data),
                              max_frames=max_frames)
    path = write_report(report, args.out)
    print(format_table({method: report}))
    print(f"wrote {path}")
    return 0
