"""Temporal consistency across clip boundaries against inside clips, for edits made clip by clip.

A chained long edit (vivid.longvideo) writes frames t and t+1 from two different clips at each seam t. If the
KIVE chaining carries the edit well, consecutive frames are as alike across seams as inside clips. TC follows
the paper's definition (100 x cosine of consecutive frames' features); any per-frame features work (CLIP image
embeddings in `vivid eval`, or `pixel_features` here when no CLIP model is at hand). Pairs across hard cuts are
left out of both averages: a new shot is not an inconsistency.

TC cannot see the worst seam of all: a clip that spans a hard cut edits two shots in one pipeline call and
carries the edit of one shot into the other. `cut_spanning` counts those clips (and the frames they hold), the
measure on which adaptive boundaries, which start every shot afresh, beat fixed windows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import cv2
import numpy as np


@dataclass
class BoundaryTC:
    tc_boundary: float  # mean TC of the pairs (t, t+1) at seams
    tc_inside: float  # mean TC of the other consecutive pairs (hard cuts excluded)
    gap: float  # tc_inside - tc_boundary: how much worse the seams are (0 = seamless)
    num_boundary_pairs: int
    num_inside_pairs: int

    def as_dict(self) -> dict:
        return asdict(self)


def consecutive_tc(features: np.ndarray) -> np.ndarray:
    """100 x cosine similarity of each frame's features with the next frame's: (F - 1,)."""
    f = np.asarray(features, dtype=np.float64).reshape(len(features), -1)
    f = f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)
    return 100.0 * (f[1:] * f[:-1]).sum(axis=1)


def boundary_tc(features: np.ndarray, seams: Sequence[int], cuts: Sequence[int] = ()) -> BoundaryTC:
    """TC across clip seams against TC inside clips.

    Args:
        features: per-frame features (F, ...) of the edited video, any shape after the frame axis.
        seams: frames t whose pair (t, t+1) comes from two clips (`ClipPlan.seams()`, or the "seams" list of the
            `clips.json` a chained edit writes in its work folder).
        cuts: frames c that start a new shot; the pair (c - 1, c) is excluded.
    """
    n = len(features)
    if n < 2:
        raise ValueError(f"boundary TC needs at least 2 frames, got {n}")
    bad = [t for t in seams if not 0 <= t < n - 1]
    if bad:
        raise ValueError(f"seams {bad[:5]} are outside the pairs of a {n}-frame video (0..{n - 2})")
    tc = consecutive_tc(features)
    is_seam = np.zeros(n - 1, bool)
    is_seam[list(seams)] = True
    keep = np.ones(n - 1, bool)
    for c in cuts:
        if 0 < c < n:
            keep[c - 1] = False
    at, inside = tc[is_seam & keep], tc[~is_seam & keep]
    tb = float(at.mean()) if len(at) else float("nan")
    ti = float(inside.mean()) if len(inside) else float("nan")
    return BoundaryTC(tb, ti, ti - tb, int(len(at)), int(len(inside)))


def pixel_features(frames: np.ndarray, size: tuple[int, int] = (32, 32)) -> np.ndarray:
    """Cheap per-frame features (F, size*size*3): frames downsampled and centred at mid-grey."""
    out = [cv2.resize(f, (size[1], size[0]), interpolation=cv2.INTER_AREA).astype(np.float32) / 127.5 - 1.0 for f in frames]
    return np.stack(out).reshape(len(frames), -1)


@dataclass
class CutSpanning:
    clips_spanning_cuts: int  # clips whose frames lie on both sides of a hard cut (0 = every shot edited apart)
    cuts_spanned: int  # hard cuts that some clip spans
    frames_in_spanning_clips: int  # frames of the video written by such clips
    fraction_in_spanning_clips: float  # ... over all frames written

    def as_dict(self) -> dict:
        return asdict(self)


def _span(clip: Any) -> tuple[int, int, int, int]:
    """(start, stop, write_start, write_stop) of a `vivid.longvideo.plan.Clip` or a (start, stop) pair."""
    if isinstance(clip, (tuple, list)):
        start, stop = int(clip[0]), int(clip[1])
        return start, stop, start, stop
    return int(clip.start), int(clip.stop), int(clip.write_start), int(clip.write_stop)


def cut_spanning(clips: Sequence[Any], cuts: Sequence[int]) -> CutSpanning:
    """How many clips span a hard cut: clip [start, stop] spans cut c (c starts a new shot) if start < c <= stop.

    Args:
        clips: `ClipPlan.clips` or (start, stop) pairs, stop inclusive.
        cuts: the true hard cuts (the frames that start a new shot), e.g. known from how a video was joined.
    """
    spans = [_span(c) for c in clips]
    if not spans:
        raise ValueError("no clips to check")
    bad = [s for s in spans if s[1] < s[0]]
    if bad:
        raise ValueError(f"clip {bad[0][:2]} ends before it starts")
    crossed = [[c for c in cuts if start < c <= stop] for start, stop, _, _ in spans]
    spanning = [s for s, x in zip(spans, crossed) if x]
    written = sum(max(0, ws_stop - ws + 1) for _, _, ws, ws_stop in spans)
    in_spanning = sum(max(0, ws_stop - ws + 1) for _, _, ws, ws_stop in spanning)
    return CutSpanning(
        clips_spanning_cuts=len(spanning),
        cuts_spanned=len({c for x in crossed for c in x}),
        frames_in_spanning_clips=in_spanning,
        fraction_in_spanning_clips=in_spanning / written if written else 0.0,
    )
