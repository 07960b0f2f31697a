"""KIVE step 1: candidate keyframes. Edit one frame several times (captions x seeds) so a person can pick one;
`vivid.longvideo.chain_edit` (or `vivid edit --keyframe`) then propagates the chosen one through the video.

Used by `vivid keyframe` and the app.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import torch

from vivid.io.edit_inputs import resolve_prompt
from vivid.longvideo.boundaries import compute_features, detect_hard_cuts, representative_frame
from vivid.io.masks import MaskSource
from vivid.io.video import VideoSource


def choose_frame(video: str, mask: str, frame: str, clip_frames: int) -> int:
    """The frame to edit: an index, or 'auto' (vivid.longvideo.boundaries.representative_frame over the first clip)."""
    source = VideoSource(video)
    masks = MaskSource(mask, len(source), source.height, source.width, timing=source.timing())
    if frame != "auto":
        try:
            index = int(frame)
        except ValueError:
            raise ValueError(f"--frame must be a frame index or 'auto', got {frame!r}") from None
        if not 0 <= index < len(source):
            raise ValueError(f"--frame {index} is outside the video (frames 0..{len(source) - 1})")
        return index
    stop = min(len(source), clip_frames)
    idx = range(stop)
    frames, mask_frames = source.frames(idx), masks.frames(idx)
    features = compute_features([(frames, mask_frames)])
    cuts = detect_hard_cuts(features)
    last = (cuts[0] - 1) if cuts else stop - 1
    return representative_frame(features, 0, last, mask_frames.reshape(stop, -1).any(axis=1))


def edit_candidates(
    pipe: Any, frame: np.ndarray, mask: np.ndarray, prompts: list[str | None], task: str, seeds: list[int],
    **sampling: Any,
) -> list[tuple[str, int, np.ndarray]]:
    """(caption, seed, edited frame uint8 (H, W, 3)) for every caption x seed: one-frame edits."""
    out = []
    for prompt, seed in itertools.product(prompts, seeds):
        caption = resolve_prompt(prompt, task)
        generator = torch.Generator(device="cpu").manual_seed(seed)
        edited = pipe(video=frame[None], mask=mask[None], prompt=caption, task=task, generator=generator,
                      output_type="uint8", **sampling).frames[0][0]
        out.append((caption, seed, edited))
    return out
