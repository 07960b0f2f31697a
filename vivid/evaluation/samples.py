"""Eval samples: the eval records of manifests, decoded by the data pipeline."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from data_loaders.config import DataConfig
from data_loaders.format import read_manifests
from data_loaders.loader import build_eval_samples
from vivid.constants import TASKS, clip_frames_at_most
from vivid.model.cogvideox_spec import CogVideoXSpec

# VIVID-10M-Eval's samples are CogVideoX-5B clips: its native length at 8 fps, at most.
EVAL_MAX_FRAMES = CogVideoXSpec.native_frames
from vivid.io.files import is_image_path
from vivid.io.images import read_image
from vivid.io.video import video_info


@dataclass
class EvalSample:
    """One eval edit: the source clip, the edit region, the caption and the task; `attributes` are the
    synthetic world's (color, shape, motion) of the entity to draw (add / modify) or to remove (delete)."""

    id: str
    task: str  # "add" | "modify" | "delete"
    frames: np.ndarray  # (F, H, W, 3) uint8
    mask: np.ndarray  # (F, H, W) bool, True = edit
    prompt: str
    fps: float = 0.0  # 0 for an image
    attributes: dict[str, Any] = field(default_factory=dict)


def load_eval_samples(
    manifests: Sequence[str | os.PathLike],
    limit: int | None = None,
    size: tuple[int, int] | None = None,
    frames: int | None = None,
    fps: float = 8.0,
    max_frames: int | None = EVAL_MAX_FRAMES,
) -> list[EvalSample]:
    """The eval records of the manifests, decoded by the data pipeline (deterministically: clip start, masks not
    augmented), at most `limit` per task. `size` (H, W) and `frames` (4k+1) default to the first record's media
    size and its frame count at `fps`, at most `max_frames` (None: no limit, for long samples)."""
    paths = [str(m) for m in manifests]
    if size is None or frames is None:
        records, _ = read_manifests(paths)
        if not records:
            raise ValueError(f"{', '.join(paths)}: no records")
        h, w, n = _media_geometry(records[0].media, fps, max_frames)
        size = size or (h, w)
        frames = frames or n
    config = DataConfig(eval_manifests=paths, height=size[0], width=size[1], frames=frames, fps=fps, num_workers=0)
    decoded = build_eval_samples(paths, config)
    counts = {t: 0 for t in TASKS}
    samples = []
    for d in decoded:
        if limit is not None and counts[d.task] >= limit:
            continue
        counts[d.task] += 1
        samples.append(EvalSample(d.id, d.task, d.video, d.mask, d.caption, float(d.fps), dict(d.attributes)))
    if not samples:
        raise ValueError(f"{', '.join(paths)}: no eval samples")
    return samples


def _media_geometry(media: str, fps: float, max_frames: int | None = EVAL_MAX_FRAMES) -> tuple[int, int, int]:
    """(height, width, 4k+1 frames at `fps`, at most `max_frames`; None: all) of a video or image file."""
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"max_frames must be >= 1 (or None for no limit), got {max_frames}")
    if is_image_path(media):
        h, w = read_image(media).shape[:2]
        return h, w, 1
    count, src_fps, h, w = video_info(media)
    usable = count if not src_fps or src_fps <= fps else int((count - 1) * fps / src_fps) + 1
    usable = max(usable, 1) if max_frames is None else min(max(usable, 1), max_frames)
    return h, w, clip_frames_at_most(usable, CogVideoXSpec.vae_temporal)
