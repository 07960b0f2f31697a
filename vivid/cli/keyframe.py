"""`vivid keyframe`: edit one frame several times (seeds x captions) and write the candidates (KIVE step 1).

A one-frame edit costs about a tenth of a clip (1.5 vs 17.1 PFLOPs for CogVideoX-5B), so several candidates
are cheap; `vivid edit --keyframe CANDIDATE.png --keyframe-frame K` then propagates the chosen one.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from vivid.constants import TASKS
from vivid.cli.edit import add_model_arguments, add_sampling_arguments, add_size_arguments, load_pipeline


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("keyframe", help="edit one frame several times and write candidate keyframes")
    add_model_arguments(p)
    p.add_argument("--video", required=True, help="input video (or image)")
    p.add_argument("--mask", required=True, help="mask video, folder of PNGs, one image, or .npy/.npz")
    p.add_argument("--prompt", action="append", default=None,
                   help="local caption; repeat for several captions (optional for delete)")
    p.add_argument("--task", required=True, choices=TASKS)
    p.add_argument("--out-dir", required=True, help="folder for the candidate PNGs and candidates.json")
    p.add_argument("--candidates", type=int, default=4,
                   help="candidates per caption, from one --seed (seed, seed+1, ...)")
    p.add_argument("--frame", default="0", help="frame index to edit, or 'auto': the most representative frame "
                                                "of the first clip")
    add_sampling_arguments(p, several_seeds=True)  # --steps, --guidance, --seed (one, or one per candidate), ...
    add_size_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from vivid.io.edit_inputs import check_edit_options, resolve_prompt
    from vivid.kive import choose_frame, edit_candidates
    from vivid.io.masks import MaskSource
    from vivid.io.video import VideoSource
    from vivid.longvideo.plan import model_clip_frames
    from vivid.io.files import is_image_path
    from vivid.io.images import write_image

    check_edit_options(args.height, args.width)
    from vivid.cli.edit import pixel_limits
    from vivid.io.limits import check_pixel_limits

    for what, path in (("--video", args.video), ("--mask", args.mask)):
        check_pixel_limits(path, pixel_limits(args), what)  # from the header, before anything is decoded
    prompts = args.prompt or [None]
    for prompt in prompts:
        resolve_prompt(prompt, args.task)
    seeds = args.seed if len(args.seed) > 1 else list(range(args.seed[0], args.seed[0] + args.candidates))
    if args.candidates < 1:
        raise ValueError(f"--candidates must be >= 1, got {args.candidates}")
    out_dir = Path(args.out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"--out-dir {out_dir} is a file; give a folder")
    if is_image_path(args.video):
        from vivid.io.edit_inputs import load_edit_inputs

        inputs = load_edit_inputs(args.video, args.mask, prompts[0], args.task)
        frame, mask, index = inputs.frames[0], inputs.mask[0], 0
        pipe = load_pipeline(args)
    else:
        pipe = None
        if args.frame == "auto":
            pipe = load_pipeline(args)
            index = choose_frame(args.video, args.mask, "auto", model_clip_frames(pipe.transformer))
        else:
            index = choose_frame(args.video, args.mask, args.frame, 0)
        source = VideoSource(args.video)
        frame = source.frames([index])[0]
        mask = MaskSource(args.mask, len(source), source.height, source.width, timing=source.timing(),
                          warn=False).frames([index])[0]
        if not mask.any():
            raise ValueError(f"the mask of frame {index} is empty: nothing to edit there (pick another --frame)")
        pipe = pipe or load_pipeline(args)
    results = edit_candidates(
        pipe, frame, mask, prompts, args.task, seeds, num_inference_steps=args.steps,
        guidance_scale=args.guidance, negative_prompt=args.negative_prompt, height=args.height, width=args.width,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    records = []
    for i, (caption, seed, image) in enumerate(results):
        path = write_image(out_dir / f"candidate_{i:02d}_seed{seed}.png", image)
        records.append({"file": path.name, "caption": caption, "seed": seed, "frame": index})
        print(path)
    (out_dir / "candidates.json").write_text(json.dumps({"frame": index, "task": args.task, "candidates": records}, indent=1))
    print(f"{len(records)} candidates of frame {index}; propagate one with: vivid edit ... --keyframe "
          f"{out_dir / records[0]['file']} --keyframe-frame {index}")
    return 0
