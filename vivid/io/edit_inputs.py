"""Normalising and validating what a user gives an edit: video, mask, keyframe, task, caption.

Everything becomes uint8 RGB frames (F, H, W, 3) and a bool mask (F, H, W); every problem raises
`EditInputError` with a message naming it (frame count, size, emptiness, ...).
"""

from __future__ import annotations

import logging
import math
import numbers
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vivid.constants import DELETE_CAPTION, TASKS
from vivid.io.files import check_out_suffix, is_image_path, is_video_file
from vivid.io.images import read_image
from vivid.io.masks import binarize_mask, read_mask
from vivid.io.video import frame_timing, match_mask_frames, read_video, variable_rate_note

logger = logging.getLogger(__name__)


class EditInputError(ValueError):
    """An edit input that cannot be used."""


def _pil_to_array(img: Any) -> np.ndarray:
    """A PIL image's values for a mask: grey as is, alpha kept (it may carry the mask), else RGB."""
    if img.mode in ("L", "1"):
        return np.asarray(img)
    if "A" in img.mode or "transparency" in img.info:
        return np.asarray(img.convert("RGBA"))
    return np.asarray(img.convert("RGB"))


def as_frames(video: Any, what: str = "video") -> np.ndarray:
    """uint8 RGB frames (F, H, W, 3) from a path, a PIL image or list of them, a NumPy array (F, H, W, 3) or
    (H, W, 3) in uint8 or in [0, 1] floats, or a torch tensor (F, 3, H, W) in [0, 1]."""
    if isinstance(video, (str, os.PathLike)):
        return read_video(video, what=what)[0]
    if isinstance(video, list):
        if not video:
            raise EditInputError(f"{what} is an empty list of frames")
        if hasattr(video[0], "convert"):
            return np.stack([np.asarray(f.convert("RGB")) for f in video])
        video = np.stack([np.asarray(f) for f in video])
    if hasattr(video, "convert"):
        return np.asarray(video.convert("RGB"))[None]
    if isinstance(video, torch.Tensor):
        t = video.detach().cpu()
        if t.dim() == 3:
            t = t[None]
        if t.dim() != 4 or t.shape[1] not in (1, 3):
            raise EditInputError(f"{what} tensor must be (F, 3, H, W), got {tuple(video.shape)}")
        video = t.permute(0, 2, 3, 1).numpy()
        if video.shape[-1] == 1:
            video = np.repeat(video, 3, axis=-1)
    arr = np.asarray(video)
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise EditInputError(f"{what} must be frames (F, H, W, 3), got shape {arr.shape}")
    if arr.dtype != np.uint8:
        if arr.min() < 0 or arr.max() > 1:
            raise EditInputError(f"{what} float values must be in [0, 1], got [{arr.min():.3g}, {arr.max():.3g}]")
        arr = np.round(arr * 255).astype(np.uint8)
    if arr.shape[0] == 0:
        raise EditInputError(f"{what} has no frames")
    return arr


def as_mask(mask: Any) -> np.ndarray:
    """bool (F, H, W) from a path (mask video, folder of PNGs, image, .npy/.npz), PIL image(s), array or tensor,
    by `vivid.io.masks.binarize_mask`'s rule (alpha where it carries the mask; >= half the range; 0/1 labels)."""
    if isinstance(mask, (str, os.PathLike)):
        return read_mask(mask)
    if isinstance(mask, list):
        mask = np.stack([_pil_to_array(m) if hasattr(m, "convert") else np.asarray(m) for m in mask])
    elif hasattr(mask, "convert"):
        mask = _pil_to_array(mask)[None]
    if isinstance(mask, torch.Tensor):
        mask = mask.detach().cpu().numpy()
        if mask.ndim == 4 and mask.shape[1] in (1, 3, 4):  # (F, C, H, W)
            mask = np.moveaxis(mask, 1, -1)
    arr = np.asarray(mask)
    if arr.ndim == 3 and arr.shape[-1] in (3, 4):  # one (H, W, C) frame: no video is 3 or 4 pixels wide
        arr = arr[None]
    if arr.ndim not in (2, 3, 4):
        raise EditInputError(f"mask must be (F, H, W), got shape {arr.shape}")
    return binarize_mask(arr)


@dataclass
class EditInputs:
    frames: np.ndarray  # (F, H, W, 3) uint8
    mask: np.ndarray  # (F, H, W) bool, one per frame
    keyframe: np.ndarray | None  # (H, W, 3) uint8
    prompt: str
    task: str
    fps: float = 0.0
    last_keyframe: np.ndarray | None = None  # (H, W, 3) uint8: an edited last frame (a clip between two keyframes)
    reference_images: list[np.ndarray] = field(default_factory=list)  # (H, W, 3) uint8 each, any size (VACE's)


