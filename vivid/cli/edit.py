"""`vivid edit`: add, modify or delete an entity inside a mask of a video or an image.

Every edit runs through the clip runner (`vivid.longvideo.runner.chain_edit`): an image or a video of at most one
clip of the model (`--clip-frames`, default the model's clip length by its base's rule) is one clip, one pipeline call; a longer
video is edited clip by clip with KIVE chaining: streamed, with a progress bar over clips, resumable after a kill
by running the same command again.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from vivid.cli.mask import add_target_arguments, target_mask
from vivid.cli.numbers import pixels, positive_int
from vivid.constants import TASKS

logger = logging.getLogger("vivid.edit")

UNTRAINED = ("no --weights: the model is untrained (VIVID's source and mask channels start at zero, so the base "
             "ignores the source and generates inside the mask from the prompt alone)")


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="base model (CogVideoX or Wan2.1): hub id (THUDM/CogVideoX-5b, "
                   "Wan-AI/Wan2.1-T2V-1.3B-Diffusers) or local diffusers folder")
    p.add_argument("--weights", help="VIVID weights folder (LoRA + patch embedding); omit for the untrained model")
    p.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default=None,
                   help="model dtype (default: bfloat16 on GPU, float32 on CPU)")
    p.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    add_speed_arguments(p)


# --memory's choices: diffusers' placement each names (docs/performance.md: peak memory and time of each)
MEMORY_CHOICES = {"none": "none", "model": "model_offload", "sequential": "sequential_offload",
                  "group": "group_offload"}
# --cache's choices: diffusers' cache hooks by their module names -> `vivid.speed.CACHES`
CACHE_CHOICES = {"first_block_cache": "fbc", "pyramid_attention_broadcast": "pab", "faster_cache": "fastercache",
                 "taylorseer_cache": "taylorseer"}


def add_speed_arguments(p: argparse.ArgumentParser) -> None:
    """Speed and memory options of `vivid.speed` (shared by edit, keyframe, app and eval)."""
    from vivid.speed import ATTENTION_BACKENDS

    g = p.add_argument_group("speed and memory (what each costs in quality: docs/performance.md)")
    g.add_argument("--memory", choices=list(MEMORY_CHOICES), default="none",
                   help="where the models live: none (all on the device), model (enable_model_cpu_offload), "
                        "sequential (enable_sequential_cpu_offload), group (enable_group_offload, blocks streamed); "
                        "model and sequential need a GPU")
    g.add_argument("--vae-tiling", action="store_true", help="encode/decode the VAE in tiles: lower peak memory")
    g.add_argument("--vae-slicing", action="store_true", help="the VAE one video at a time (enable_slicing)")
    g.add_argument("--attention-backend", choices=ATTENTION_BACKENDS, default=None,
                   help="diffusers' attention backend, 'auto' the fastest installed (default: diffusers' own)")
    g.add_argument("--fuse-lora", action="store_true",
                   help="fold the VIVID LoRA into the base weights (fuse_lora): no adapter matmuls")
    g.add_argument("--fuse-qkv-projections", action="store_true",
                   help="one QKV matmul per attention (fuse_qkv_projections; implies --fuse-lora)")
    g.add_argument("--compile-repeated-blocks", action="store_true",
                   help="regional torch.compile of the transformer blocks (compile_repeated_blocks)")
    g.add_argument("--cache", choices=list(CACHE_CHOICES), default=None,
                   help="a diffusers cache that skips work between steps: faster, the output changes slightly "
                        "(default: none)")


def speed_options(args: argparse.Namespace, device: str):
    """The `vivid.speed.SpeedOptions` a command's arguments ask for (commands without the flags get none)."""
    from vivid.speed import SpeedOptions

    fuse_qkv = getattr(args, "fuse_qkv_projections", False)
    cache = getattr(args, "cache", None)
    return SpeedOptions(
        attention_backend=getattr(args, "attention_backend", None),
        merge_lora=fuse_qkv or getattr(args, "fuse_lora", False), fuse_qkv=fuse_qkv,
        compile=getattr(args, "compile_repeated_blocks", False), cache=CACHE_CHOICES[cache] if cache else None,
        vae_tiling=False,  # the spec's tiling, below
        vae_slicing=getattr(args, "vae_slicing", False), memory=MEMORY_CHOICES[getattr(args, "memory", "none")],
        device=device,
    )


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


def add_size_arguments(p: argparse.ArgumentParser) -> None:
    """--height/--width: the working size (shared by edit, keyframe and app)."""
    size = "a multiple of 16; default: the weights' training bucket nearest the source's aspect, else the native area"
    p.add_argument("--height", type=working_side, default=None, help=f"working height ({size})")
    p.add_argument("--width", type=working_side, default=None, help=f"working width ({size})")
    add_pixel_limit_arguments(p)


