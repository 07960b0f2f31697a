"""benchmarks/bench_wan_gpu.py at the tiny size on the CPU, its rows read by the GPU suite's report."""

from __future__ import annotations

import json

import pytest

from tests.conftest import REPO_ROOT as ROOT


@pytest.fixture
def benchmarks(monkeypatch):
    """The benchmark scripts as modules, imported in this process (no interpreter start per run)."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import bench_wan_gpu
    import gpu_suite_report

    return bench_wan_gpu, gpu_suite_report


def test_wan_gpu_benchmark_dry_rows_and_the_suite_report(tmp_path, benchmarks, capsys):
    bench_wan_gpu, gpu_suite_report = benchmarks
    tiny = ["--size", "tiny", "--device", "cpu", "--frames", "5", "--height", "32", "--width", "48", "--json"]
    run = tmp_path / "run"
    run.mkdir()
    for name, extra in (("inference_wan2.1_1.3b_guidance", ["--steps", "2", "--guidance", "5"]),
                        ("training_wan2.1_1.3b", ["--mode", "training", "--train-steps", "1",
                                                  "--gradient-checkpointing"])):
        capsys.readouterr()
        assert bench_wan_gpu.main([*tiny, *extra]) == 0
        stdout = capsys.readouterr().out
        (run / f"{name}.json").write_text(stdout[stdout.index("{"):])
        (run / f"{name}.seconds").write_text("3\n")
    (run / "inference_wan2.1_14b_no_guidance.json").write_text(json.dumps({"error": "CUDA out of memory"}))
    (run / "inference_wan2.1_14b_no_guidance.seconds").write_text("1\n")
    out = tmp_path / "report.json"
    assert gpu_suite_report.main([str(run), "--mode", "dry", "--seconds", "7", "--out", str(out)]) == 0
    wan = json.loads(out.read_text())["wan"]
    guided = wan["1.3b"]["guidance"]
    assert sorted(guided) == ["stock WanPipeline (text-to-video)", "vivid (WanSpec: conditions, sample, decode)"]
    for row in guided.values():
        assert row["step_s"] > 0 and row["extrapolated_50_step_s"] == row["total_s"] + 48 * row["step_s"]
    (train_row,) = wan["1.3b"]["training"].values()
    assert train_row["step_s"] > 0 and train_row["peak_memory_gb"] > 0
    assert wan["14b"] == {"no_guidance": {"error": "CUDA out of memory"}}
