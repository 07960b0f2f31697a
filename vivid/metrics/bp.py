"""BP, background preservation: how much an edit changed the video outside the edit region (lower is better)."""

from __future__ import annotations

import numpy as np

from vivid.metrics._checks import check_background


def background_preservation(source: np.ndarray, edited: np.ndarray, mask: np.ndarray) -> float:
    """Mean absolute difference (0-255 scale, averaged over pixels and channels) outside `mask`.

    `source` and `edited` are (F, H, W, 3) uint8; `mask` (F, H, W) or (H, W), True = the edit region,
    which is excluded. VIVID-10M-Eval's BP (L1 between source and edited video outside the edit region).
    """
    source, edited, keep = check_background(source, edited, mask)
    diff = np.abs(source.astype(np.int16) - edited.astype(np.int16))
    return float(diff[keep].mean())
