"""The edit request: what a user asked for (CLI arguments, the app's fields or Python keywords), checked once and
frozen, before any model work. `edit_request` builds it; `vivid.longvideo.runner.chain_edit` runs it and checks
nothing again.

Messages name the user's own words for a field (`EditRequest.labels`): the CLI passes its flags, the app its field
names; Python callers get the keyword names.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from vivid.longvideo.boundaries import BoundaryConfig, check_clip_frames
from vivid.io.edit_inputs import (
    EditInputError,
    check_edit_options,
    check_outputs,
    check_sampling,
    load_keyframe,
    load_reference_images,
    resolve_prompt,
)
from vivid.io.files import is_image_path
from vivid.io.images import read_image
from vivid.io.masks import MaskSource, looks_like_a_photo
from vivid.io.video import VideoSource, variable_rate_note
from vivid.longvideo.plan import default_work_dir

logger = logging.getLogger(__name__)

BOUNDARY_MODES = ("adaptive", "fixed")

# how messages name each field for a Python caller (the keyword); the CLI and the app pass their own words
KEYWORD_LABELS: Mapping[str, str] = {
    "video": "video", "mask": "mask", "prompt": "prompt", "keyframe": "keyframe", "out": "out", "work_dir": "work_dir",
    "restart": "restart=True", "clip_frames": "clip_frames", "keyframe_frame": "keyframe_frame",
    "long_mode": "long_mode", "kv_budget": "kv_budget", "keyframe_group": "keyframe_group",
    "reference_images": "reference_images",
}
LONG_MODES = ("chain", "parallel")  # vivid.longvideo.parallel runs the second


@dataclass(frozen=True)
class EditOptions:
    """How to edit. None: the base's (steps, guidance, clip length) or the pipeline's choice (working size)."""

    keyframe_frame: int | str = 0  # the frame the keyframe shows (index in the first clip), or "auto"
    clip_frames: int | None = None  # frames per clip, 4k+1 (default: the model's clip)
    boundaries: str = "adaptive"  # "adaptive" (cuts and content changes) or "fixed" windows
    boundary_config: BoundaryConfig = field(default_factory=BoundaryConfig)
    num_inference_steps: int | None = None
    guidance_scale: float | None = None
    seed: int = 0  # clip i is sampled with seed + i
    negative_prompt: str | None = None
    paste_back_source: bool = True
    paste_back_dilation: int | None = None
    height: int | None = None
    width: int | None = None
    lossless: bool = False
    restart: bool = False  # discard an unfinished run of this edit in the work folder
    keep_work: bool = False  # keep the work folder after success
    long_mode: str = "chain"  # "chain": clip after clip; "parallel": joint keyframes, then clips between two
    kv_budget: int | None = None  # parallel: other keyframes' tokens each keyframe attends to (None: all)
    keyframe_group: int | None = None  # parallel: keyframes through the model at once (None: a clip's latent frames)


@dataclass(frozen=True)
class EditRequest:
    """A checked edit: its opened sources, output, work folder and options."""

    source: VideoSource
    masks: MaskSource
    keyframe: np.ndarray | None  # uint8 (H, W, 3), of the source's size
    prompt: str  # resolved (deletion's caption when none is given)
    task: str
    out: Path | None  # None: the keyframes of a parallel edit only (`vivid.longvideo.runner.edit_keyframes_first`)
    work: Path
    options: EditOptions
    mask_input: Any  # what the mask was given as (its path, or the array: part of the edit's identity)
    fps: float | None = None  # the frame rate given for an array source (None: a file's own, else the base's)
    labels: Mapping[str, str] = field(default_factory=lambda: dict(KEYWORD_LABELS))
    reference_images: tuple[np.ndarray, ...] = ()  # uint8 (H, W, 3) each, any size: what to generate (VACE's)


def _is_image(video: Any) -> bool:
    return isinstance(video, (str, os.PathLike)) and is_image_path(video)


def open_edit_sources(
    video: str | os.PathLike | np.ndarray,
    mask: str | os.PathLike | np.ndarray,
    keyframe: Any | None = None,
    fps: float | None = None,
    warn: bool = True,
) -> tuple[VideoSource, MaskSource, np.ndarray | None]:
    """Open and check an edit's inputs without decoding the video: the source (a video file, an image, an array),
    its masks (matched to the video's frames) and the keyframe. Raises MediaError / EditInputError naming the
    problem; `warn`: log how a mask video of another frame rate is matched and a variable frame rate."""
    if _is_image(video):
        source = VideoSource(read_image(video, "video")[None], fps=fps)
    else:
        source = VideoSource(video, fps=fps)
    n = len(source)
    timing = source.timing() if source.path else None
    masks = MaskSource(mask, n, source.height, source.width, timing=timing, warn=warn)
    if timing is not None and warn:
        note = variable_rate_note(timing, str(source.path))
        if note:
            logger.warning("%s", note)
    key = load_keyframe(keyframe, source.height, source.width)
    if key is not None and n < 2:
        raise EditInputError("a keyframe needs a video of at least 2 frames to propagate to, got an image")
    return source, masks, key


def check_options(options: EditOptions, labels: Mapping[str, str] = KEYWORD_LABELS) -> None:
    """Every option's value, before anything is read: raises EditInputError naming the field."""
    check_edit_options(options.height, options.width, options.paste_back_dilation)
    frame = options.keyframe_frame
    if frame != "auto" and (isinstance(frame, bool) or not isinstance(frame, int) or frame < 0):
        raise EditInputError(f"{labels['keyframe_frame']} must be a frame index >= 0 or 'auto', got {frame!r}")
    if options.clip_frames is not None:
        try:
            check_clip_frames(options.clip_frames)
        except ValueError as err:
            raise EditInputError(f"{labels['clip_frames']}: {err}") from None
    if options.boundaries not in BOUNDARY_MODES:
        raise EditInputError(f"boundaries must be one of {', '.join(BOUNDARY_MODES)}, got {options.boundaries!r}")
    if options.long_mode not in LONG_MODES:
        raise EditInputError(f"{labels['long_mode']} must be one of {', '.join(LONG_MODES)}, got {options.long_mode!r}")
    for name, what in (("kv_budget", "tokens"), ("keyframe_group", "keyframes")):
        value = getattr(options, name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise EditInputError(f"{labels[name]} must be a whole number of {what} >= 1, got {value!r}")
    if options.num_inference_steps is not None or options.guidance_scale is not None:
        check_sampling(1 if options.num_inference_steps is None else options.num_inference_steps,
                       1.0 if options.guidance_scale is None else options.guidance_scale)


def edit_request(
    video: str | os.PathLike | np.ndarray,
    mask: str | os.PathLike | np.ndarray,
    prompt: str | None,
    task: str,
    out: str | os.PathLike | None,
    *,
    keyframe: Any | None = None,
    options: EditOptions | None = None,
    work_dir: str | os.PathLike | None = None,
    fps: float | None = None,
    labels: Mapping[str, str] | None = None,
    reference_images: Any | None = None,
    **option_keywords: Any,
) -> EditRequest:
    """Check everything an edit was asked for, open its sources (without decoding the video) and freeze it.

    Args:
        video: a video file, an image (then an image is written) or frames (F, H, W, 3) uint8.
        mask: a mask video, folder of images, one image, .npy/.npz, or an array.
        keyframe: an edited frame (path or uint8 (H, W, 3)) showing source frame `options.keyframe_frame`.
        out: the output file; None with a `work_dir`: a request for the joint keyframes of a parallel edit alone,
            which a request of the same edit with an output then resumes.
        work_dir: finished clips and resume state (default `<out>.work`).
        fps: the frame rate of an array source.
        labels: how messages name the fields (`KEYWORD_LABELS`' keys), e.g. the CLI's flags.
        reference_images: images of what to generate (paths, PIL images or arrays (H, W, 3), or one of them), for
            a base that takes them (Wan2.1-VACE; the pipeline refuses them for the others).
        option_keywords: `EditOptions` fields, over `options` (`edit_request(..., clip_frames=9, seed=3)`).
    Raises EditInputError / MediaError naming the problem, before any model work.
    """
    labels = {**KEYWORD_LABELS, **(labels or {})}
    options = options or EditOptions()
    unknown = sorted(set(option_keywords) - {f.name for f in fields(EditOptions)})
    if unknown:
        raise TypeError(f"edit_request() got unknown options {', '.join(unknown)}")
    options = replace(options, **option_keywords)
    if out is None and not work_dir:
        raise EditInputError(f"give {labels['out']} or {labels['work_dir']}")
    out = Path(out) if out is not None else None
    work = Path(work_dir) if work_dir else default_work_dir(out)
    inputs = {labels[k]: v for k, v in (("video", video), ("mask", mask), ("keyframe", keyframe))}
    given = list(reference_images) if isinstance(reference_images, (list, tuple)) else [reference_images]
    given = [image for image in given if image is not None]
    inputs.update((labels["reference_images"] + (f" {i + 1}" if len(given) > 1 else ""), image)
                  for i, image in enumerate(given))  # the output is never one of them
    check_outputs(out, _is_image(video), inputs, work_dir=work,
                  names=(labels["out"], labels["work_dir"]))
    check_options(options, labels)
    prompt = resolve_prompt(prompt, task, name=labels["prompt"])
    source, masks, key = open_edit_sources(video, mask, keyframe, fps=fps)
    references = tuple(load_reference_images(reference_images, labels["reference_images"]))
    if looks_like_a_photo(masks.given_values(0)):
        logger.warning("%s %s looks like a photo, not a mask (many grey levels): pixels at half brightness or more "
                       "are edited", labels["mask"], masks.path or "array")
    return EditRequest(source=source, masks=masks, keyframe=key, prompt=prompt, task=task, out=out, work=work,
                       options=options, mask_input=masks.path if masks.path else mask, fps=fps, labels=labels,
                       reference_images=references)
