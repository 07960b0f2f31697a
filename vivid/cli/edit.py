"""`vivid edit`: add, modify or delete an entity inside a mask of a video or an image.

Every edit runs through the clip runner (`vivid.longvideo.runner.chain_edit`): an image or a video of at most one
clip of the model (`--clip-frames`, default the model's clip length by its base's rule) is one clip, one pipeline call; a longer
video is edited clip by clip with KIVE chaining: streamed, with a progress bar over clips, resumable after a kill
by running the same command again.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from vivid.constants import TASKS

logger = logging.getLogger("vivid.edit")


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="base model (CogVideoX or Wan2.1): hub id (THUDM/CogVideoX-5b, "
                   "Wan-AI/Wan2.1-T2V-1.3B-Diffusers) or local diffusers folder")
    p.add_argument("--weights", help="VIVID weights folder (LoRA + patch embedding); omit for the untrained model")
    p.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default=None,
                   help="model dtype (default: bfloat16 on GPU, float32 on CPU)")
    p.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    p.add_argument("--cpu-offload", action="store_true", help="model CPU offload (GPU only): lower peak memory")
    p.add_argument("--vae-tiling", action="store_true", help="decode/encode the VAE in tiles: lower peak memory")


def positive_int(value: str) -> int:
    """argparse type: a whole number >= 1."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {number}")
    return number


def guidance_scale(value: str) -> float:
    """argparse type: a finite number >= 0 (<= 1 turns classifier-free guidance off)."""
    import math

    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {value!r}") from None
    if not math.isfinite(number) or number < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {value}")
    return number


def working_side(value: str) -> int:
    """argparse type: a working height or width (`vivid.io.edit_inputs.check_side`)."""
    from vivid.io.edit_inputs import SIDE_RULE, EditInputError, check_side

    try:
        return check_side(int(value))
    except (ValueError, EditInputError):
        raise argparse.ArgumentTypeError(f"must be {SIDE_RULE}, got {value!r}") from None


