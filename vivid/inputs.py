"""Normalising and validating what a user gives an edit: video, mask, keyframe, task, caption.

Everything becomes uint8 RGB frames (F, H, W, 3) and a bool mask (F, H, W); every problem raises
`EditInputError` with a message naming it (frame count, size, emptiness, ...).
"""

from __future__ import annotations

import math
import numbers
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from vivid.constants import DELETE_CAPTION, TASKS
from vivid.media import binarize, is_image_path, read_image, read_mask, read_video


class EditInputError(ValueError):
    """An edit input that cannot be used."""


def _pil_to_array(img: Any) -> np.ndarray:
    return np.asarray(img.convert("RGB") if img.mode not in ("L", "1") else img)


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
    """bool (F, H, W) from a path (mask video, folder of PNGs, image, .npy/.npz), PIL image(s), array or tensor.
    Non-binary masks are thresholded at 0.5 of their range."""
    if isinstance(mask, (str, os.PathLike)):
        return read_mask(mask)
    if isinstance(mask, list):
        mask = np.stack([_pil_to_array(m) if hasattr(m, "convert") else np.asarray(m) for m in mask])
    elif hasattr(mask, "convert"):
        mask = _pil_to_array(mask)[None]
    if isinstance(mask, torch.Tensor):
        mask = mask.detach().cpu().numpy()
        if mask.ndim == 4 and mask.shape[1] in (1, 3):  # (F, C, H, W)
            mask = mask.max(axis=1)
    arr = np.asarray(mask)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim == 4:
        arr = arr.max(axis=-1)
    if arr.ndim != 3:
        raise EditInputError(f"mask must be (F, H, W), got shape {arr.shape}")
    return binarize(arr)


@dataclass
class EditInputs:
    frames: np.ndarray  # (F, H, W, 3) uint8
    mask: np.ndarray  # (F, H, W) bool, one per frame
    keyframe: np.ndarray | None  # (H, W, 3) uint8
    prompt: str
    task: str
    fps: float = 0.0


def resolve_prompt(prompt: str | None, task: str, required: bool = True) -> str:
    """The caption to use; `required=False` when the caller passes precomputed prompt embeddings instead."""
    if task not in TASKS:
        raise EditInputError(f"unknown task {task!r}: expected one of {', '.join(TASKS)}")
    if task == "delete" and not prompt:
        return DELETE_CAPTION
    if not required and not prompt:
        return ""
    if not prompt or not prompt.strip():
        raise EditInputError(f"task {task!r} needs a caption of what should be in the mask (--prompt)")
    return prompt


def check_sampling(num_inference_steps: int, guidance_scale: float) -> None:
    """Reject a step count below 1 or a negative / non-finite guidance scale (1 or less = no guidance)."""
    if isinstance(num_inference_steps, bool) or not isinstance(num_inference_steps, numbers.Integral):
        raise EditInputError(f"num_inference_steps must be a whole number >= 1, got {num_inference_steps!r}")
    if num_inference_steps < 1:
        raise EditInputError(f"num_inference_steps must be >= 1, got {num_inference_steps}")
    if not isinstance(guidance_scale, numbers.Real) or not math.isfinite(guidance_scale) or guidance_scale < 0:
        raise EditInputError(f"guidance_scale must be a finite number >= 0 (1 = no guidance), got {guidance_scale}")


def validate(frames: np.ndarray, mask: np.ndarray, keyframe: np.ndarray | None = None) -> np.ndarray:
    """Check mask and keyframe against the video; return the mask broadcast to one per frame."""
    n, h, w = frames.shape[:3]
    if mask.shape[0] not in (1, n):
        raise EditInputError(
            f"mask has {mask.shape[0]} frames but the video has {n}: give one mask per frame or a single mask"
        )
    if mask.shape[1:] != (h, w):
        raise EditInputError(f"mask size {mask.shape[2]}x{mask.shape[1]} differs from the video's {w}x{h} (WxH)")
    if mask.shape[0] == 1 and n > 1:
        mask = np.repeat(mask, n, axis=0)
    if keyframe is not None:  # before the mask check: with one frame, nothing is ever left "after the keyframe"
        if n < 2:
            raise EditInputError("a keyframe needs a video of at least 2 frames to propagate to, got an image")
        if keyframe.shape[:2] != (h, w):
            raise EditInputError(
                f"keyframe size {keyframe.shape[1]}x{keyframe.shape[0]} differs from the video's {w}x{h} (WxH)"
            )
    check_from = 1 if keyframe is not None else 0
    if not mask[check_from:].any():
        where = "after the keyframe" if keyframe is not None else "in every frame"
        raise EditInputError(f"mask is empty {where}: nothing to edit")
    return mask


def load_edit_inputs(
    video: Any, mask: Any, prompt: str | None, task: str, keyframe: Any | None = None, prompt_required: bool = True
) -> EditInputs:
    """Read and check every input of an edit. Raises EditInputError / MediaError naming the problem."""
    prompt = resolve_prompt(prompt, task, prompt_required)
    fps = 0.0
    if isinstance(video, (str, os.PathLike)):
        if is_image_path(video):
            frames = read_image(video, "video")[None]
        else:
            frames, fps = read_video(video)
    else:
        frames = as_frames(video)
    mask_arr = as_mask(mask)
    key = None
    if keyframe is not None:
        key = read_image(keyframe, "keyframe") if isinstance(keyframe, (str, os.PathLike)) else as_frames(keyframe, "keyframe")
        if key.ndim == 4:
            if key.shape[0] != 1:
                raise EditInputError(f"keyframe must be one frame, got {key.shape[0]}")
            key = key[0]
    mask_arr = validate(frames, mask_arr, key)
    return EditInputs(frames=frames, mask=mask_arr, keyframe=key, prompt=prompt, task=task, fps=fps)
