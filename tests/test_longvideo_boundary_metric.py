"""The boundary metric: TC at clip seams against TC inside clips, hard cuts left out."""

from __future__ import annotations

import numpy as np
import pytest

from vivid.metrics.boundary import boundary_tc, consecutive_tc, pixel_features


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
