"""Sizes and frame counts the model accepts, and the way back to the source's.

Rules (documented in the README):
- Size: weights trained on aspect-ratio buckets (their config lists them) edit at the bucket nearest the
  source's aspect ratio (`vivid.conditioning.buckets.nearest_bucket`), the sizes the fine-tune saw. Otherwise keep the
  aspect ratio, scale down (never up) so the area is at most the model's native area (480x720 for
  CogVideoX-5B), then round each side down to a multiple of 16 (at least 16). Either way the output is
  resized back to the source size.
- Frame count: the VAE takes 4k+1 frames (`ModelSpecification.padded_frame_count`). A count that is not 4k+1 is padded at the end by repeating the
  last frame (and its mask) up to the next 4k+1; the padding frames are dropped from the output.
- Paste-back: outside the mask dilated by `dilation` pixels the output is the source, bit for bit; inside
  the dilated band the generated frame is blended in with a feathered weight.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

from vivid.conditioning.buckets import nearest_bucket

SIZE_MULTIPLE = 16


def working_size(height: int, width: int, max_area: int, multiple: int = SIZE_MULTIPLE) -> tuple[int, int]:
    scale = min(1.0, math.sqrt(max_area / (height * width)))
    h = max(multiple, int(height * scale / multiple) * multiple)  # round down: the area stays within max_area
    w = max(multiple, int(width * scale / multiple) * multiple)
    return h, w


def model_size(
    height: int, width: int, max_area: int, buckets: Sequence[Sequence[int]] | None = None
) -> tuple[int, int]:
    """The working size for a height x width source: the bucket nearest its aspect when the weights were trained
    on `buckets`, else `working_size` (the source's aspect within `max_area`)."""
    if buckets:
        return nearest_bucket(height, width, buckets)
    return working_size(height, width, max_area)


def pad_frames(array: np.ndarray, target: int) -> np.ndarray:
    """Repeat the last frame of `array` (frames first) until it has `target` frames."""
    extra = target - array.shape[0]
    if extra <= 0:
        return array
    return np.concatenate([array, np.repeat(array[-1:], extra, axis=0)], axis=0)


def default_paste_dilation(source_hw: tuple[int, int], work_hw: tuple[int, int]) -> int:
    """One latent cell (8 working pixels) at the source's scale: the width of the model's blurry edge."""
    return max(2, int(math.ceil(8 * max(source_hw[0] / work_hw[0], source_hw[1] / work_hw[1]))))


MAX_BLUR_SIGMA = 3.0  # wider feathers are blurred on a grid coarser by an integer factor: cost O(pixels)


def _blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur (OpenCV's) of a float32 image. Above `MAX_BLUR_SIGMA` the image is shrunk by the smallest
    integer factor that brings sigma within it (area filter), blurred there and enlarged back (bilinear): a kernel
    of at most 8 x MAX_BLUR_SIGMA + 1 taps per pixel of the shrunk image, whatever the feather's width."""
    factor = max(1, math.ceil(sigma / MAX_BLUR_SIGMA))
    if factor == 1:
        return cv2.GaussianBlur(image, (0, 0), sigma)
    h, w = image.shape
    small = cv2.resize(image, (max(1, round(w / factor)), max(1, round(h / factor))), interpolation=cv2.INTER_AREA)
    return cv2.resize(cv2.GaussianBlur(small, (0, 0), sigma / factor), (w, h), interpolation=cv2.INTER_LINEAR)


def _frame_weights(mask: np.ndarray, dilation: int) -> np.ndarray:
    """Blend weights (H, W) float32 of one mask frame. Both dilations are thresholds of one Euclidean distance
    transform of the mask (a disk kernel's cost grows with its radius), computed in the mask's bounding box grown
    by the feather's reach (the weights are 0 beyond it)."""
    inside = mask.astype(bool)
    weights = np.zeros(inside.shape, np.float32)
    if dilation == 0 or not inside.any():
        weights[inside] = 1.0
        return weights
    sigma = max(dilation / 6.0, 0.5)
    reach = dilation + math.ceil(4 * sigma) + 2  # the region, and the blur kernel past it (no border effects)
    rows, cols = np.flatnonzero(inside.any(axis=1)), np.flatnonzero(inside.any(axis=0))
    top, bottom = max(0, rows[0] - reach), min(inside.shape[0], rows[-1] + reach + 1)
    left, right = max(0, cols[0] - reach), min(inside.shape[1], cols[-1] + reach + 1)
    box = inside[top:bottom, left:right]
    distance = cv2.distanceTransform((~box).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    soft = _blur((distance <= max(1, dilation // 2)).astype(np.float32), sigma)
    np.clip(soft, 0.0, 1.0, out=soft)  # float rounding of the blur
    soft[box] = 1.0
    soft[distance > dilation] = 0.0
    weights[top:bottom, left:right] = soft
    return weights


def _check_dilation(dilation: int) -> None:
    if dilation < 0:
        raise ValueError(f"paste-back dilation must be >= 0 pixels, got {dilation}")


def paste_weights(mask: np.ndarray, dilation: int) -> np.ndarray:
    """Blend weights (F, H, W) float32: 1 inside the mask, 0 farther than `dilation` px from it, feathered between
    (the mask dilated by half of `dilation`, blurred with sigma dilation / 6); O(pixels) in time."""
    _check_dilation(dilation)
    weights = np.empty(mask.shape, np.float32)
    for i, m in enumerate(mask):
        weights[i] = _frame_weights(m, dilation)
    return weights


def paste_back(source: np.ndarray, generated: np.ndarray, mask: np.ndarray, dilation: int) -> np.ndarray:
    """Source outside the dilated mask (exactly), generated inside, feathered in the band between; frame by frame,
    so memory stays that of one frame's weights."""
    _check_dilation(dilation)
    out = source.copy()
    for i, m in enumerate(mask):
        w = _frame_weights(m, dilation)
        band = w > 0
        if not band.any():
            continue
        wb = w[band][:, None]
        blended = source[i][band].astype(np.float32) * (1 - wb) + generated[i][band].astype(np.float32) * wb
        out[i][band] = np.round(blended).astype(np.uint8)
    return out
