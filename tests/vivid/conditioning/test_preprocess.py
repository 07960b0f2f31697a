"""Paste-back feathering from a distance transform: what the disk-kernel version gave (within a tolerance), at a
cost that does not grow with the dilation (benchmarks/bench_paste_back.py times a 4000x4000 image)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from vivid.conditioning.preprocess import MAX_BLUR_SIGMA, paste_back, paste_weights

from tests.conftest import REPO_ROOT as ROOT


def _disk_kernel_weights(mask: np.ndarray, dilation: int) -> np.ndarray:
    """The weights as vivid computed them before (the reference): full-resolution dilations with disk kernels."""
    def disk(radius: int) -> np.ndarray:
        return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))

    weights = np.empty(mask.shape, np.float32)
    outer, inner = disk(dilation), disk(max(1, dilation // 2))
    sigma = max(dilation / 6.0, 0.5)
    for i, m in enumerate(mask.astype(np.uint8)):
        region = cv2.dilate(m, outer)
        soft = cv2.GaussianBlur(cv2.dilate(m, inner).astype(np.float32), (0, 0), sigma)
        weights[i] = np.maximum(soft, m) * region
    return weights


def _masks(size: int = 256) -> np.ndarray:
    rng = np.random.default_rng(0)
    masks = np.zeros((5, size, size), np.uint8)
    masks[0, 60:120, 80:180] = 1  # a rectangle
    cv2.circle(masks[1], (128, 128), 40, 1, -1)  # a disc
    masks[2] = cv2.resize((rng.random((12, 16)) > 0.7).astype(np.uint8), (size, size), interpolation=cv2.INTER_NEAREST)
    masks[3, 100, 120] = 1  # one pixel
    masks[4, 0:30, 200:] = 1  # touching two borders
    return masks.astype(bool)


@pytest.mark.parametrize("dilation", [0, 1, 2, 3, 5, 8, 12, 20, 33, 60])
def test_feathering_matches_the_disk_kernel_version(dilation):
    masks = _masks()
    old, new = _disk_kernel_weights(masks, dilation), paste_weights(masks, dilation)
    assert new.dtype == np.float32 and new.shape == masks.shape
    assert (new[masks] == 1).all() and ((new >= 0) & (new <= 1)).all()
    # the same band: where only one of them blends, the other's weight is negligible (disk rasterisation)
    assert old[(old > 0) != (new > 0)].max(initial=0) < 0.02
    # across a straight edge (the rectangle's side) the same profile; near corners and on thin shapes a Euclidean
    # disk and OpenCV's ellipse kernel differ by a few pixels, so single weights there differ more
    np.testing.assert_allclose(new[0, 90, 180:260], old[0, 90, 180:260], atol=0.03)
    assert np.abs(new - old).mean() < 0.003
    assert np.abs(new - old).max() < 0.35
    outside = (old == 0) & (new == 0)
    assert outside.sum() > 0.5 * masks[0].size


def test_paste_back_keeps_the_source_outside_the_band_bit_for_bit():
    rng = np.random.default_rng(1)
    source = rng.integers(0, 256, (2, 96, 128, 3), dtype=np.uint8)
    generated = rng.integers(0, 256, (2, 96, 128, 3), dtype=np.uint8)
    mask = np.zeros((2, 96, 128), bool)
    mask[0, 30:60, 40:90] = True  # frame 1: nothing to edit
    out = paste_back(source, generated, mask, 6)
    w = paste_weights(mask, 6)
    np.testing.assert_array_equal(out[w == 0], source[w == 0])
    np.testing.assert_array_equal(out[mask], generated[mask])
    blend = np.round(source * (1 - w[..., None]) + generated * w[..., None].astype(np.float32)).astype(np.uint8)
    band = (w > 0) & (w < 1)
    assert band.any() and np.abs(out[band].astype(int) - blend[band]).max() <= 1
    np.testing.assert_array_equal(out[1], source[1])


def test_feather_cost_does_not_grow_with_the_dilation(monkeypatch):
    """No disk kernel at full resolution (its cost grows with the dilation squared per pixel) and no Gaussian
    wider than MAX_BLUR_SIGMA: the taps per pixel are bounded whatever the dilation, so the cost is O(pixels)."""
    sigmas = []
    blur = cv2.GaussianBlur

    def recording_blur(image, ksize, sigma, *args, **kwargs):
        sigmas.append(sigma)
        return blur(image, ksize, sigma, *args, **kwargs)

    def no_dilate(*args, **kwargs):
        raise AssertionError("paste-back dilated with a kernel")

    monkeypatch.setattr(cv2, "GaussianBlur", recording_blur)
    monkeypatch.setattr(cv2, "dilate", no_dilate)
    mask = np.zeros((1, 600, 600), bool)
    mask[0, 200:400, 250:350] = True
    for dilation in (4, 40, 180):
        weights = paste_weights(mask, dilation)
        assert weights[0, 300, 350 + dilation + 1] == 0 and weights[0, 300, 350 + dilation // 2] > 0.2
    assert sigmas and max(sigmas) <= MAX_BLUR_SIGMA


def test_bench_paste_back_runs():
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_paste_back.py"), "--size", "256",
                           "--repeats", "1"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "256x256" in proc.stdout and " s" in proc.stdout
