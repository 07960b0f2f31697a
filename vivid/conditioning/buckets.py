"""Aspect-ratio buckets: the few frame sizes VIVID is trained at, and the rule that maps a source to one.

Training cover-crops every sample to the bucket nearest its source's aspect ratio (each batch one bucket), and
inference edits at the bucket nearest the source's aspect (then resizes back to the source size), so a
fine-tune only ever sees grids it was trained on.

- A bucket is (height, width), both positive multiples of 16 (the VAE's 8x and the patch size 2).
- Nearest: the smallest |log(aspect_source / aspect_bucket)|, aspect = width / height; ties go to the
  earlier bucket in the list. The distance is symmetric, so a portrait source never lands on a landscape
  bucket when the mirrored bucket is in the list.
- `default_buckets(480, 720)` (CogVideoX-5B's native size) gives one bucket per common aspect in
  `DEFAULT_ASPECTS`: for each, the multiple-of-16 size with area in [90%, 100%] of the base area whose aspect
  is closest (ties: the larger area). Never above the base area, so no bucket costs more memory or time than
  the base size, and no bucket exceeds the model's native area.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

BUCKET_MULTIPLE = 16
# width / height: portrait 9:16, 2:3, 3:4; square; landscape 4:3, 3:2, 16:9
DEFAULT_ASPECTS: tuple[float, ...] = (9 / 16, 2 / 3, 3 / 4, 1.0, 4 / 3, 3 / 2, 16 / 9)
MIN_AREA_FRACTION = 0.9

Bucket = tuple[int, int]


def check_buckets(buckets: Iterable[Sequence[int]], what: str = "buckets") -> list[Bucket]:
    """`buckets` as a list of (height, width) int tuples; ValueError naming the first bad entry or a duplicate."""
    out: list[Bucket] = []
    for entry in buckets:
        if isinstance(entry, (str, bytes)) or len(entry) != 2:
            raise ValueError(f"{what}: each bucket must be [height, width], got {entry!r}")
        h, w = entry
        if any(isinstance(v, bool) or not isinstance(v, int) or v <= 0 or v % BUCKET_MULTIPLE for v in (h, w)):
            raise ValueError(f"{what}: bucket {list(entry)} must be two positive multiples of {BUCKET_MULTIPLE}")
        if (h, w) in out:
            raise ValueError(f"{what}: bucket {h}x{w} is listed twice")
        out.append((h, w))
    return out


def aspect_distance(height: int, width: int, bucket: Sequence[int]) -> float:
    """|log(source aspect / bucket aspect)|, computed on integer products so that mirrored buckets tie exactly."""
    a, b = width * bucket[0], height * bucket[1]
    return math.log(max(a, b) / min(a, b))


def nearest_bucket(height: int, width: int, buckets: Sequence[Sequence[int]]) -> Bucket:
    """The bucket whose aspect ratio is nearest the source's (height x width); ties: the earlier bucket."""
    if height <= 0 or width <= 0:
        raise ValueError(f"source size must be positive, got {height}x{width}")
    if not buckets:
        raise ValueError("no buckets to choose from")
    best = min(range(len(buckets)), key=lambda i: (aspect_distance(height, width, buckets[i]), i))
    return int(buckets[best][0]), int(buckets[best][1])


def bucket_index(height: int, width: int, buckets: Sequence[Sequence[int]]) -> int:
    """The index in `buckets` of `nearest_bucket(height, width, buckets)`."""
    return [tuple(b) for b in buckets].index(nearest_bucket(height, width, buckets))


def bucket_for_aspect(aspect: float, area: int, min_area_fraction: float = MIN_AREA_FRACTION) -> Bucket:
    """The multiple-of-16 (height, width) with area in [min_area_fraction * area, area] whose aspect
    (width / height) is closest to `aspect`; ties: the larger area."""
    m = BUCKET_MULTIPLE
    best: tuple[float, int, Bucket] | None = None
    for h in range(m, area // m + 1, m):
        w_lo = max(m, math.ceil(min_area_fraction * area / h / m) * m)
        for w in range(w_lo, area // h // m * m + 1, m):
            key = (abs(math.log(w / h / aspect)), -w * h, (h, w))
            if best is None or key[:2] < best[:2]:
                best = key
    if best is None:
        raise ValueError(f"no multiple-of-{m} size has an area in [{min_area_fraction:.0%}, 100%] of {area}")
    return best[2]


def default_buckets(height: int, width: int, aspects: Sequence[float] = DEFAULT_ASPECTS) -> list[Bucket]:
    """One bucket per aspect in `aspects`, near the area of height x width (see the module docstring), duplicates
    dropped; the base size itself is a bucket when its aspect is in `aspects`."""
    out: list[Bucket] = []
    for aspect in aspects:
        bucket = bucket_for_aspect(aspect, height * width)
        if bucket not in out:
            out.append(bucket)
    return out


def bucket_name(bucket: Sequence[int]) -> str:
    """'HxW', the name a bucket has in loader state and logs."""
    return f"{int(bucket[0])}x{int(bucket[1])}"
