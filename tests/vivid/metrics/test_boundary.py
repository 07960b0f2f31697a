"""The boundary metric: TC at clip seams against TC inside clips, hard cuts left out."""

from __future__ import annotations

import numpy as np
import pytest

from vivid.longvideo.boundaries import BoundaryPlan
from vivid.longvideo.plan import plan_clips
from vivid.metrics.boundary import boundary_tc, consecutive_tc, cut_spanning, pixel_features


def test_a_jump_at_a_seam_shows_as_a_gap_and_cuts_are_left_out():
    rng = np.random.default_rng(0)
    base = rng.normal(size=64)
    features = np.stack([base + 0.01 * t for t in range(30)])
    features[9:] += rng.normal(size=64) * 0.5  # the clip starting after seam 8 drifts away
    features[20:] = rng.normal(size=64)  # a new shot at frame 20
    r = boundary_tc(features, seams=[8, 16], cuts=[20])
    assert r.num_boundary_pairs == 2 and r.num_inside_pairs == 29 - 2 - 1
    assert r.gap > 5 and r.tc_inside > 99
    tc = consecutive_tc(features)
    assert r.tc_boundary == pytest.approx((tc[8] + tc[16]) / 2)
    assert boundary_tc(features, [8, 16]).tc_inside < r.tc_inside  # the cut pair would drag inside TC down


def test_seamless_video_has_no_gap_and_bad_seams_are_refused():
    frames = np.repeat(np.arange(64, dtype=np.uint8).reshape(1, 8, 8, 1), 3, axis=-1).repeat(12, axis=0)
    r = boundary_tc(pixel_features(frames), seams=[4, 8])
    assert r.gap == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="outside the pairs"):
        boundary_tc(pixel_features(frames), seams=[11])


def test_cut_spanning_counts_the_clips_that_edit_two_shots_at_once():
    """180 frames, shots starting at 60 and 120: fixed 49-frame windows span both cuts, adaptive clips none."""
    fixed = plan_clips(180, 49, BoundaryPlan([], [48, 96, 144])).clips
    r = cut_spanning(fixed, cuts=[60, 120])
    assert (r.clips_spanning_cuts, r.cuts_spanned) == (2, 2)
    assert r.frames_in_spanning_clips == 48 + 48  # clips [48, 96] and [96, 144] write frames 49..144
    assert r.fraction_in_spanning_clips == pytest.approx(96 / 180)
    adaptive = plan_clips(180, 49, BoundaryPlan([60, 120], [])).clips
    assert cut_spanning(adaptive, [60, 120]).as_dict() == {
        "clips_spanning_cuts": 0, "cuts_spanned": 0, "frames_in_spanning_clips": 0, "fraction_in_spanning_clips": 0.0}
    # (start, stop) pairs work too; a cut at a clip's first frame is not spanned (the clip starts the shot)
    assert cut_spanning([(0, 8), (8, 16)], [8]).clips_spanning_cuts == 1
    assert cut_spanning([(0, 7), (8, 16)], [8]).clips_spanning_cuts == 0
    with pytest.raises(ValueError, match="no clips"):
        cut_spanning([], [8])
