"""BP (vivid/metrics/bp.py) on hand-built arrays."""

from __future__ import annotations

import numpy as np
import pytest

from vivid.metrics import background_preservation


def gray_video(frames=3, h=32, w=48, value=120) -> np.ndarray:
    return np.full((frames, h, w, 3), value, np.uint8)


def test_bp_zero_when_background_identical_whatever_happens_inside():
    src = gray_video()
    mask = np.zeros(src.shape[:3], bool)
    mask[:, 8:16, 10:20] = True
    out = src.copy()
    out[mask] = 255  # the edit itself is excluded
    assert background_preservation(src, out, mask) == 0.0


def test_bp_known_value_on_0_255_scale():
    src = gray_video(frames=2, h=4, w=4, value=100)
    mask = np.zeros((2, 4, 4), bool)
    mask[:, :2, :] = True  # top half is the edit region: 2 * 8 = 16 background pixels
    out = src.copy()
    out[0, 2, 0] = 130  # one pixel, all 3 channels, +30
    out[1, 3, 3, 0] = 40  # one channel -60
    out[0, 0, 0] = 0  # inside the region: ignored
    expected = (3 * 30 + 60) / (16 * 3)
    assert background_preservation(src, out, mask) == pytest.approx(expected)


def test_bp_one_mask_for_all_frames_and_bad_inputs():
    src = gray_video()
    out = src.copy()
    out[..., 0] = 130
    mask = np.zeros(src.shape[1:3], bool)
    mask[:4, :4] = True
    assert background_preservation(src, out, mask) == pytest.approx(10 / 3)
    with pytest.raises(ValueError, match="does not match"):
        background_preservation(src, out[:2], mask)
    with pytest.raises(ValueError, match="covers every pixel"):
        background_preservation(src, out, np.ones(src.shape[:3], bool))
    with pytest.raises(ValueError, match="uint8"):
        background_preservation(src.astype(np.float32), out, mask)