def resolve_prompt(prompt: str | None, task: str, required: bool = True, name: str = "prompt") -> str:
    """The caption to use; `required=False` when the caller passes precomputed prompt embeddings instead; `name`:
    the caller's word for the caption in messages."""
    if task not in TASKS:
        raise EditInputError(f"unknown task {task!r}: expected one of {', '.join(TASKS)}")
    if task == "delete" and not prompt:
        return DELETE_CAPTION
    if not required and not prompt:
        return ""
    if not prompt or not prompt.strip():
        raise EditInputError(f"task {task!r} needs a caption of what should be in the mask ({name})")
    return prompt


def check_sampling(num_inference_steps: int, guidance_scale: float) -> None:
    """Reject a step count below 1 or a negative / non-finite guidance scale (1 or less = no guidance)."""
    if isinstance(num_inference_steps, bool) or not isinstance(num_inference_steps, numbers.Integral):
        raise EditInputError(f"num_inference_steps must be a whole number >= 1, got {num_inference_steps!r}")
    if num_inference_steps < 1:
        raise EditInputError(f"num_inference_steps must be >= 1, got {num_inference_steps}")
    if not isinstance(guidance_scale, numbers.Real) or not math.isfinite(guidance_scale) or guidance_scale < 0:
        raise EditInputError(f"guidance_scale must be a finite number >= 0 (1 = no guidance), got {guidance_scale}")


SIDE_RULE = "a multiple of 16 and at least 16"  # working sizes: the VAE's 8x times the transformer's 2x2 patches


def check_side(value: Any, name: str = "height") -> int:
    """A working height or width: a whole number, `SIDE_RULE`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 16 or value % 16:
        raise EditInputError(f"{name} must be {SIDE_RULE}, got {value!r}")
    return int(value)


def check_edit_options(
    height: int | None = None, width: int | None = None, paste_back_dilation: int | None = None
) -> None:
    """The working size (both or neither; `check_side`) and a paste-back dilation (>= 0 pixels): checked before
    any model work, by `vivid edit`, `vivid keyframe`, the app and `chain_edit`."""
    if (height is None) != (width is None):
        raise EditInputError(f"give both height and width, or neither (got height {height}, width {width})")
    if height is not None:
        check_side(height, "height")
        check_side(width, "width")
    if paste_back_dilation is not None and (
        isinstance(paste_back_dilation, bool) or not isinstance(paste_back_dilation, numbers.Integral)
        or paste_back_dilation < 0
    ):
        raise EditInputError(f"paste-back dilation must be a whole number of pixels >= 0, got {paste_back_dilation!r}")


def _same_file(a: Path, b: Path) -> bool:
    """Whether two paths name one file: `os.path.samefile` where both exist (hard links, symbolic links), else
    the resolved paths."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return a.resolve() == b.resolve()


def check_outputs(
    out: str | os.PathLike | None, image: bool, inputs: dict[str, Any], work_dir: str | os.PathLike | None = None,
    names: tuple[str, str] = ("out", "work_dir"),
) -> Path | None:
    """Refuse an output that would overwrite or change an input: `out` (or the long edit's `work_dir`) the same
    file as an input (`inputs`: name -> path, e.g. {"video": ...}; non-paths are skipped), or inside an input
    folder (a mask folder would gain a frame); and an extension that is not what is written (`check_out_suffix`).
    `names`: how messages name the output and the work folder (the caller's words for them). `out` None: the
    work folder alone (a parallel edit's keyframes, edited before its output is named)."""
    out = Path(out) if out is not None else None
    if out is not None and out.is_dir():
        raise EditInputError(f"{names[0]} {out} is a folder; give a file name")
    if out is not None:
        check_out_suffix(out, image, names[0])
    written = ([(names[0], out)] if out is not None else []) + (
        [(names[1], Path(work_dir))] if work_dir is not None else [])
    for name, given in inputs.items():
        if not isinstance(given, (str, os.PathLike)):
            continue
        given = Path(given)
        for flag, path in written:
            if _same_file(path, given):
                raise EditInputError(f"{flag} {path} is the input {name} {given}; vivid never overwrites an input")
            if given.is_dir() and given.resolve() in path.resolve().parents:
                raise EditInputError(f"{flag} {path} is inside the input folder {name} {given}; write it elsewhere")
    return out


