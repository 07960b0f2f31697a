"""Frame-rate resampling: VIVID-10M-Eval compares videos at 7.5 fps."""

from __future__ import annotations

import numpy as np

EVAL_FPS = 7.5


def resample_indices(num_frames: int, fps: float, target_fps: float = EVAL_FPS) -> np.ndarray:
    """Indices of the frames nearest to times 0, 1/target, 2/target, ... (all frames if fps <= target)."""
    if num_frames < 1:
        raise ValueError(f"need at least one frame, got {num_frames}")
    if fps <= 0 or target_fps <= 0:
        raise ValueError(f"frame rates must be positive, got fps={fps}, target_fps={target_fps}")
    if fps <= target_fps:
        return np.arange(num_frames)
    duration = num_frames / fps
    times = np.arange(0.0, duration, 1.0 / target_fps)
    idx = np.minimum(np.round(times * fps).astype(int), num_frames - 1)
    return np.unique(idx)


def resample_fps(frames: np.ndarray, fps: float, target_fps: float = EVAL_FPS) -> np.ndarray:
    """`frames` (frames first) kept at `target_fps`."""
    return frames[resample_indices(len(frames), fps, target_fps)]
