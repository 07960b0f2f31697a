"""Filters stage: which clips and entity masks are kept, and why the others are dropped (a reason per drop).

Every threshold is in `FiltersConfig`. The checks are on the masks and frames alone (no model), so they are cheap
and rerun on every build: a changed threshold applies to segmentations already on disk.
"""

from __future__ import annotations

import numpy as np

from .config import FiltersConfig

# Drop reasons, in the order the summary prints them.
DROP_REASONS: dict[str, str] = {
    "shot_too_short": "shot shorter than one clip",
    "static_clip": "near-static clip (mean frame difference below filters.min_motion)",
    "no_entities": "the segmenter found no entity in the clip",
    "model_error": "a model failed on the clip",
    "keyframe_empty": "entity mask empty in every frame",
    "keyframe_area": "mask area on the keyframe outside filters.keyframe_area",
    "clip_area": "mean mask area over the clip outside filters.clip_area",
    "empty_frames": "mask empty in more than filters.max_empty_fraction of the frames",
    "area_change": "frame-to-frame area change above filters.max_area_change (tracking failure)",
    "border": "entity touches the frame border in every frame",
    "no_caption": "the captioner gave no usable caption",
    "no_background": "no place on the clip for another entity's mask (deletion record)",
}


def area_fractions(mask: np.ndarray) -> np.ndarray:
    """(F,) fraction of each frame's pixels inside the mask (F, H, W)."""
    return mask.reshape(len(mask), -1).mean(axis=1, dtype=np.float64)


def keyframe_index(mask: np.ndarray) -> int:
    """The entity's keyframe: its frame of largest mask area (the earliest of equals)."""
    return int(np.argmax(area_fractions(mask)))


def max_area_change(areas: np.ndarray) -> float:
    """Largest relative change of the area between consecutive frames, |a_t - a_t-1| / max(a_t, a_t-1); a mask
    that vanishes or appears counts 1 (0 for a one-frame clip or where both frames are empty)."""
    if len(areas) < 2:
        return 0.0
    a, b = areas[:-1], areas[1:]
    top = np.maximum(a, b)
    change = np.divide(np.abs(b - a), top, out=np.zeros_like(top), where=top > 0)
    return float(change.max())


def touches_border_every_frame(mask: np.ndarray, margin: int) -> bool:
    """Whether every non-empty frame of the mask reaches within `margin` pixels of the frame's edge (a mask
    empty in every frame does not touch)."""
    m = max(1, margin)
    edge = np.zeros(mask.shape[1:], bool)
    edge[:m], edge[-m:], edge[:, :m], edge[:, -m:] = True, True, True, True
    present = mask.reshape(len(mask), -1).any(axis=1)
    if not present.any():
        return False
    touching = (mask & edge).reshape(len(mask), -1).any(axis=1)
    return bool(touching[present].all())


def entity_drop_reason(mask: np.ndarray, config: FiltersConfig) -> str | None:
    """The first filter the entity mask (F, H, W) fails, or None when it is kept."""
    areas = area_fractions(mask)
    if not (areas > 0).any():
        return "keyframe_empty"
    lo, hi = config.keyframe_area
    if not lo <= areas.max() <= hi:
        return "keyframe_area"
    lo, hi = config.clip_area
    if not lo <= areas.mean() <= hi:
        return "clip_area"
    if (areas == 0).mean() > config.max_empty_fraction:
        return "empty_frames"
    if config.max_area_change < 1 and max_area_change(areas) > config.max_area_change:
        return "area_change"
    if config.drop_border_entities and touches_border_every_frame(mask, config.border_margin):
        return "border"
    return None


def mean_motion(frames: np.ndarray) -> float:
    """Mean absolute difference of consecutive frames (uint8 (F, H, W, 3)), in grey levels 0-255."""
    if len(frames) < 2:
        return 0.0
    return float(np.mean([np.abs(frames[t].astype(np.int16) - frames[t - 1]).mean() for t in range(1, len(frames))]))


def is_static(motion: float, config: FiltersConfig) -> bool:
    """Whether a clip of mean frame difference `motion` (`mean_motion`) is dropped as near-static."""
    return config.min_motion > 0 and motion < config.min_motion
