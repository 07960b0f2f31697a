"""Mask augmentation: the six types and their properties, one radius per sample, the area-range fallback."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from data_loaders.augment import apply_augmentation, augment_mask, bounding_box, convex_hull, dilate
from data_loaders.config import AUGMENT_TYPES
from data_loaders.errors import BadSample


def blob_mask(frames: int = 5, h: int = 64, w: int = 96) -> np.ndarray:
    """A non-convex, moving L-shape plus a separate dot: hull and box differ from the mask."""
    m = np.zeros((frames, h, w), bool)
    for t in range(frames):
        x = 10 + 4 * t
        m[t, 10:40, x : x + 8] = True
        m[t, 32:40, x : x + 30] = True
        m[t, 15, x + 25] = True
    return m


def is_convex(frame: np.ndarray) -> bool:
    """Filling the hull of the frame adds (almost) nothing: at most a one-pixel rasterisation fringe."""
    pts = cv2.findNonZero(frame.astype(np.uint8))
    hull = np.zeros(frame.shape, np.uint8)
    cv2.fillConvexPoly(hull, cv2.convexHull(pts), 1)
    added = hull.astype(bool) & ~frame
    perimeter = cv2.arcLength(cv2.convexHull(pts), True)
    return added.sum() <= perimeter


def test_hull_contains_mask_and_is_convex():
    m = blob_mask()
    hull = convex_hull(m)
    assert not (m & ~hull).any()
    assert hull.sum() > m.sum()
    for frame in hull:
        assert is_convex(frame)
    assert not is_convex(m[0])  # the check can fail: the L-shape is not convex


def test_box_is_the_bounding_rectangle():
    m = blob_mask()
    box = bounding_box(m)
    for t in range(len(m)):
        ys, xs = np.nonzero(m[t])
        expected = np.zeros_like(m[t])
        expected[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1] = True
        assert np.array_equal(box[t], expected)


@pytest.mark.parametrize("radius", [1, 4])
def test_expand_is_a_superset_by_the_radius(radius):
    m = blob_mask()
    ex = dilate(m, radius)
    assert not (m & ~ex).any()
    # every added pixel is within `radius` of the mask, and the pixel `radius` left of the L is added
    dist = np.stack([cv2.distanceTransform((~f).astype(np.uint8), cv2.DIST_L2, 5) for f in m])
    assert dist[ex & ~m].max() <= radius + 0.5
    assert ex[0, 20, 10 - radius] and not ex[0, 20, 10 - radius - 1]


def test_combined_types():
    m = blob_mask()
    he = apply_augmentation(m, "hull_expand", 3)
    be = apply_augmentation(m, "box_expand", 3)
    assert not (convex_hull(m) & ~he).any() and all(is_convex(f) for f in he)
    box = bounding_box(m)
    assert not (box & ~be).any()
    assert np.array_equal(bounding_box(be), be)  # still a rectangle
    for t in range(len(m)):  # grown by exactly 3 on each side
        ys, xs = np.nonzero(box[t])
        ys2, xs2 = np.nonzero(be[t])
        assert (ys2.min(), xs2.min(), ys2.max(), xs2.max()) == (ys.min() - 3, xs.min() - 3, ys.max() + 3, xs.max() + 3)
    assert np.array_equal(apply_augmentation(m, "original", 5), m)
    with pytest.raises(ValueError, match="unknown mask augmentation"):
        apply_augmentation(m, "blur", 1)


def test_empty_frames_stay_empty():
    m = blob_mask()
    m[2] = False
    for kind in AUGMENT_TYPES:
        assert not apply_augmentation(m, kind, 3)[2].any()


def test_one_radius_per_sample_for_every_frame():
    m = np.zeros((4, 64, 96), bool)
    m[:, 30, 40] = True  # one pixel per frame: the expanded area tells the radius
    rng = np.random.default_rng(3)
    out, kind = augment_mask(m, {"expand": 1.0}, (0.0, 1.0), (0.02, 0.2), rng)
    assert kind == "expand"
    areas = out.reshape(4, -1).sum(1)
    assert len(set(areas)) == 1 and areas[0] > 1


def test_weights_pick_the_types():
    m = blob_mask()
    rng = np.random.default_rng(0)
    kinds = [augment_mask(m, {"hull": 3.0, "box": 1.0}, (0.0, 1.0), (0.01, 0.05), rng)[1] for _ in range(400)]
    assert set(kinds) == {"hull", "box"}
    assert 0.68 < kinds.count("hull") / len(kinds) < 0.82


def test_area_range_falls_back_then_fails():
    m = blob_mask()
    frac_orig = m.mean()
    frac_box = bounding_box(m).mean()
    # only "original" fits below the box's area: whatever type is drawn first, the result is the original
    rng = np.random.default_rng(1)
    for _ in range(20):
        out, kind = augment_mask(m, {"original": 1.0, "box": 5.0}, (0.0, (frac_orig + frac_box) / 2), (0.01, 0.02), rng)
        assert kind == "original" and np.array_equal(out, m)
    with pytest.raises(BadSample) as err:
        augment_mask(m, {"original": 1.0, "box": 1.0}, (0.5, 1.0), (0.01, 0.02), rng)
    assert err.value.reason == "mask_area"
    with pytest.raises(BadSample) as err:
        augment_mask(np.zeros_like(m), {"original": 1.0}, (0.0, 1.0), (0.01, 0.02), rng)
    assert err.value.reason == "empty_mask"
