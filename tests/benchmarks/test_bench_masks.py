"""benchmarks/bench_masks.py runs at a small size and prints its figures (no quality or timing asserts here: the
quality the classic segmenter must reach is held by tests/vivid/cli/test_mask.py)."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import REPO_ROOT as ROOT


def _run(*args: str) -> str:
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_masks.py"), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_quality_prints_one_row_per_clip_and_motion():
    out = _run("quality", "--max-frames", "4")
    rows = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert len(rows) == 6 and {r["motion"] for r in rows} == {"linear", "circle"}
    assert all(0 <= r["mean_iou"] <= 1 and r["frames"] == 4 for r in rows) and "mean IoU over 6 runs" in out


def test_speed_json_has_rate_and_peak_memory_per_length():
    out = json.loads(_run("speed", "--frames", "5", "--json"))
    (row,) = out["results"]
    assert row["frames"] == 5 and row["masks_per_s"] > 0 and row["peak_rss_mib"] > 0