def pixels(value: str) -> int:
    """argparse type: a whole number of pixels >= 0."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number of pixels >= 0, got {value!r}") from None
    if number < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0 pixels, got {number}")
    return number


def add_size_arguments(p: argparse.ArgumentParser) -> None:
    """--height/--width: the working size (shared by edit, keyframe and app)."""
    size = "a multiple of 16; default: the weights' training bucket nearest the source's aspect, else the native area"
    p.add_argument("--height", type=working_side, default=None, help=f"working height ({size})")
    p.add_argument("--width", type=working_side, default=None, help=f"working width ({size})")


def add_sampling_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--steps", type=positive_int, default=50, help="denoising steps (>= 1)")
    p.add_argument("--guidance", type=guidance_scale, default=6.0,
                   help="classifier-free guidance scale (>= 0; 1 or less = off)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--negative-prompt", default=None)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("edit", help="edit a video or image inside a mask")
    add_model_arguments(p)
    p.add_argument("--video", required=True, help="input video, or an image (then an image is written)")
    p.add_argument("--mask", required=True, help="mask video, folder of PNGs, one image for all frames, or .npy/.npz")
    p.add_argument("--prompt", default=None, help="local caption of what should be in the mask (optional for delete)")
    p.add_argument("--task", required=True, choices=TASKS)
    p.add_argument("--out", required=True,
                   help="output video (.mp4/.mov/.m4v, written as MP4) or, for an image input, an image (.png/.jpg); "
                        "never one of the inputs")
    p.add_argument("--keyframe", default=None, help="edited first frame to propagate (KIVE)")
    add_sampling_arguments(p)
    p.add_argument("--no-paste-back", dest="paste_back", action="store_false",
                   help="keep the generated pixels everywhere instead of the source outside the dilated mask")
    p.add_argument("--paste-back-dilation", type=pixels, default=None, help="pixels (default: one latent cell)")
    p.add_argument("--lossless", action="store_true",
                   help="write the output video losslessly (RGB H.264: bit-exact, large, not every player plays it)")
    add_size_arguments(p)
    add_long_video_arguments(p)
    p.set_defaults(func=run)


def add_long_video_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("long videos (more frames than one clip)")
    g.add_argument("--clip-frames", type=int, default=None,
                   help="frames per clip, 4k+1 (default: the model's clip, 49 for CogVideoX-5B, 81 for Wan2.1)")
    g.add_argument("--boundaries", choices=["adaptive", "fixed"], default="adaptive",
                   help="clip boundaries: at hard cuts and content changes (adaptive) or every clip-frames (fixed)")
    g.add_argument("--keyframe-frame", default="0",
                   help="the frame --keyframe shows (index in the first clip), or 'auto': the most representative "
                        "frame of the first clip, edited first when no --keyframe is given")
    g.add_argument("--min-similarity", type=float, default=None, help="adaptive: cut below this mean similarity")
    g.add_argument("--cut-similarity", type=float, default=None, help="adaptive: hard cut below this histogram overlap")
    g.add_argument("--work-dir", default=None, help="finished clips and resume state (default: OUT.work)")
    g.add_argument("--restart", action="store_true", help="discard a previous unfinished run of this edit")
    g.add_argument("--keep-work", action="store_true", help="keep the work folder after success")


def parse_keyframe_frame(value: str) -> int | str:
    if value == "auto":
        return value
    try:
        frame = int(value)
    except ValueError:
        raise ValueError(f"--keyframe-frame must be a frame index or 'auto', got {value!r}") from None
    if frame < 0:
        raise ValueError(f"--keyframe-frame must be >= 0, got {frame}")
    return frame


def _local_clip_frames(model: str) -> int | None:
    """The model's clip length by its base's rule, from a local folder's transformer config, without loading the
    model (None for a hub id)."""
    import json

    from vivid.model.registry import spec_for

    config = Path(model) / "transformer" / "config.json"
    if not config.is_file():
        return None
    return spec_for(model).clip_frames(json.loads(config.read_text()))


def load_pipeline(args: argparse.Namespace):
    """Build the VIVIDPipeline a CLI command asked for (shared by edit, keyframe, eval, app)."""
    import torch

    from vivid.pipeline import VIVIDPipeline

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype_name = args.dtype or ("bfloat16" if device.startswith("cuda") else "float32")
    model = args.model
    if not (Path(model).is_dir() or "/" in model):
        raise ValueError(f"--model {model!r} is neither a local folder nor a hub id (owner/name)")
    if Path(model).exists() and not (Path(model) / "model_index.json").is_file():
        raise FileNotFoundError(f"--model {model}: no model_index.json (not a diffusers pipeline folder)")
    pipe = VIVIDPipeline.from_pretrained(model, dtype=getattr(torch, dtype_name))
    if args.weights:
        pipe.load_vivid_weights(args.weights)
    if args.vae_tiling:
        pipe.enable_vae_tiling()
    if args.cpu_offload:
        if not device.startswith("cuda"):
            raise ValueError("--cpu-offload needs a GPU (it moves models between CPU and GPU)")
        pipe.enable_model_cpu_offload(device=device)
    else:
        pipe.to(device)
    return pipe


def run(args: argparse.Namespace) -> int:
    """Every edit, of an image or a video of any length, is a plan of clips run by `vivid.longvideo.runner`:
    a video of at most one clip (and an image) is the plan of one clip, one pipeline call."""
    from vivid.longvideo.boundaries import BoundaryConfig
    from vivid.io.edit_inputs import check_edit_options, check_outputs, resolve_prompt
    from vivid.io.atomic import remove_stale_temporaries
    from vivid.io.files import is_image_path
    from vivid.longvideo.plan import model_clip_frames
    from vivid.longvideo.runner import chain_edit, open_edit_sources

    image_in = is_image_path(args.video)
    # before anything is read or loaded: the output may not overwrite an input nor carry another format's name
    out = check_outputs(args.out, image_in, {"--video": args.video, "--mask": args.mask, "--keyframe": args.keyframe},
                        work_dir=args.work_dir)
    check_edit_options(args.height, args.width, args.paste_back_dilation)
    remove_stale_temporaries(out)  # a killed run's partial output (`atomic_path`), never anything else
    keyframe_frame = parse_keyframe_frame(args.keyframe_frame)
    if args.clip_frames is not None and (args.clip_frames < 5 or (args.clip_frames - 1) % 4):
        raise ValueError(f"--clip-frames must be 4k+1 and at least 5, got {args.clip_frames}")
    resolve_prompt(args.prompt, args.task)
    # fail fast on bad inputs, before loading the model
    source, masks, _ = open_edit_sources(args.video, args.mask, args.keyframe, warn=False)
    pipe = None
    clip_frames = args.clip_frames or _local_clip_frames(args.model)
    if clip_frames is None:  # a hub id: the clip length is known once the model is loaded
        pipe = load_pipeline(args)
        clip_frames = model_clip_frames(pipe.transformer)
    one_clip = len(source) <= clip_frames and keyframe_frame == 0
    config = BoundaryConfig()
    if args.min_similarity is not None:
        config.min_similarity = args.min_similarity
    if args.cut_similarity is not None:
        config.cut_similarity = args.cut_similarity
    pipe = pipe or load_pipeline(args)
    result = chain_edit(
        pipe, args.video, args.mask, args.prompt, args.task, out,
        keyframe=args.keyframe, keyframe_frame=keyframe_frame, max_frames=args.clip_frames,
        boundaries="fixed" if one_clip else args.boundaries, boundary_config=config,
        num_inference_steps=args.steps, guidance_scale=args.guidance, seed=args.seed,
        negative_prompt=args.negative_prompt, paste_back_source=args.paste_back,
        paste_back_dilation=args.paste_back_dilation, height=args.height, width=args.width, lossless=args.lossless,
        work_dir=args.work_dir, restart=args.restart, keep_work=args.keep_work,
    )
    ran = len(result.seconds_per_clip)
    per_clip = sum(result.seconds_per_clip) / ran if ran else 0.0
    resumed = f", {result.resumed_clips} resumed" if result.resumed_clips else ""
    print(f"wrote {out} ({result.num_frames} frames, {source.width}x{source.height}; "
          f"{len(result.plan.clips)} clip{'s' if len(result.plan.clips) > 1 else ''}{resumed}, "
          f"{per_clip:.1f} s per clip)")
    return 0
