"""The long-video benchmark runs on the tiny model on CPU, one process per length, and reports its figures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

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
                ["--processes", "2"]):
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
