"""The one full-size CPU benchmark (benchmarks/bench_full_size_cpu.py) for every base: its checks on each tiny
family (fast), and each base at full size (slow)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT as ROOT

FAMILIES = ("cogvideox", "wan")
# stock parameters of the architectures each base also builds on the meta device
META_BUILDS = {"cogvideox": {}, "wan": {"Wan2.1-14B": 14_288_491_584}}


@pytest.fixture
def bench(monkeypatch):
    """The benchmark script as a module, imported in this process (no interpreter start per run)."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import bench_full_size_cpu

    return bench_full_size_cpu


def _check_report(report: dict, family: str, shape: list[int]) -> None:
    assert report["ok"] and all(report["checks"].values()), report["checks"]
    assert report["family"] == family and report["saved_weights"]["family"] == family
    parameters = report["parameters"]
    assert parameters["trainable"] == parameters["expected"]["trainable"]
    assert parameters["total"] == parameters["expected"]["total"]
    assert report["pipeline"]["output_shape"] == shape and len(report["pipeline"]["step_seconds"]) == 2
    assert report["training"]["grad_norm"] > 0


@pytest.mark.parametrize("family", FAMILIES)
def test_every_check_passes_on_the_tiny_family(tmp_path, bench, family):
    out = tmp_path / "bench.json"
    assert bench.main(["--family", family, "--size", "tiny", "--frames", "5", "--height", "32", "--width", "48",
                       "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    _check_report(report, family, [5, 32, 48, 3])
    # the full-size architectures' parameter counts are checked on the meta device even here
    full = {"cogvideox": "CogVideoX-5B", "wan": "Wan2.1-1.3B"}[family]
    assert set(report["meta_builds"]) == {full, *META_BUILDS[family]}


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_full_size_pipeline_call_training_step_and_weights_on_cpu(tmp_path, family):
    # CogVideoX-5B: about 12 GB of RAM, Wan2.1-1.3B about 5 GB; minutes on 2 cores: the real shapes without a GPU
    out = tmp_path / f"bench_{family}.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_full_size_cpu.py"), "--family", family,
                           "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=3600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    _check_report(report, family, [9, 64, 96, 3])
    assert {k: v["stock_parameters"] for k, v in report["meta_builds"].items()} == META_BUILDS[family]
    if family == "wan":
        assert report["parameters"]["total"] == 1_418_996_800 + 20 * 1536 * 4 + 30 * 8 * 32 * 2 * 1536
