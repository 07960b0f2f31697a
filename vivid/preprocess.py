"""Sizes and frame counts the model accepts, and the way back to the source's.

Rules (documented in the README):
- Size: weights trained on aspect-ratio buckets (their config lists them) edit at the bucket nearest the
  source's aspect ratio (`vivid.buckets.nearest_bucket`), the sizes the fine-tune saw. Otherwise keep the
  aspect ratio, scale down (never up) so the area is at most the model's native area (480x720 for
  CogVideoX-5B), then round each side down to a multiple of 16 (at least 16). Either way the output is
  resized back to the source size.
- Frame count: CogVideoX takes 4k+1 frames. A count that is not 4k+1 is padded at the end by repeating the
  last frame (and its mask) up to the next 4k+1; the padding frames are dropped from the output.
- Paste-back: outside the mask dilated by `dilation` pixels the output is the source, bit for bit; inside
  the dilated band the generated frame is blended in with a feathered weight.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

from vivid.buckets import nearest_bucket
from vivid.constants import VAE_TEMPORAL

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


def padded_frame_count(num_frames: int) -> int:
    """The smallest 4k+1 >= num_frames."""
    if num_frames < 1:
        raise ValueError(f"frame count must be >= 1, got {num_frames}")
    return VAE_TEMPORAL * math.ceil((num_frames - 1) / VAE_TEMPORAL) + 1


def pad_frames(array: np.ndarray, target: int) -> np.ndarray:
    """Repeat the last frame of `array` (frames first) until it has `target` frames."""
    extra = target - array.shape[0]
    if extra <= 0:
        return array
    return np.concatenate([array, np.repeat(array[-1:], extra, axis=0)], axis=0)


def resize_frames(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(F, H, W, 3) uint8 -> (F, h, w, 3); area filter when shrinking, bicubic when growing."""
    h, w = size
    if frames.shape[1:3] == (h, w):
        return frames
    interp = cv2.INTER_AREA if h * w < frames.shape[1] * frames.shape[2] else cv2.INTER_CUBIC
    return np.stack([cv2.resize(f, (w, h), interpolation=interp) for f in frames])


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(F, H, W) bool -> (F, h, w) bool. A cell touched by the mask stays masked, so thin objects survive."""
    h, w = size
    if mask.shape[1:3] == (h, w):
        return mask
    out = [cv2.resize(m.astype(np.float32), (w, h), interpolation=cv2.INTER_AREA) > 0.0 for m in mask]
    return np.stack(out)


def default_paste_dilation(source_hw: tuple[int, int], work_hw: tuple[int, int]) -> int:
    """One latent cell (8 working pixels) at the source's scale: the width of the model's blurry edge."""
    return max(2, int(math.ceil(8 * max(source_hw[0] / work_hw[0], source_hw[1] / work_hw[1]))))


def _disk(radius: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


def paste_weights(mask: np.ndarray, dilation: int) -> np.ndarray:
    """Blend weights (F, H, W) float32: 1 inside the mask, 0 outside it dilated by `dilation` px, feathered between."""
    weights = np.empty(mask.shape, np.float32)
    outer, inner = _disk(dilation), _disk(max(1, dilation // 2))
    sigma = max(dilation / 6.0, 0.5)
    for i, m in enumerate(mask.astype(np.uint8)):
        region = cv2.dilate(m, outer)
        soft = cv2.GaussianBlur(cv2.dilate(m, inner).astype(np.float32), (0, 0), sigma)
        weights[i] = np.maximum(soft, m) * region
    return weights


def paste_back(source: np.ndarray, generated: np.ndarray, mask: np.ndarray, dilation: int) -> np.ndarray:
    """Source outside the dilated mask (exactly), generated inside, feathered in the band between."""
    w = paste_weights(mask, dilation)[..., None]
    blended = np.round(source.astype(np.float32) * (1 - w) + generated.astype(np.float32) * w).astype(np.uint8)
    return np.where(w > 0, blended, source)
