"""Adaptive boundaries against fixed 49-frame windows on the boundary metric (prints the figures)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from tests.vivid.longvideo.test_boundaries import _box_masks, _clip
from benchmarks.bench_boundary_modes import compare_boundary_modes
from vivid.longvideo.plan import load_clip_plan
from vivid.io.video import write_video
from vivid.metrics.boundary import cut_spanning


@pytest.mark.slow
def test_adaptive_vs_fixed_windows_on_joined_clips(tiny_pipe, tmp_path):
    frames = np.concatenate([
        _clip("carphone_pristine.mp4", 0, 60), _clip("bikes.mp4", 77, 137), _clip("bigbuckbunny.mp4", 0, 60)
    ])
    video = write_video(tmp_path / "joined.mp4", frames, 25.0, lossless=True)
    report = compare_boundary_modes(tiny_pipe, video, _box_masks(len(frames)), "a red ball", "add", tmp_path,
                                    cuts=[60, 120], clip_frames=49, num_inference_steps=2, lossless=True)
    for mode in report:  # clips that edit two shots at once: what TC at the seams cannot show
        report[mode]["cut_spanning"] = cut_spanning(load_clip_plan(tmp_path / f"{mode}.mp4").clips, [60, 120]).as_dict()
    print(json.dumps(report, indent=1))
    for mode in ("fixed", "adaptive"):
        edited = report[mode]["edited"]
        assert edited["num_boundary_pairs"] >= 1 and math.isfinite(edited["tc_boundary"])
    # fixed windows put seams blind to the shots; adaptive ones start each shot afresh (no seam at a cut)
    assert report["fixed"]["seams"] == [48, 96, 144]
    assert not {59, 119} & set(report["adaptive"]["seams"])
    assert report["fixed"]["cut_spanning"]["clips_spanning_cuts"] == 2  # [48, 96] spans 60, [96, 144] spans 120
    assert report["adaptive"]["cut_spanning"]["clips_spanning_cuts"] == 0