def validate(
    frames: np.ndarray, mask: np.ndarray, keyframe: np.ndarray | None = None, last_keyframe: np.ndarray | None = None
) -> np.ndarray:
    """Check mask and keyframes against the video; return the mask broadcast to one per frame."""
    n, h, w = frames.shape[:3]
    if mask.shape[0] not in (1, n):
        raise EditInputError(
            f"mask has {mask.shape[0]} frames but the video has {n}: give one mask per frame or a single mask"
        )
    if mask.shape[1:] != (h, w):
        raise EditInputError(f"mask size {mask.shape[2]}x{mask.shape[1]} differs from the video's {w}x{h} (WxH)")
    if mask.shape[0] == 1 and n > 1:
        mask = np.repeat(mask, n, axis=0)
    for name, key in (("keyframe", keyframe), ("last keyframe", last_keyframe)):
        if key is None:  # before the mask check: with one frame, nothing is ever left "after the keyframe"
            continue
        if n < 2:
            raise EditInputError(f"a {name} needs a video of at least 2 frames to propagate to, got an image")
        if key.shape[:2] != (h, w):
            raise EditInputError(f"{name} size {key.shape[1]}x{key.shape[0]} differs from the video's {w}x{h} (WxH)")
    check_from = 1 if keyframe is not None else 0
    check_to = n - 1 if last_keyframe is not None else n
    if not mask[check_from:check_to].any():
        where = "between the keyframes" if last_keyframe is not None else (
            "after the keyframe" if keyframe is not None else "in every frame")
        raise EditInputError(f"mask is empty {where}: nothing to edit")
    return mask


def _keyframe_frame(keyframe: Any, what: str = "keyframe") -> np.ndarray:
    """uint8 (H, W, 3): a keyframe (or another one-frame input, named `what`) from a path, or an image or array as
    `as_frames` takes."""
    key = read_image(keyframe, what) if isinstance(keyframe, (str, os.PathLike)) else as_frames(keyframe, what)
    if key.ndim == 4:
        if key.shape[0] != 1:
            raise EditInputError(f"{what} must be one frame, got {key.shape[0]}")
        key = key[0]
    return key


def load_reference_images(images: Any, what: str = "reference image") -> list[np.ndarray]:
    """uint8 (H, W, 3) each, of any size: the reference images of an edit (what to generate, for a base that takes
    them: Wan2.1-VACE), from one path, PIL image or array (H, W, 3), or a list or tuple of them; [] for None."""
    if images is None:
        return []
    items = list(images) if isinstance(images, (list, tuple)) else [images]
    return [_keyframe_frame(item, what) for item in items]


def load_keyframe(keyframe: Any, height: int, width: int) -> np.ndarray | None:
    """The keyframe of an edit (a path, or an image or array as `as_frames` takes), checked to be one uint8 RGB
    frame of the video's size; None for none."""
    if keyframe is None:
        return None
    key = _keyframe_frame(keyframe)
    if key.shape[:2] != (height, width):
        raise EditInputError(
            f"keyframe size {key.shape[1]}x{key.shape[0]} differs from the video's {width}x{height} (WxH)"
        )
    return key


def load_edit_inputs(
    video: Any, mask: Any, prompt: str | None, task: str, keyframe: Any | None = None, prompt_required: bool = True,
    last_keyframe: Any | None = None, reference_images: Any | None = None,
) -> EditInputs:
    """Read and check every input of an edit. Raises EditInputError / MediaError naming the problem."""
    prompt = resolve_prompt(prompt, task, prompt_required)
    fps = 0.0
    video_file = isinstance(video, (str, os.PathLike)) and not is_image_path(video)
    if video_file:
        frames, fps = read_video(video)
    elif isinstance(video, (str, os.PathLike)):
        frames = read_image(video, "video")[None]
    else:
        frames = as_frames(video)
    mask_arr = as_mask(mask)
    if video_file:  # a mask video of another frame rate or count, a variable-frame-rate source: say how they match
        timing = frame_timing(video)
        notes = [variable_rate_note(timing, str(video))]
        if isinstance(mask, (str, os.PathLike)) and is_video_file(mask):
            index, note = match_mask_frames(timing, frame_timing(mask, "mask"), str(mask))
            mask_arr = mask_arr if index is None else mask_arr[index]
            notes.append(note)
        for note in filter(None, notes):
            logger.warning("%s", note)
    key = None if keyframe is None else _keyframe_frame(keyframe)
    last_key = None if last_keyframe is None else _keyframe_frame(last_keyframe)
    mask_arr = validate(frames, mask_arr, key, last_key)
    return EditInputs(frames=frames, mask=mask_arr, keyframe=key, prompt=prompt, task=task, fps=fps,
                      last_keyframe=last_key, reference_images=load_reference_images(reference_images))
