"""The long-video benchmark runs on the tiny model on CPU, one process per length, and reports its figures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import REPO_ROOT as ROOT


def test_bench_long_tiny_two_lengths():
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_long.py"), "--size", "tiny", "--frames", "12,21",
         "--steps", "1", "--guidance", "1", "--height", "32", "--width", "64", "--json"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout[proc.stdout.index("{"):])
    assert out["size"] == "tiny" and out["peak_memory"] == "peak_rss_gb" and out["working_size"] == "32x64"
    rows = out["results"]
    assert [r["frames"] for r in rows] == [12, 21]
    # fixed 9-frame windows sharing a frame: 12 frames -> [0, 8] [8, 11]; 21 -> [0, 8] [8, 16] [16, 20]
    assert [r["clips"] for r in rows] == [2, 3]
    assert [r["max_frames_per_call"] for r in rows] == [9, 9]
    assert rows[1]["frames_per_call"] == pytest.approx((9 + 9 + 5) / 3)
    for r in rows:
        assert 0 < r["s_per_clip"] < r["total_s"]
        assert 0.1 < r["peak_rss_gb"] < 8  # a separate process each: its own peak
        assert r["peak_rss_gb"] >= r["rss_before_edit_gb"]
    assert rows[0]["peak_ratio_vs_shortest"] == 1.0


def test_bench_long_refuses_bad_arguments():
    for bad in (["--frames", "1"], ["--frames", "a,b"], ["--height", "30"], ["--clip-frames", "8"],
                ["--processes", "2"], ["--keyframe-group", "0"]):
        proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_long.py"), *bad],
                              cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2 and "error:" in proc.stderr, (bad, proc.stderr[-500:])


def test_bench_long_parallel_in_more_processes_than_gpus_is_one_skipped_line():
    import torch

    if torch.cuda.device_count() >= 2:
        pytest.skip("2 GPUs here: the run would happen")
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_long.py"), "--size", "5b", "--frames",
                           "193", "--long-mode", "parallel", "--processes", "2", "--json"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout)
    assert out["skipped"] == f"2 processes need 2 GPUs (one each), {torch.cuda.device_count()} present"


def _bench_module():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import bench_long

    return bench_long


def test_ping_pong_plays_forward_and_back_without_a_cut():
    bench = _bench_module()
    assert bench.ping_pong(4, 11) == [0, 1, 2, 3, 2, 1, 0, 1, 2, 3, 2]
    order = bench.ping_pong(250, 1000)
    assert len(order) == 1000 and set(order) == set(range(250))
    assert all(abs(a - b) == 1 for a, b in zip(order, order[1:]))  # neighbouring frames only
    with pytest.raises(ValueError, match="at least 2 frames"):
        bench.ping_pong(1, 5)


def test_bikes_source_is_the_real_clip_ping_ponged_at_the_working_size(tmp_path):
    from vivid.io.resize import cover_geometry, resize_frames
    from vivid.io.video import read_video, video_info

    bench = _bench_module()
    path = bench.write_named_source("bikes", tmp_path / "bikes_260.mp4", 260, 32, 64)
    assert video_info(path) == (260, 25.0, 32, 64)
    written = read_video(path)[0].astype(np.int16)
    bikes = read_video(bench.bikes_clip())[0]
    expected = resize_frames(bikes, cover_geometry(*bikes.shape[1:3], 32, 64)).astype(np.int16)
    order = bench.ping_pong(250, 260)  # 0..249, then 248 down to 239
    assert order[249:252] == [249, 248, 247]
    assert np.abs(written - expected[order]).mean() < 4  # the encoder's loss, not another frame
    turned = np.abs(written[250:] - expected[order[250:]]).mean()
    looped = np.abs(written[250:] - expected[:10]).mean()  # a loop back to frame 0: a hard cut
    assert looped > 4 * turned


def test_bench_long_bikes_source_parallel_reports_the_output_hash():
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_long.py"), "--size", "tiny", "--source", "bikes",
         "--frames", "12", "--steps", "1", "--guidance", "1", "--height", "32", "--width", "64",
         "--long-mode", "parallel", "--keyframe-group", "2", "--lossless", "--json"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout[proc.stdout.index("{"):])
    assert out["source"] == "bikes" and out["long_mode"] == "parallel"
    assert out["keyframe_group"] == 2 and out["lossless"] is True
    (row,) = out["results"]
    assert row["frames"] == 12 and row["clips"] == 2 and row["clips_between_two_keyframes"] is True
    assert len(row["output_sha256"]) == 64 and int(row["output_sha256"], 16) >= 0


def test_bench_long_pipeline_runs_in_eval_mode():
    """Dropout active in a built (not loaded) module makes an edit depend on the process's random state, so the
    1- and 2-process outputs differed."""
    import torch

    pipe = _bench_module().build_pipeline("tiny", torch.device("cpu"), torch.float32)
    modules = [m for m in pipe.components.values() if isinstance(m, torch.nn.Module)]
    assert modules and not any(sub.training for m in modules for sub in m.modules())
    ids = pipe.tokenizer("a red ball", return_tensors="pt").input_ids
    with torch.no_grad():
        first, second = pipe.text_encoder(ids)[0], pipe.text_encoder(ids)[0]
    assert torch.equal(first, second)


def test_the_benchmarks_tiny_components_are_in_eval_mode():
    """The shared builders hand the benchmarks modules in eval mode (the tiny T5's dropout would otherwise draw
    random numbers at every prompt encoding, so timings and outputs would depend on what ran before)."""
    from benchmarks.bench_wan_gpu import build_wan_components
    from benchmarks.common import build_components
    from vivid.model.tiny_wan import build_tiny_wan_components

    comps = build_components("tiny", torch.device("cpu"), torch.float32)
    wan = build_wan_components(object, {}, build_tiny_wan_components, "tiny", torch.device("cpu"))
    for module in (comps["text_encoder"], comps["vae"], comps["transformer"], wan["vae"], wan["transformer"]):
        assert not any(m.training for m in module.modules())