def add_pixel_limit_arguments(p: argparse.ArgumentParser) -> None:
    """--max-frame-pixels/--max-pixels: the largest input video or image, checked before decoding."""
    from vivid.io.limits import DEFAULT_MAX_FRAME_PIXELS, DEFAULT_MAX_PIXELS

    p.add_argument("--max-frame-pixels", type=int, default=DEFAULT_MAX_FRAME_PIXELS, metavar="N",
                   help="refuse inputs whose frames have more pixels than this, width x height (default: "
                        "%(default)s; 0: no limit)")
    p.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS, metavar="N",
                   help="refuse videos with more pixels than this, frames x width x height (default: %(default)s; "
                        "0: no limit)")


def pixel_limits(args: argparse.Namespace):
    """The `vivid.io.limits.PixelLimits` of the command line's options."""
    from vivid.io.limits import PixelLimits

    return PixelLimits(frame=args.max_frame_pixels, total=args.max_pixels)


def add_sampling_arguments(p: argparse.ArgumentParser, several_seeds: bool = False) -> None:
    """--steps, --guidance, --seed, --negative-prompt; `several_seeds`: --seed takes one seed per candidate."""
    p.add_argument("--steps", type=positive_int, default=None, help="denoising steps (>= 1; default: the base's)")
    p.add_argument("--guidance", type=guidance_scale, default=None,
                   help="classifier-free guidance scale (>= 0; 1 or less = off; default: the base's)")
    if several_seeds:
        p.add_argument("--seed", type=int, nargs="+", default=[0],
                       help="the first candidate's seed (the others: seed+1, ...), or one seed per candidate")
    else:
        p.add_argument("--seed", type=int, default=0, help="noise seed (a long video's clip i: seed + i)")
    p.add_argument("--negative-prompt", default=None, help="what guidance steers away from (default: none)")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("edit", help="edit a video or image inside a mask")
    add_model_arguments(p)
    p.add_argument("--video", required=True, help="input video, or an image (then an image is written)")
    p.add_argument("--mask", default=None, help="mask video, folder of PNGs, one image for all frames, or .npy/.npz "
                   "(or make it: --target / --point / --box)")
    p.add_argument("--prompt", default=None, help="local caption of what should be in the mask (optional for delete)")
    p.add_argument("--task", required=True, choices=TASKS)
    p.add_argument("--out", required=True,
                   help="output video (.mp4/.mov/.m4v, written as MP4) or, for an image input, an image (.png/.jpg); "
                        "never one of the inputs")
    p.add_argument("--keyframe", default=None, help="edited first frame to propagate (KIVE)")
    p.add_argument("--reference-image", action="append", default=None, metavar="IMAGE",
                   help="an image of what to generate, of any size (repeatable): Wan2.1-VACE models only, given to "
                        "every clip as WanVACEPipeline's reference images")
    add_sampling_arguments(p)
    add_paste_back_arguments(p)
    p.add_argument("--no-audio", action="store_true",
                   help="write the frames only (default: the source video's audio is copied into the output, cut to "
                        "the edited frames)")
    p.add_argument("--lossless", action="store_true",
                   help="write the output video losslessly (RGB H.264: bit-exact, large, not every player plays it)")
    add_size_arguments(p)
    add_long_video_arguments(p)
    add_target_arguments(p)
    p.set_defaults(func=run)


def add_paste_back_arguments(p: argparse.ArgumentParser) -> None:
    """--no-paste-back, --paste-back-dilation (shared by edit and keyframe's parallel mode)."""
    p.add_argument("--no-paste-back", dest="paste_back", action="store_false",
                   help="keep the generated pixels everywhere instead of the source outside the dilated mask")
    p.add_argument("--paste-back-dilation", type=pixels, default=None, help="pixels (default: one latent cell)")


LONG_MODE_HELP = ("chain: each clip starts from the previous clip's last edited frame; parallel: the keyframes (one at "
                  "each end of every clip) are edited together first, then every clip between its two keyframes, "
                  "independently (under `accelerate launch --num_processes N`, processes take clips in turn)")


