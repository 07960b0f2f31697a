"""Mask augmentation, VIVID's six types: original, expand, hull, box, hull+expand, box+expand (the shapes
themselves are the library's, `vivid.segmentation.shaping`, which `vivid mask --shape/--grow` uses too).

Applied frame by frame with one set of parameters per sample (one dilation radius for every frame), so the
sequence stays consistent. Work is done on the region of interest (the masks' bounding box plus the radius), not
on whole frames. A type whose result leaves the allowed area range is dropped and another is tried.
"""

from __future__ import annotations

import numpy as np

from vivid.segmentation.shaping import bounding_box, convex_hull, dilate

from .config import AUGMENT_TYPES
from .errors import BadSample


def apply_augmentation(mask: np.ndarray, kind: str, radius: int) -> np.ndarray:
    """One augmentation type on a bool mask sequence (F, H, W)."""
    if kind == "original":
        return mask.copy()
    if kind == "expand":
        return dilate(mask, radius)
    if kind == "hull":
        return convex_hull(mask)
    if kind == "box":
        return bounding_box(mask)
    if kind == "hull_expand":
        return dilate(convex_hull(mask), radius)
    if kind == "box_expand":
        return dilate(bounding_box(mask), radius, rect=True)
    raise ValueError(f"unknown mask augmentation {kind!r} (known: {', '.join(AUGMENT_TYPES)})")


def area_fraction(mask: np.ndarray) -> float:
    """Mean over frames of the masked fraction of the frame."""
    return float(mask.mean()) if mask.size else 0.0


def augment_mask(
    mask: np.ndarray,
    weights: dict[str, float],
    area_range: tuple[float, float],
    dilation_range: tuple[float, float],
    rng: np.random.Generator,
) -> tuple[np.ndarray, str]:
    """Draw a type by `weights` and one radius for the sample; a result outside `area_range` falls back to the
    other types (drawn by weight, without replacement). BadSample("empty_mask" | "mask_area") if nothing fits."""
    if not mask.any():
        raise BadSample("empty_mask", "mask is empty in every frame of the sampled clip")
    names = [n for n in AUGMENT_TYPES if weights.get(n, 0) > 0]
    probs = np.array([weights[n] for n in names], float)
    order = list(rng.choice(names, size=len(names), replace=False, p=probs / probs.sum()))
    short = min(mask.shape[1:])
    radius = max(1, round(float(rng.uniform(*dilation_range)) * short)) if dilation_range[1] > 0 else 0
    low, high = area_range
    tried = []
    for name in order:
        out = apply_augmentation(mask, str(name), radius)
        frac = area_fraction(out)
        if low <= frac <= high:
            return out, str(name)
        tried.append(f"{name}={frac:.4f}")
    raise BadSample("mask_area", f"mask area fraction outside [{low}, {high}] for every augmentation ({', '.join(tried)})")
