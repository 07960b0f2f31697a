"""Background PSNR and SSIM: unchanged backgrounds score their maximum, the edit region never counts."""

from __future__ import annotations

import numpy as np
import pytest

from vivid.metrics import background_psnr, background_ssim
from vivid.metrics.preservation import PSNR_MAX


def _video(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (3, 32, 48, 3), dtype=np.uint8)


def test_unchanged_background_scores_the_maximum_whatever_the_edit_region_holds():
    src = _video()
    out = src.copy()
    mask = np.zeros(src.shape[:3], bool)
    mask[:, 8:20, 10:30] = True
    out[mask] = 255 - out[mask]  # only the edit region changes
    assert background_psnr(src, out, mask) == PSNR_MAX
    assert background_ssim(src, out, mask) > 0.8  # windows near the region see it: below 1, well above noise
    assert background_ssim(src, src, mask) == pytest.approx(1.0)


def test_psnr_is_the_formula_on_the_background_pixels():
    src = np.full((2, 16, 16, 3), 100, np.uint8)
    out = src.copy()
    out[:, :, :8] += 10  # error 10 on half of the background
    mask = np.zeros(src.shape[:3], bool)
    mask[:, :, 12:] = True  # a region without error: excluded
    mse = 100 * (8 / 12)
    assert background_psnr(src, out, mask) == pytest.approx(10 * np.log10(255**2 / mse))


def test_ssim_falls_with_noise_and_is_one_for_identical_frames():
    src = _video(1)
    mask = np.zeros(src.shape[:3], bool)
    noisy = np.clip(src.astype(int) + np.random.default_rng(2).normal(0, 40, src.shape), 0, 255).astype(np.uint8)
    assert background_ssim(src, noisy, mask) < 0.9 < background_ssim(src, src, mask)


def test_bad_inputs_are_named():
    src = _video()
    with pytest.raises(ValueError, match="does not match the source"):
        background_psnr(src, src[:, :16], np.zeros(src.shape[:3], bool))
    with pytest.raises(ValueError, match="covers every pixel"):
        background_ssim(src, src, np.ones(src.shape[:3], bool))
