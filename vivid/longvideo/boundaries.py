"""Hard cuts and clip boundaries of long edits, and the representative frame of a clip (AdaFlow's keyframe
selection, adapted).

AdaFlow cuts a long video into clips where its content changes: each later frame is compared with the clip's
reference frame by a per-token best-match cosine map, and a new clip starts when the mean similarity falls
below one threshold or a sliding-window mean below another. Here the tokens are 8x8 patches of a small crop
around the edit region (the mask's bounding box and its surroundings), so boundaries follow what matters to
the edit; clip lengths are rounded down to 4k+1 and capped at the model's clip length. Hard cuts (a new shot)
are found first, from whole-frame colour histograms and from single-frame collapses of the edit region's
similarity to the previous frame (cuts between shots of alike colours), and a clip never spans one.

All functions work on per-frame features computed in one streamed pass (`FrameFeatures`), so the video
itself is never held in memory.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from vivid.constants import clip_frames_at_most
from vivid.model.spec import ModelSpecification

# Clips are 4k+1 frames long: every base's VAE compresses time 4x (the `vae_temporal` each specification inherits,
# checked by `spec.check_vae`).
TEMPORAL = ModelSpecification.vae_temporal


@dataclass
class BoundaryConfig:
    """Thresholds of the adaptive planner (cosine similarities in [-1, 1])."""

    min_similarity: float = 0.75  # AdaFlow: cut when the mean best-match similarity to the reference drops below
    min_window_similarity: float = 0.6  # ... or when the mean over the last `window` frames does
    window: int = 4
    cut_similarity: float = 0.7  # a hard cut: histogram intersection of consecutive frames below this ...
    cut_contrast: float = 3.0  # ... and its change this many times the median change of the pairs around it
    # a cut the histograms miss: the edit region's best-match similarity to the previous frame below this ...
    collapse_similarity: float = 0.85
    collapse_contrast: float = 5.0  # ... and its drop this many times the median drop of the pairs around it
    min_frames: int = 5  # shortest clip (4k+1) an adaptive boundary may make
    crop_margin: float = 0.5  # surroundings: the mask's box grown by this fraction of its size on each side
    grid: int = 32  # crop resized to grid x grid pixels ...
    patch: int = 8  # ... cut into patch x patch tokens


@dataclass
class FrameFeatures:
    """Per-frame features (float16, 6 KB a frame): `tokens` (F, T, D) unit-norm patch vectors of the edit region and its surroundings,
    `hists` (F, B) normalised colour histograms of the whole frame."""

    tokens: np.ndarray
    hists: np.ndarray

    def __len__(self) -> int:
        return len(self.tokens)


def _region(mask: np.ndarray | None, height: int, width: int, margin: float) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) of the mask's bounding box grown by `margin`; the whole frame without a mask."""
    if mask is None or not mask.any():
        return 0, height, 0, width
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    top, bottom, left, right = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    dh = max(int((bottom - top) * margin), height // 16)
    dw = max(int((right - left) * margin), width // 16)
    return max(0, top - dh), min(height, bottom + dh), max(0, left - dw), min(width, right + dw)


def frame_tokens(frame: np.ndarray, mask: np.ndarray | None = None, config: BoundaryConfig | None = None) -> np.ndarray:
    """Unit-norm tokens (T, patch*patch*3) of one frame: patches of the crop around the mask, centred at mid-grey
    (so colour and brightness count, not only texture)."""
    config = config or BoundaryConfig()
    top, bottom, left, right = _region(mask, frame.shape[0], frame.shape[1], config.crop_margin)
    crop = cv2.resize(frame[top:bottom, left:right], (config.grid, config.grid), interpolation=cv2.INTER_AREA)
    x = crop.astype(np.float32) / 127.5 - 1.0
    p = config.patch
    g = config.grid // p
    tokens = x.reshape(g, p, g, p, 3).transpose(0, 2, 1, 3, 4).reshape(g * g, p * p * 3)
    return tokens / np.maximum(np.linalg.norm(tokens, axis=1, keepdims=True), 1e-6)


def frame_histogram(frame: np.ndarray) -> np.ndarray:
    """A 16x4x4 HSV histogram of the whole frame, summing to 1."""
    small = cv2.resize(frame, (64, 64), interpolation=cv2.INTER_AREA)
    hsv = cv2.cvtColor(small, cv2.COLOR_RGB2HSV)
    hist = cv2.calcHist([hsv], [0, 1, 2], None, [16, 4, 4], [0, 180, 0, 256, 0, 256]).ravel()
    return hist / max(float(hist.sum()), 1.0)


def compute_features(
    chunks: Iterable[tuple[np.ndarray, np.ndarray | None]],
    config: BoundaryConfig | None = None,
    num_frames: int | None = None,
) -> FrameFeatures:
    """Features of a streamed video: `chunks` yields (frames (n, H, W, 3) uint8, mask (n, H, W) bool or None).
    With `num_frames` the arrays are allocated once up front (no per-frame allocations that outlive the pass)."""
    config = config or BoundaryConfig()
    tokens: list[np.ndarray] | np.ndarray = [] if num_frames is None else None
    hists: list[np.ndarray] | np.ndarray = []
    i = 0
    for frames, masks in chunks:
        for k, frame in enumerate(frames):
            tok = frame_tokens(frame, None if masks is None else masks[k], config)
            hist = frame_histogram(frame)
            if num_frames is None:
                tokens.append(tok.astype(np.float16))
                hists.append(hist)
            else:
                if tokens is None:
                    tokens = np.empty((num_frames, *tok.shape), np.float16)
                    hists = np.empty((num_frames, *hist.shape), np.float32)
                if i >= num_frames:
                    raise ValueError(f"more frames than the {num_frames} announced")
                tokens[i], hists[i] = tok, hist
            i += 1
    if i == 0:
        raise ValueError("no frames to compute features of")
    if num_frames is None:
        return FrameFeatures(tokens=np.stack(tokens), hists=np.stack(hists))
    if i != num_frames:
        raise ValueError(f"got {i} frames, {num_frames} announced")
    return FrameFeatures(tokens=tokens, hists=hists)


def best_match_similarity(tokens: np.ndarray, reference: np.ndarray) -> float:
    """AdaFlow's similarity: each token's best cosine match among the reference's tokens, averaged."""
    return float((tokens.astype(np.float32) @ reference.astype(np.float32).T).max(axis=1).mean())


def _standing_out(change: np.ndarray, threshold: float, contrast: float, radius: int) -> list[int]:
    """Frames f (pair (f - 1, f) = change[f - 1]) whose change exceeds `threshold` and is at least `contrast`
    times the median change of the `radius` pairs on each side."""
    out = []
    for i in np.flatnonzero(change > threshold):
        around = np.concatenate([change[max(0, i - radius) : i], change[i + 1 : i + 1 + radius]])
        if not len(around) or change[i] >= contrast * np.median(around):
            out.append(int(i) + 1)
    return out


def consecutive_similarity(features: FrameFeatures) -> np.ndarray:
    """(F - 1,): best-match similarity of each frame's tokens to the previous frame's."""
    t = features.tokens
    return np.array([best_match_similarity(t[f], t[f - 1]) for f in range(1, len(t))], dtype=np.float32)


def detect_similarity_collapses(
    features: FrameFeatures, config: BoundaryConfig | None = None, radius: int = 6
) -> list[int]:
    """Frames f where the edit region's similarity to the previous frame collapses in one frame (best-match
    similarity below `collapse_similarity`, its drop `collapse_contrast` x the median drop around it): a cut
    the colour histograms miss (two shots of alike colours), as opposed to fast motion, which lowers the
    similarity of many neighbouring pairs alike."""
    config = config or BoundaryConfig()
    if len(features) < 2:
        return []
    drop = 1.0 - consecutive_similarity(features)
    return _standing_out(drop, 1.0 - config.collapse_similarity, config.collapse_contrast, radius)


def detect_hard_cuts(features: FrameFeatures, config: BoundaryConfig | None = None, radius: int = 6) -> list[int]:
    """Frames that start a new shot: the histogram intersection with the previous frame is below
    `cut_similarity` and the change stands out (`cut_contrast` x the median change of the `radius` pairs on
    each side), so that fades, dissolves and fast motion, which change every frame a little, are not cuts;
    and the single-frame collapses of the edit region's similarity (`detect_similarity_collapses`)."""
    config = config or BoundaryConfig()
    h = features.hists.astype(np.float32)
    if len(h) < 2:
        return []
    change = 1.0 - np.minimum(h[1:], h[:-1]).sum(axis=1)
    cuts = _standing_out(change, 1.0 - config.cut_similarity, config.cut_contrast, radius)
    return sorted(set(cuts) | set(detect_similarity_collapses(features, config, radius)))


def _round_stop(start: int, stop: int, min_frames: int) -> int:
    """The largest stop <= `stop` making the clip [start, stop] 4k+1 frames long, at least `min_frames`."""
    return start + clip_frames_at_most(max(stop - start + 1, min_frames), TEMPORAL) - 1


def adaptive_boundaries(
    features: FrameFeatures, max_frames: int, cuts: Sequence[int] = (), config: BoundaryConfig | None = None
) -> list[int]:
    """Shared boundary frames (the last frame of one clip and the first of the next) inside each shot.

    Walks each shot from its first frame; the clip's reference is its first frame. A clip ends at the frame
    before the one whose similarity (mean since the reference, or mean over the last `window` frames) drops
    below the thresholds, rounded down to 4k+1 frames (at least `min_frames`), or at `max_frames`."""
    config = config or BoundaryConfig()
    check_clip_frames(max_frames)
    min_frames = min(max(config.min_frames, 1 + TEMPORAL), max_frames)
    n = len(features)
    edges = [0, *sorted(c for c in set(cuts) if 0 < c < n), n]
    boundaries: list[int] = []
    for seg_start, seg_stop in zip(edges[:-1], edges[1:]):
        last, start = seg_stop - 1, seg_start
        while (stop := _clip_end(features, start, last, max_frames, min_frames, config)) < last:
            boundaries.append(stop)
            start = stop
    return boundaries


def _clip_end(
    features: FrameFeatures, start: int, last: int, max_frames: int, min_frames: int, config: BoundaryConfig
) -> int:
    """The stop frame of the clip starting at `start` (inclusive), not beyond `last`."""
    reference = features.tokens[start]
    sims: list[float] = []
    for f in range(start + 1, min(last, start + max_frames - 1) + 1):
        sims.append(best_match_similarity(features.tokens[f], reference))
        window = sims[-config.window :]
        if np.mean(sims) < config.min_similarity or (
            len(window) == config.window and np.mean(window) < config.min_window_similarity
        ):
            return min(_round_stop(start, f - 1, min_frames), last)
    return min(start + max_frames - 1, last)


def representative_frame(
    features: FrameFeatures, start: int, stop: int, has_mask: Sequence[bool] | None = None
) -> int:
    """The frame in [start, stop] most similar on average to the others (best-match similarity): the keyframe
    that is easiest to propagate from. Frames without any mask are skipped when `has_mask` is given."""
    candidates = [f for f in range(start, stop + 1) if has_mask is None or has_mask[f]]
    if not candidates:
        return start
    frames = range(start, stop + 1)
    scores = [
        np.mean([best_match_similarity(features.tokens[g], features.tokens[f]) for g in frames if g != f] or [1.0])
        for f in candidates
    ]
    return candidates[int(np.argmax(scores))]


def check_clip_frames(max_frames: int) -> None:
    if max_frames < 1 + TEMPORAL or (max_frames - 1) % TEMPORAL:
        raise ValueError(f"clip length must be 4k+1 frames and at least 5, got {max_frames}")


@dataclass
class BoundaryPlan:
    """Where a long edit is cut: `cuts` start a new shot (no shared frame, no keyframe carried over);
    `boundaries` are frames shared by two neighbouring clips of one shot."""

    cuts: list[int] = field(default_factory=list)
    boundaries: list[int] = field(default_factory=list)


def plan_boundaries(
    features: FrameFeatures | None,
    max_frames: int,
    mode: str = "adaptive",
    config: BoundaryConfig | None = None,
    num_frames: int | None = None,
) -> BoundaryPlan:
    """`adaptive`: hard cuts + content-driven boundaries; `fixed`: windows of `max_frames` sharing a frame,
    blind to content (the baseline the adaptive selection is compared against; needs no features)."""
    config = config or BoundaryConfig()
    check_clip_frames(max_frames)
    if mode == "fixed":
        n = len(features) if features is not None else num_frames
        if n is None:
            raise ValueError("fixed boundaries need the frame count (features or num_frames)")
        return BoundaryPlan(cuts=[], boundaries=list(range(max_frames - 1, n - 1, max_frames - 1)))
    if mode != "adaptive":
        raise ValueError(f"boundary mode must be 'adaptive' or 'fixed', got {mode!r}")
    if features is None:
        raise ValueError("adaptive boundaries need frame features (vivid.longvideo.boundaries.compute_features)")
    cuts = detect_hard_cuts(features, config)
    return BoundaryPlan(cuts=cuts, boundaries=adaptive_boundaries(features, max_frames, cuts, config))
