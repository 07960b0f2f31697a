"""Evaluation metrics of VIVID-10M-Eval (BP, TA, TC), background PSNR / SSIM (as VPBench and MiniMax-Remover report
preservation) and of vivid's synthetic world (synthetic TA, colour remnant).

Frames are (F, H, W, 3) uint8 RGB, masks (F, H, W) bool with True = the edit region (see the shared reference,
sections 1 and 5).
"""

from vivid.metrics.bp import background_preservation
from vivid.metrics.preservation import background_psnr, background_ssim
from vivid.metrics.clip_scores import DEFAULT_CLIP, CLIPScorer, mask_bbox
from vivid.metrics.resample import resample_fps, resample_indices
from vivid.metrics.synthetic import (
    classify_colors,
    color_remnant,
    dominant_color,
    shape_of,
    synthetic_alignment,
)

__all__ = [
    "DEFAULT_CLIP",
    "CLIPScorer",
    "background_preservation",
    "background_psnr",
    "background_ssim",
    "classify_colors",
    "color_remnant",
    "dominant_color",
    "mask_bbox",
    "resample_fps",
    "resample_indices",
    "shape_of",
    "synthetic_alignment",
]
