"""Mask shapes: a mask sequence as it is, its convex hull or its bounding box, grown by a radius.

VIVID trains on these shapes (its mask augmentations: `data_loaders.augment`), so a mask made for editing can be
given the shape the model saw (`vivid mask --shape hull --grow 8`). Work is done frame by frame on the region of
interest (the masks' bounding box plus the radius), not on whole frames.
"""

from __future__ import annotations

import cv2
import numpy as np

SHAPES = ("mask", "hull", "box")


def _roi(mask: np.ndarray, margin: int) -> tuple[slice, slice] | None:
    """The union bounding box over all frames, grown by `margin` and clipped; None if the mask is empty."""
    rows = np.flatnonzero(mask.any(axis=(0, 2)))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=(0, 1)))
    h, w = mask.shape[1:]
    return (
        slice(max(0, rows[0] - margin), min(h, rows[-1] + 1 + margin)),
        slice(max(0, cols[0] - margin), min(w, cols[-1] + 1 + margin)),
    )


def dilate(mask: np.ndarray, radius: int, rect: bool = False) -> np.ndarray:
    """Every frame dilated by a disc (or, with `rect`, a square, which keeps boxes boxes) of `radius` pixels.

    The disc is the set of pixels within distance `radius` of the mask by a 5x5 chamfer distance transform
    (within 2% of Euclidean; its cost does not grow with the radius, unlike a large elliptic structuring element)."""
    if radius <= 0:
        return mask.copy()
    out = np.zeros_like(mask)
    roi = _roi(mask, radius)
    if roi is None:
        return out
    ys, xs = roi
    kernel = np.ones((2 * radius + 1, 2 * radius + 1), np.uint8) if rect else None
    for i, frame in enumerate(mask[:, ys, xs]):
        if not frame.any():
            continue
        if rect:
            out[i, ys, xs] = cv2.dilate(frame.view(np.uint8), kernel).view(bool)
        else:
            dist = cv2.distanceTransform((~frame).view(np.uint8), cv2.DIST_L2, 5)
            out[i, ys, xs] = dist <= radius
    return out


def convex_hull(mask: np.ndarray) -> np.ndarray:
    """Every frame replaced by the filled convex hull of its pixels (which contains them)."""
    out = np.zeros_like(mask)
    roi = _roi(mask, 0)
    if roi is None:
        return out
    ys, xs = roi
    for i, frame in enumerate(mask[:, ys, xs].view(np.uint8)):
        points = cv2.findNonZero(frame)
        if points is None:
            continue
        hull = cv2.convexHull(points)
        filled = np.zeros_like(frame)
        cv2.fillConvexPoly(filled, hull, 1)
        out[i, ys, xs] = filled.view(bool) | frame.view(bool)
    return out


def bounding_box(mask: np.ndarray) -> np.ndarray:
    """Every frame replaced by its bounding rectangle."""
    out = np.zeros_like(mask)
    for i, frame in enumerate(mask):
        rows = np.flatnonzero(frame.any(axis=1))
        if rows.size:
            cols = np.flatnonzero(frame.any(axis=0))
            out[i, rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1] = True
    return out


def shape_mask(mask: np.ndarray, shape: str = "mask", grow: int = 0) -> np.ndarray:
    """bool (F, H, W) -> the `shape` ("mask", "hull", "box") of every frame, dilated by `grow` pixels (a square for
    boxes, which keeps them boxes; a disc otherwise)."""
    if shape not in SHAPES:
        raise ValueError(f"unknown mask shape {shape!r} (known: {', '.join(SHAPES)})")
    if grow < 0:
        raise ValueError(f"grow must be >= 0 pixels, got {grow}")
    mask = np.asarray(mask, dtype=bool)
    if shape == "hull":
        mask = convex_hull(mask)
    elif shape == "box":
        mask = bounding_box(mask)
    return dilate(mask, grow, rect=shape == "box") if grow else mask
