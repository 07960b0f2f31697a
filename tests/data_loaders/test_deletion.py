"""Deletion synthesis: placement away from entities, copy propagation, and flow propagation of a known motion."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from data_loaders.deletion import backward_maps, synthesize_deletion_mask, warp_keyframe_mask
from data_loaders.errors import BadSample


def translating_video(frames: int, h: int, w: int, dx: float, dy: float, seed: int = 0) -> np.ndarray:
    """A smooth random texture whose content moves by (dx, dy) pixels per frame (integer steps)."""
    rng = np.random.default_rng(seed)
    pad = int(max(abs(dx), abs(dy)) * frames) + 4
    canvas = rng.random((h + 2 * pad, w + 2 * pad)).astype(np.float32)
    canvas = cv2.GaussianBlur(canvas, (0, 0), 2.0)
    canvas = (255 * (canvas - canvas.min()) / (canvas.max() - canvas.min())).astype(np.uint8)
    out = np.empty((frames, h, w, 3), np.uint8)
    for t in range(frames):
        oy, ox = pad - round(dy * t), pad - round(dx * t)
        out[t] = canvas[oy : oy + h, ox : ox + w, None]
    return out


def centroid(mask: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(mask)
    return np.array([xs.mean(), ys.mean()])


@pytest.mark.parametrize("max_side", [96, 48])  # full resolution, and flow computed at half size
def test_flow_propagation_follows_a_known_translation(max_side):
    dx, dy = 2, 1
    video = translating_video(9, 64, 96, dx, dy)
    maps, scale = backward_maps(video, "farneback", max_side)
    key = np.zeros((64, 96), bool)
    cv2.circle(key.view(np.uint8), (30, 25), 7, 1, -1)
    warped = warp_keyframe_mask(key, maps, scale)
    assert np.array_equal(warped[0], key)
    c0 = centroid(key)
    for t in range(1, 9):
        assert warped[t].sum() == pytest.approx(key.sum(), rel=0.15)
        np.testing.assert_allclose(centroid(warped[t]) - c0, [dx * t, dy * t], atol=1.0)


def test_flow_mode_sticks_to_the_background_and_avoids_entities():
    dx, dy = -2, 1
    video = translating_video(9, 64, 96, dx, dy, seed=1)
    known = np.zeros((9, 64, 96), bool)
    known[:, :, 60:] = True  # an entity covering the right part of every frame
    donor = np.zeros((9, 64, 96), bool)
    cv2.rectangle(donor[4].view(np.uint8), (5, 5), (14, 12), 1, -1)  # donor's largest frame is frame 4
    out = synthesize_deletion_mask(video, known, donor, np.random.default_rng(0), mode="flow", flow_max_side=96)
    assert not (out & known).any()
    c0 = centroid(out[0])
    assert out[0].sum() == 10 * 8
    for t in range(1, 9):
        np.testing.assert_allclose(centroid(out[t]) - c0, [dx * t, dy * t], atol=1.0)


def test_copy_mode_keeps_the_donor_trajectory_and_avoids_entities():
    video = translating_video(5, 64, 96, 0, 0)
    known = np.zeros((5, 64, 96), bool)
    known[:, 20:44, 30:66] = True
    donor = np.zeros((5, 64, 96), bool)
    for t in range(5):
        donor[t, 40:50, 10 + 3 * t : 18 + 3 * t] = True  # moves right 3 px per frame
    for seed in range(10):
        out = synthesize_deletion_mask(video, known, donor, np.random.default_rng(seed), mode="copy")
        assert not (out & known).any()
        assert [f.sum() for f in out] == [f.sum() for f in donor]
        shifts = [centroid(out[t]) - centroid(donor[t]) for t in range(5)]
        np.testing.assert_allclose(shifts, [shifts[0]] * 5)  # one translation for the whole sequence
        # keeps a margin of 2 px from the entity
        grown = cv2.dilate(known[0].view(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
        assert not (out.any(0) & grown).any()


def test_donor_is_scaled_down_to_fit():
    video = translating_video(1, 64, 96, 0, 0)
    known = np.zeros((1, 64, 96), bool)
    known[:, :, 40:] = True  # only a 38-px-wide strip stays free
    donor = np.zeros((1, 64, 96), bool)
    donor[0, 5:55, 5:55] = True  # 50x50 does not fit as is
    out = synthesize_deletion_mask(video, known, donor, np.random.default_rng(0), mode="copy")
    assert out.any() and not (out & known).any() and out.sum() < donor.sum()


def test_no_background_is_a_bad_sample():
    video = translating_video(3, 64, 96, 0, 0)
    known = np.ones((3, 64, 96), bool)
    donor = np.zeros((3, 64, 96), bool)
    donor[:, 10:20, 10:20] = True
    for mode in ("copy", "flow"):
        with pytest.raises(BadSample) as err:
            synthesize_deletion_mask(video, known, donor, np.random.default_rng(0), mode=mode, flow_max_side=96)
        assert err.value.reason == "no_background"
