"""Resizing frames and masks: the one frame resizer and the cover-and-crop geometry of training samples."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class Geometry:
    """Scale (h, w) to cover (height, width), then crop [top:top+height, left:left+width]."""

    src_h: int
    src_w: int
    scaled_h: int
    scaled_w: int
    top: int
    left: int
    height: int
    width: int


def cover_geometry(src_h: int, src_w: int, height: int, width: int) -> Geometry:
    scale = max(height / src_h, width / src_w)
    sh, sw = max(height, round(src_h * scale)), max(width, round(src_w * scale))
    return Geometry(src_h, src_w, sh, sw, (sh - height) // 2, (sw - width) // 2, height, width)


def crop(frames: np.ndarray, g: Geometry) -> np.ndarray:
    """The geometry's crop of frames already at its scaled size."""
    return frames[:, g.top : g.top + g.height, g.left : g.left + g.width]


def resize_frames(frames: np.ndarray, size: tuple[int, int] | Geometry, interpolation: int | None = None) -> np.ndarray:
    """Frames (F, h, w[, C]) resized to `size` (height, width), or to a `Geometry`'s scaled size and then cropped
    to it; frame by frame (cv2 is fastest per frame). `interpolation` defaults to the area filter when shrinking
    and bicubic when growing. Frames already at the size are returned as they are (cropped for a geometry)."""
    g = size if isinstance(size, Geometry) else None
    h, w = (g.scaled_h, g.scaled_w) if g else size
    if frames.shape[1:3] == (h, w):
        return np.ascontiguousarray(crop(frames, g)) if g else frames
    if interpolation is None:
        interpolation = cv2.INTER_AREA if h * w < frames.shape[1] * frames.shape[2] else cv2.INTER_CUBIC
    out_h, out_w = (g.height, g.width) if g else (h, w)
    out = np.empty((len(frames), out_h, out_w) + frames.shape[3:], frames.dtype)
    for i, frame in enumerate(frames):
        scaled = cv2.resize(frame, (w, h), interpolation=interpolation)
        out[i] = scaled[g.top : g.top + g.height, g.left : g.left + g.width] if g else scaled.reshape(out.shape[1:])
    return out


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(F, H, W) bool -> (F, h, w) bool. A cell touched by the mask stays masked, so thin objects survive."""
    h, w = size
    if mask.shape[1:3] == (h, w):
        return mask
    out = [cv2.resize(m.astype(np.float32), (w, h), interpolation=cv2.INTER_AREA) > 0.0 for m in mask]
    return np.stack(out)
