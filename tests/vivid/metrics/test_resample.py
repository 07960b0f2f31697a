"""Resampling to the evaluation frame rate (vivid/metrics/resample.py)."""

from __future__ import annotations

import numpy as np
import pytest

from vivid.metrics import resample_fps, resample_indices


def test_resample_to_7_5_fps():
    assert resample_indices(30, 30.0).tolist() == [0, 4, 8, 12, 16, 20, 24, 28]
    assert resample_indices(10, 25.0).tolist() == [0, 3, 7]
    assert resample_indices(5, 5.0).tolist() == [0, 1, 2, 3, 4]  # slower than 7.5 fps: all kept
    frames = np.arange(30)[:, None]
    assert resample_fps(frames, 30.0)[:, 0].tolist() == [0, 4, 8, 12, 16, 20, 24, 28]
    with pytest.raises(ValueError):
        resample_indices(10, 0.0)