def add_long_video_arguments(p: argparse.ArgumentParser, long_mode_help: str = LONG_MODE_HELP,
                             keep_work: bool = True) -> argparse._ArgumentGroup:
    """The long-video options (shared by edit and keyframe, whose parallel mode runs the edit's keyframe pass and
    keeps its work folder: no --keep-work there); the group, for a command's own options of the kind."""
    g = p.add_argument_group("long videos (more frames than one clip)")
    g.add_argument("--clip-frames", type=int, default=None,
                   help="frames per clip, 4k+1 (default: the base's clip length)")
    g.add_argument("--boundaries", choices=["adaptive", "fixed"], default="adaptive",
                   help="clip boundaries: at hard cuts and content changes (adaptive) or every clip-frames (fixed)")
    g.add_argument("--keyframe-frame", default="0",
                   help="the frame --keyframe shows (index in the first clip), or 'auto': the most representative "
                        "frame of the first clip, edited first when no --keyframe is given")
    g.add_argument("--min-similarity", type=float, default=None, help="adaptive: cut below this mean similarity")
    g.add_argument("--cut-similarity", type=float, default=None, help="adaptive: hard cut below this histogram overlap")
    g.add_argument("--long-mode", choices=["chain", "parallel"], default="chain", help=long_mode_help)
    g.add_argument("--kv-budget", type=int, default=None,
                   help="parallel: tokens of the other keyframes each keyframe attends to in the joint pass "
                        "(default: all)")
    g.add_argument("--keyframe-group", type=int, default=None,
                   help="parallel: keyframes run through the model at once in the joint pass, each attending to all "
                        "(default: as many as a clip has latent frames: a group holds about one clip's tokens)")
    g.add_argument("--work-dir", default=None,
                   help="finished clips and resume state (default: OUT.work beside vivid edit's --out)")
    g.add_argument("--restart", action="store_true", help="discard a previous unfinished run of this edit")
    if keep_work:
        g.add_argument("--keep-work", action="store_true", help="keep the work folder after success")
    return g


def parse_keyframe_frame(value: str) -> int | str:
    """A frame index or 'auto' (its range is the request's check)."""
    if value == "auto":
        return value
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"--keyframe-frame must be a frame index or 'auto', got {value!r}") from None


def _local_clip_frames(model: str) -> int | None:
    """The model's clip length by its base's rule, from a local folder's transformer config, without loading the
    model (None for a hub id)."""
    import json

    from vivid.model.registry import spec_for

    config = Path(model) / "transformer" / "config.json"
    if not config.is_file():
        return None
    return spec_for(model).clip_frames(json.loads(config.read_text()))


def model_is_inference_only(model: str | None) -> bool:
    """Whether `model` is a base vivid edits with as published (Wan2.1-VACE), which takes no VIVID weights; False
    where its config cannot be read here (a hub id not in the cache: loading the model says why)."""
    from vivid.model.registry import spec_for

    try:
        return model is not None and spec_for(model).inference_only
    except (OSError, ValueError):
        return False


def refuse_reference_images(model: str, images: list[str] | None) -> None:
    """--reference-image with a base that takes none (all but Wan2.1-VACE): refused in one line from the model's
    config, before anything is read or loaded (a hub id not in the cache: the pipeline refuses them once loaded)."""
    from vivid.model.registry import spec_for

    if not images:
        return
    try:
        spec = spec_for(model)
    except (OSError, ValueError):
        return
    spec.refuse_reference_images(f"--reference-image with --model {model}")


def load_pipeline(args: argparse.Namespace):
    """Build the VIVIDPipeline a CLI command asked for (shared by edit, keyframe, eval, app)."""
    import torch

    from vivid.pipeline import VIVIDPipeline
    from vivid.speed import apply_speed_options

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and "LOCAL_RANK" in os.environ:  # under `accelerate launch`: one GPU per process
        device = f"cuda:{int(os.environ['LOCAL_RANK'])}"
    dtype_name = args.dtype or ("bfloat16" if device.startswith("cuda") else "float32")
    model = args.model
    if not (Path(model).is_dir() or "/" in model):
        raise ValueError(f"--model {model!r} is neither a local folder nor a hub id (owner/name)")
    if Path(model).exists() and not (Path(model) / "model_index.json").is_file():
        raise FileNotFoundError(f"--model {model}: no model_index.json (not a diffusers pipeline folder)")
    if args.weights:  # an inference-only base (VACE) refuses VIVID weights before any model is loaded
        from vivid.model.registry import spec_for

        spec_for(model).refuse_training(f"--weights {args.weights}")
    pipe = VIVIDPipeline.from_pretrained(model, dtype=getattr(torch, dtype_name))
    if args.weights:
        pipe.load_vivid_weights(args.weights)
    options = speed_options(args, device)
    if options.memory in ("model_offload", "sequential_offload") and not device.startswith("cuda"):
        raise ValueError(f"--memory {args.memory} needs a GPU (it moves models between the CPU and a GPU)")
    if getattr(args, "vae_tiling", False):
        pipe.enable_vae_tiling()
    apply_speed_options(pipe, options)
    return pipe


# the CLI's words for the request's fields, in the library's messages
EDIT_LABELS = {"video": "--video", "mask": "--mask", "prompt": "--prompt", "keyframe": "--keyframe", "out": "--out",
               "work_dir": "--work-dir", "restart": "--restart", "clip_frames": "--clip-frames",
               "keyframe_frame": "--keyframe-frame", "long_mode": "--long-mode", "kv_budget": "--kv-budget",
               "keyframe_group": "--keyframe-group", "reference_images": "--reference-image"}


