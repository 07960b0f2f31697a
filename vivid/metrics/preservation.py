"""Background PSNR and SSIM: how well an edit kept the video outside the edit region, as VideoPainter's VPBench
and MiniMax-Remover report preservation (higher is better). Both compare the source and the edited frames on the
pixels outside the mask only."""

from __future__ import annotations

import cv2
import numpy as np

from vivid.metrics._checks import check_background

PSNR_MAX = 100.0  # dB: the PSNR of an unchanged background (zero error), so that means stay finite
_C1, _C2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2  # SSIM's stabilising constants for 8-bit data (Wang et al. 2004)


def background_psnr(source: np.ndarray, edited: np.ndarray, mask: np.ndarray) -> float:
    """PSNR in dB (peak 255) of the pixels outside `mask` over all frames and channels; PSNR_MAX where they are
    unchanged. `source`, `edited` (F, H, W, 3) uint8; `mask` (F, H, W) or (H, W), True = the edit region."""
    source, edited, keep = check_background(source, edited, mask)
    diff = source.astype(np.float64) - edited.astype(np.float64)
    mse = float((diff[keep] ** 2).mean())
    return PSNR_MAX if mse == 0 else min(PSNR_MAX, 10.0 * float(np.log10(255.0**2 / mse)))


def ssim_map(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The SSIM of every pixel of two (H, W) or (H, W, C) uint8 images (Gaussian window, sigma 1.5, 11x11; per
    channel), as float64 of the same shape."""
    x, y = a.astype(np.float64), b.astype(np.float64)

    def blur(img: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(img, (11, 11), 1.5, borderType=cv2.BORDER_REFLECT)

    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    return ((2 * mx * my + _C1) * (2 * cxy + _C2)) / ((mx * mx + my * my + _C1) * (vx + vy + _C2))


def background_ssim(source: np.ndarray, edited: np.ndarray, mask: np.ndarray) -> float:
    """Mean SSIM over the pixels outside `mask`: each frame's SSIM map (`ssim_map`, channels averaged) averaged
    over the background pixels of all frames; 1.0 where they are unchanged."""
    source, edited, keep = check_background(source, edited, mask)
    values = [ssim_map(s, e).mean(axis=-1)[k] for s, e, k in zip(source, edited, keep)]
    return float(np.concatenate(values).mean())
