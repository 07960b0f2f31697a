"""Input validation shared by the metrics: one clear error per bad array."""

from __future__ import annotations

import numpy as np


def check_frames(frames: np.ndarray, name: str = "frames") -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim == 3 and frames.shape[-1] == 3:
        frames = frames[None]
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"{name} must be (F, H, W, 3) RGB, got shape {frames.shape}")
    if frames.dtype != np.uint8:
        raise ValueError(f"{name} must be uint8 in [0, 255], got {frames.dtype}")
    return frames


def check_mask(mask: np.ndarray, frames: np.ndarray, name: str = "mask") -> np.ndarray:
    """(F, H, W) bool matching `frames`; one (H, W) mask is used for every frame."""
    mask = np.asarray(mask)
    if mask.ndim == 4 and mask.shape[-1] == 1:
        mask = mask[..., 0]
    if mask.ndim == 2:
        mask = np.broadcast_to(mask, (frames.shape[0], *mask.shape))
    if mask.shape != frames.shape[:3]:
        raise ValueError(f"{name} of shape {mask.shape} does not match frames {frames.shape[:3]}")
    return mask.astype(bool)


def check_background(source: np.ndarray, edited: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(source, edited, keep) for the background metrics: two matching (F, H, W, 3) uint8 videos and the (F, H, W)
    bool of the pixels outside `mask`, of which there must be at least one."""
    source = check_frames(source, "source")
    edited = check_frames(edited, "edited")
    if source.shape != edited.shape:
        raise ValueError(f"edited video {edited.shape} does not match the source {source.shape}")
    keep = ~check_mask(mask, source)
    if not keep.any():
        raise ValueError("the mask covers every pixel: there is no background to compare")
    return source, edited, keep
