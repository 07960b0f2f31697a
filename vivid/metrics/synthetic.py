"""Text alignment for vivid's synthetic world, without a learned model.

The synthetic world paints flat, saturated shapes (`vivid.synthetic_world.COLORS`, `SHAPES`) on muted
textured backgrounds, so what an edit drew can be read off the pixels:
- colour: each pixel of the edit region is given the nearest palette colour if it is saturated and close to
  it; the dominant colour is the most frequent one, if it covers enough of the region;
- shape: the largest connected blob of the dominant colour in a frame is compared with a circle, a square and
  triangles (four orientations) drawn in its bounding box; the best intersection-over-union names it. A blob
  too small, or cut by the frame border, cannot be told.
For deletion, `color_remnant` measures how much of the removed shape's colour is still in the region.
"""

from __future__ import annotations

from collections import Counter

import cv2
import numpy as np

from vivid.metrics._checks import check_frames, check_mask
from vivid.synthetic_world import COLORS, SHAPES

COLOR_NAMES: tuple[str, ...] = tuple(COLORS)
PALETTE = np.array([COLORS[c] for c in COLOR_NAMES], np.float32)
MAX_COLOR_DISTANCE = 90.0  # RGB distance to the palette colour; palette colours are >= 140 apart
MIN_SATURATION = 80  # max - min channel; the palette's is >= 180, the muted backgrounds' far less
MIN_COLOR_FRACTION = 0.1  # the dominant colour must cover this much of the region
MIN_SHAPE_AREA = 24  # pixels of a blob whose shape can be told


def classify_colors(frames: np.ndarray) -> np.ndarray:
    """Per pixel (..., H, W): the index into COLOR_NAMES of its palette colour, or -1 (not a palette colour)."""
    x = np.asarray(frames).astype(np.float32)
    dist = np.linalg.norm(x[..., None, :] - PALETTE, axis=-1)  # (..., H, W, n_colors)
    nearest = dist.argmin(-1)
    close = np.take_along_axis(dist, nearest[..., None], -1)[..., 0] <= MAX_COLOR_DISTANCE
    saturated = (x.max(-1) - x.min(-1)) >= MIN_SATURATION
    return np.where(close & saturated, nearest, -1)


def _color_index(color: str) -> int:
    if color not in COLORS:
        raise ValueError(f"unknown colour {color!r}; the synthetic world has {', '.join(COLOR_NAMES)}")
    return COLOR_NAMES.index(color)


def dominant_color(frames: np.ndarray, mask: np.ndarray, min_fraction: float = MIN_COLOR_FRACTION) -> str | None:
    """The palette colour covering most of the edit region over all frames, or None if none covers
    at least `min_fraction` of it."""
    frames = check_frames(frames)
    mask = check_mask(mask, frames)
    if not mask.any():
        raise ValueError("the mask is empty in every frame: no edit region")
    labels = classify_colors(frames)[mask]
    counts = np.bincount(labels[labels >= 0], minlength=len(COLOR_NAMES))
    best = int(counts.argmax())
    if counts[best] < min_fraction * labels.size:
        return None
    return COLOR_NAMES[best]


def _templates(h: int, w: int) -> dict[str, list[np.ndarray]]:
    """Filled shapes drawn in an h x w box: the synthetic world's shapes, triangles in four orientations."""
    def canvas():
        return np.zeros((h, w), np.uint8)

    yy, xx = np.mgrid[0:h, 0:w]
    circle = ((((yy + 0.5) / h - 0.5) ** 2 + ((xx + 0.5) / w - 0.5) ** 2) <= 0.25).astype(np.uint8)
    square = np.ones((h, w), np.uint8)
    triangles = []
    for pts in (
        [((w - 1) / 2, 0), (0, h - 1), (w - 1, h - 1)],  # apex up
        [(0, 0), (w - 1, 0), ((w - 1) / 2, h - 1)],  # apex down
        [(0, (h - 1) / 2), (w - 1, 0), (w - 1, h - 1)],  # apex left
        [(0, 0), (0, h - 1), (w - 1, (h - 1) / 2)],  # apex right
    ):
        t = canvas()
        cv2.fillPoly(t, [np.round(np.array(pts) * 16).astype(np.int32)], 1, shift=4)
        triangles.append(t)
    templates = {"circle": [circle], "square": [square], "triangle": triangles}
    if set(templates) != set(SHAPES):
        raise AssertionError(f"shape templates {sorted(templates)} do not cover the synthetic world's {SHAPES}")
    return templates


def shape_of(blob: np.ndarray, min_area: int = MIN_SHAPE_AREA) -> str | None:
    """Name the shape of the largest connected component of a (H, W) bool image, or None if it cannot be told
    (fewer than `min_area` pixels, or touching the image border, where it may be cut)."""
    blob = np.asarray(blob, bool)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(blob.astype(np.uint8), connectivity=8)
    if n <= 1:
        return None
    k = 1 + int(stats[1:, cv2.CC_STAT_AREA].argmax())
    x, y, w, h, area = stats[k]
    if area < min_area:
        return None
    height, width = blob.shape
    if x == 0 or y == 0 or x + w == width or y + h == height:
        return None
    part = labels[y : y + h, x : x + w] == k
    best, best_iou = None, -1.0
    for name, templates in _templates(h, w).items():
        for t in templates:
            t = t.astype(bool)
            iou = (part & t).sum() / max((part | t).sum(), 1)
            if iou > best_iou:
                best, best_iou = name, iou
    return best


def synthetic_alignment(
    frames: np.ndarray, mask: np.ndarray, color: str, shape: str | None = None,
    min_color_fraction: float = MIN_COLOR_FRACTION,
) -> dict:
    """Does the edit region show a `color` `shape`? (`min_color_fraction`: see `dominant_color`; lower it where
    the region is much larger than a shape, e.g. a whole text-to-video frame.)

    Returns dict(color = dominant colour or None, color_match, shape = the shape told by majority over frames
    or None, shape_match = None where the shape cannot be told, match = colour matches and the shape does not
    contradict the caption).
    """
    frames = check_frames(frames)
    mask = check_mask(mask, frames)
    target = _color_index(color)
    if shape is not None and shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}; the synthetic world has {', '.join(SHAPES)}")
    found = dominant_color(frames, mask, min_color_fraction)
    color_match = found == color
    told = None
    if found is not None:
        labels = classify_colors(frames)
        votes = Counter()
        for lab, m in zip(labels, mask):
            if m.any():
                s = shape_of((lab == COLOR_NAMES.index(found)) & m)
                if s is not None:
                    votes[s] += 1
        if votes:
            told = votes.most_common(1)[0][0]
    shape_match = None if (shape is None or told is None) else told == shape
    return dict(
        color=found,
        color_match=bool(color_match),
        shape=told,
        shape_match=shape_match,
        match=bool(color_match and shape_match is not False),
        target=COLOR_NAMES[target],
    )


def color_remnant(frames: np.ndarray, mask: np.ndarray, color: str) -> float:
    """Fraction of the edit region's pixels (all frames) that still show the palette colour `color`."""
    frames = check_frames(frames)
    mask = check_mask(mask, frames)
    if not mask.any():
        raise ValueError("the mask is empty in every frame: no edit region")
    labels = classify_colors(frames)[mask]
    return float((labels == _color_index(color)).mean())