def edit_options(args: argparse.Namespace):
    """`vivid edit`'s arguments as the request's options (checked by `edit_request`)."""
    from vivid.longvideo.boundaries import BoundaryConfig
    from vivid.longvideo.request import EditOptions

    thresholds = {k: v for k, v in (("min_similarity", args.min_similarity), ("cut_similarity", args.cut_similarity))
                  if v is not None}
    return EditOptions(
        keyframe_frame=parse_keyframe_frame(args.keyframe_frame), clip_frames=args.clip_frames,
        boundaries=args.boundaries, boundary_config=BoundaryConfig(**thresholds), num_inference_steps=args.steps,
        guidance_scale=args.guidance, seed=args.seed, negative_prompt=args.negative_prompt,
        paste_back_source=args.paste_back, paste_back_dilation=args.paste_back_dilation, height=args.height,
        width=args.width, lossless=args.lossless, restart=args.restart, keep_work=args.keep_work,
        long_mode=getattr(args, "long_mode", "chain"), kv_budget=getattr(args, "kv_budget", None),
        keyframe_group=getattr(args, "keyframe_group", None),
    )


def keep_source_audio(video: str, out: Path, frames: int, fps: float) -> str:
    """Copy the source's audio into the written output (`vivid.io.audio.copy_audio`); what the summary line says
    of it. A failure leaves the frames-only output and is a warning: the edit itself is done."""
    from vivid.io.audio import copy_audio
    from vivid.io.files import MediaError

    try:
        return ", with the source's audio" if copy_audio(video, out, frames, fps) else ""
    except MediaError as err:
        logger.warning("%s; %s is written without audio", err, out)
        return ", without audio (see the warning)"


def run(args: argparse.Namespace) -> int:
    """Every edit, of an image or a video of any length, is a plan of clips run by `vivid.longvideo.runner`:
    a video of at most one clip (and an image) is the plan of one clip, one pipeline call."""
    import dataclasses

    from vivid.longvideo.plan import model_clip_frames
    from vivid.longvideo.request import edit_request
    from vivid.longvideo.runner import chain_edit
    from vivid.longvideo.state import default_work_dir
    from vivid.io.files import is_image_path
    from vivid.io.limits import check_pixel_limits

    refuse_reference_images(args.model, args.reference_image)
    references = [("--reference-image", path) for path in args.reference_image or []]
    for what, path in (("--video", args.video), ("--mask", args.mask), ("--keyframe", args.keyframe), *references):
        check_pixel_limits(path, pixel_limits(args), what)  # from the header, before anything is decoded
    # --mask as given, or made from the target options (a segmenter's work, before the edit's model loads)
    args.mask = target_mask(args, Path(args.work_dir) if args.work_dir else default_work_dir(Path(args.out)))
    # everything checked and the sources opened, before the model loads
    request = edit_request(args.video, args.mask, args.prompt, args.task, args.out, keyframe=args.keyframe,
                           options=edit_options(args), work_dir=args.work_dir, labels=EDIT_LABELS,
                           reference_images=args.reference_image)
    if not args.weights and not model_is_inference_only(args.model):
        logger.warning(UNTRAINED)
    pipe = None
    clip_frames = args.clip_frames or _local_clip_frames(args.model)
    if clip_frames is None:  # a hub id: the clip length is known once the model is loaded
        pipe = load_pipeline(args)
        clip_frames = model_clip_frames(pipe.transformer)
    if len(request.source) <= clip_frames and request.options.keyframe_frame == 0:  # one clip: no boundaries
        request = dataclasses.replace(request, options=dataclasses.replace(request.options, boundaries="fixed"))
    pipe = pipe or load_pipeline(args)
    result = chain_edit(pipe, request)
    if int(os.environ.get("RANK", "0")) != 0:  # under `accelerate launch`: rank 0 assembled and reports
        return 0
    audio = ""
    if not args.no_audio and not is_image_path(args.video) and not is_image_path(request.out):
        audio = keep_source_audio(args.video, request.out, result.num_frames, result.fps)
    ran = len(result.seconds_per_clip)
    per_clip = sum(result.seconds_per_clip) / ran if ran else 0.0
    resumed = f", {result.resumed_clips} resumed" if result.resumed_clips else ""
    print(f"wrote {request.out} ({result.num_frames} frames, {request.source.width}x{request.source.height}; "
          f"{len(result.plan.clips)} clip{'s' if len(result.plan.clips) > 1 else ''}{resumed}, "
          f"{per_clip:.1f} s per clip{audio})")
    return 0
