"""The data loader's side of `vivid.io`: which frames a sample takes (`sample_indices`), and I/O errors turned into
skipped samples (`BadSample`, by reason) instead of `MediaError`s.

Frames and masks are read with `vivid.io` (`VideoSource.read_resized`, `MaskSource.read_resized`): only the
frames needed are decoded, scaled to cover H x W (keeping the aspect ratio) and centre-cropped.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np

from vivid.io.files import MediaError
from vivid.io.images import image_size
from vivid.io.images import read_image as _read_image
from vivid.io.masks import MaskSource
from vivid.io.video import video_size

from .errors import BadSample


@contextlib.contextmanager
def bad_samples(sample_id: str | None = None) -> Iterator[None]:
    """Turn a `MediaError` raised in the block into a `BadSample` of the same reason, naming the file."""
    try:
        yield
    except MediaError as err:
        raise BadSample(err.reason, err.detail, sample_id, err.path) from None


def sample_indices(
    total: int,
    src_fps: float,
    target_fps: float,
    frames: int,
    rng: np.random.Generator | None,
    start: int = 0,
    end: int | None = None,
) -> np.ndarray:
    """`frames` source frame indices at `target_fps`: stride src_fps / target_fps (at least 1, fractional strides
    are rounded per frame); a clip too short for that stride is sampled with the largest stride that fits; the
    start is uniform over the valid range (or the clip start when `rng` is None)."""
    end = total if end is None else min(end, total)
    n = end - start
    if n <= 0:
        raise BadSample("no_frames", f"clip range [{start}, {end}) holds no frames (the media has {total})")
    if n < frames:
        raise BadSample("too_short", f"{n} frames in the clip, {frames} needed")
    if frames == 1:
        offset = int(rng.integers(0, n)) if rng is not None else 0
        return np.array([start + offset])
    step = max(1.0, (src_fps / target_fps) if src_fps > 0 else 1.0)
    step = min(step, (n - 1) / (frames - 1))
    span = step * (frames - 1)
    offset = float(rng.uniform(0, n - 1 - span)) if rng is not None and n - 1 - span > 0 else 0.0
    idx = np.floor(offset + step * np.arange(frames) + 0.5).astype(np.int64)
    return np.clip(idx, 0, n - 1) + start


def media_size(path: str, kind: str) -> tuple[int, int]:
    """(height, width) of a video or image file (kind "video" | "image") as the loader decodes it, from the
    header where the format allows (no frames decoded); BadSample if the file cannot be read."""
    with bad_samples():
        return image_size(path) if kind == "image" else video_size(path)


def read_image(path: str) -> np.ndarray:
    """uint8 (H, W, 3) RGB; BadSample if the file cannot be read."""
    with bad_samples():
        return _read_image(path)


def open_mask(path: str) -> MaskSource:
    """The mask file of a sample; BadSample if it cannot be read."""
    with bad_samples():
        return MaskSource(path)
