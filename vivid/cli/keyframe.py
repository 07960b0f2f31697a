"""`vivid keyframe`: edit one frame several times (seeds x captions) and write the candidates (KIVE step 1); or,
with `--long-mode parallel`, edit the keyframes of a parallel long edit together into its work folder and write
them as a strip, to accept before the clips run.

A one-frame edit costs about a tenth of a clip (1.5 vs 17.1 PFLOPs for CogVideoX-5B), so several candidates
are cheap; `vivid edit --keyframe CANDIDATE.png --keyframe-frame K` then propagates the chosen one. The joint
keyframes are accepted by running the `vivid edit` printed: the same edit in the same work folder, which reuses them.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from vivid.constants import TASKS
from vivid.cli.edit import (
    add_long_video_arguments,
    add_model_arguments,
    add_paste_back_arguments,
    add_sampling_arguments,
    add_size_arguments,
    load_pipeline,
)

LONG_MODE_HELP = ("chain (default): candidate edits of one frame (--out-dir), to propagate with `vivid edit "
                  "--keyframe`; parallel: the keyframes of `vivid edit --long-mode parallel` (one at each end of "
                  "every clip) edited together into the work folder and written side by side to --out, then "
                  "accepted by running the `vivid edit` command printed (it reuses them; a changed edit is refused "
                  "there: --restart here edits them anew)")


DEFAULT_CANDIDATES = 4


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("keyframe", help="edit one frame several times and write candidate keyframes")
    add_model_arguments(p)
    p.add_argument("--video", required=True, help="input video (or image)")
    p.add_argument("--mask", required=True, help="mask video, folder of PNGs, one image, or .npy/.npz")
    p.add_argument("--prompt", action="append", default=None,
                   help="local caption; repeat for several captions (optional for delete)")
    p.add_argument("--task", required=True, choices=TASKS)
    p.add_argument("--out-dir", default=None, help="folder for the candidate PNGs and candidates.json")
    p.add_argument("--candidates", type=int, default=None,
                   help=f"candidates per caption, from one --seed (seed, seed+1, ...; default {DEFAULT_CANDIDATES})")
    p.add_argument("--frame", default=None, help="frame index to edit, or 'auto': the most representative frame "
                                                 "of the first clip (default 0)")
    add_sampling_arguments(p, several_seeds=True)  # --steps, --guidance, --seed (one, or one per candidate), ...
    add_size_arguments(p)
    g = add_long_video_arguments(p, LONG_MODE_HELP, keep_work=False)
    g.add_argument("--out", default=None, help="parallel: the strip image (.png/.jpg) of the jointly edited keyframes")
    g.add_argument("--keyframe", default=None, help="parallel: your edited frame (of --keyframe-frame), kept as the "
                                                    "first clip's keyframe (e.g. a candidate of the chain mode)")
    g.add_argument("--reference-image", action="append", default=None, metavar="IMAGE",
                   help="parallel: an image of what to generate (repeatable; Wan2.1-VACE models only), as vivid edit's")
    add_paste_back_arguments(g)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.long_mode == "parallel":
        given = [flag for flag, value in (("--frame", args.frame), ("--candidates", args.candidates)) if value is not None]
        if given:
            raise ValueError(f"{' and '.join(given)}: candidates of one frame; --long-mode parallel edits the "
                             "keyframes the plan chooses, jointly")
        return run_joint_keyframes(args)
    args.frame = "0" if args.frame is None else args.frame
    args.candidates = DEFAULT_CANDIDATES if args.candidates is None else args.candidates
    if args.out_dir is None:
        raise ValueError("give --out-dir, the folder for the candidates (or --long-mode parallel: a strip to --out)")
    if args.reference_image:
        raise ValueError("--reference-image is for --long-mode parallel (candidates take none)")
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


def run_joint_keyframes(args: argparse.Namespace) -> int:
    """`--long-mode parallel`: the edit's joint keyframes into --work-dir, their strip to --out, and the
    `vivid edit` that accepts them (the same edit and work folder)."""
    from vivid.cli.edit import EDIT_LABELS, edit_options, pixel_limits, refuse_reference_images
    from vivid.io.edit_inputs import check_outputs
    from vivid.io.limits import check_pixel_limits
    from vivid.longvideo.request import edit_request
    from vivid.longvideo.runner import edit_keyframes_first
    from vivid.longvideo.strip import write_keyframe_strip

    if not args.work_dir or not args.out:
        raise ValueError("--long-mode parallel needs --work-dir (the folder `vivid edit --work-dir` goes on from) "
                         "and --out (the strip image)")
    if args.out_dir is not None:
        raise ValueError("--out-dir is the candidates' folder; --long-mode parallel writes its strip to --out")
    if len(args.seed) > 1 or len(args.prompt or []) > 1:
        raise ValueError("--long-mode parallel edits with one --seed and one --prompt, as `vivid edit` does")
    refuse_reference_images(args.model, args.reference_image)
    references = [("--reference-image", path) for path in args.reference_image or []]
    for what, path in (("--video", args.video), ("--mask", args.mask), ("--keyframe", args.keyframe), *references):
        check_pixel_limits(path, pixel_limits(args), what)  # from the header, before anything is decoded
    inputs = {"--video": args.video, "--mask": args.mask, "--keyframe": args.keyframe,
              **{f"--reference-image {i + 1}": path for i, (_, path) in enumerate(references)}}
    check_outputs(args.out, True, inputs, names=("--out", "--work-dir"))
    edit_args = argparse.Namespace(**{**vars(args), "seed": args.seed[0], "lossless": False, "keep_work": False})
    prompt = (args.prompt or [None])[0]
    request = edit_request(args.video, args.mask, prompt, args.task, None, keyframe=args.keyframe,
                           options=edit_options(edit_args), work_dir=args.work_dir, labels=EDIT_LABELS,
                           reference_images=args.reference_image)
    keyframes = edit_keyframes_first(load_pipeline(args), request)
    write_keyframe_strip(args.out, keyframes)
    print(f"wrote {args.out}: {len(keyframes)} keyframes (frames {', '.join(str(f) for f, _ in keyframes)}), edited "
          f"in {args.work_dir}")
    print(f"accept them and run the clips between them with:\n  {accepting_edit(args, 'OUT.mp4')}")
    return 0


def accepting_edit(args: argparse.Namespace, out: str) -> str:
    """The `vivid edit` command of the same edit as `args` (a `vivid keyframe --long-mode parallel`) in its work
    folder, writing `out`: it finds the keyframes edited and runs the clips (with the same speed options and
    input limits)."""
    import shlex

    from vivid.io.limits import DEFAULT_MAX_FRAME_PIXELS, DEFAULT_MAX_PIXELS

    words = ["vivid", "edit"]
    values = [("--model", args.model), ("--weights", args.weights), ("--dtype", args.dtype),
              ("--device", args.device), ("--video", args.video), ("--mask", args.mask), ("--task", args.task),
              ("--prompt", (args.prompt or [None])[0]), ("--keyframe", args.keyframe),
              ("--keyframe-frame", None if args.keyframe_frame == "0" else args.keyframe_frame),
              ("--steps", args.steps), ("--guidance", args.guidance), ("--seed", args.seed[0]),
              ("--negative-prompt", args.negative_prompt), ("--paste-back-dilation", args.paste_back_dilation),
              ("--height", args.height), ("--width", args.width), ("--clip-frames", args.clip_frames),
              ("--boundaries", args.boundaries), ("--min-similarity", args.min_similarity),
              ("--cut-similarity", args.cut_similarity), ("--long-mode", "parallel"), ("--kv-budget", args.kv_budget),
              ("--keyframe-group", args.keyframe_group),
              ("--work-dir", args.work_dir), ("--out", out), ("--memory", None if args.memory == "none" else args.memory),
              ("--attention-backend", args.attention_backend), ("--cache", args.cache),
              ("--max-frame-pixels", None if args.max_frame_pixels == DEFAULT_MAX_FRAME_PIXELS else args.max_frame_pixels),
              ("--max-pixels", None if args.max_pixels == DEFAULT_MAX_PIXELS else args.max_pixels)]
    for flag, value in values + [("--reference-image", path) for path in args.reference_image or []]:
        if value is not None:
            words += [flag, str(value)]
    switches = [("--no-paste-back", not args.paste_back), ("--vae-tiling", args.vae_tiling),
                ("--vae-slicing", args.vae_slicing), ("--fuse-lora", args.fuse_lora),
                ("--fuse-qkv-projections", args.fuse_qkv_projections),
                ("--compile-repeated-blocks", args.compile_repeated_blocks)]
    return shlex.join(words + [flag for flag, given in switches if given])
