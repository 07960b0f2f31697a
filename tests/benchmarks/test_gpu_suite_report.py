"""benchmarks/gpu_suite_report.py: the GPU suite's report (its dry run is a step of .ci/run)."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import REPO_ROOT as ROOT


def test_gpu_suite_report_extrapolates_50_steps_and_rejects_bad_json(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "inference_guidance.json").write_text(json.dumps(
        {"steps": 4, "results": [{"name": "stock", "step_s": 2.0, "total_s": 30.0}]}))
    (run / "inference_guidance.seconds").write_text("41\n")
    out = tmp_path / "report.json"
    script = str(ROOT / "benchmarks" / "gpu_suite_report.py")
    subprocess.run([sys.executable, script, str(run), "--mode", "full", "--seconds", "50", "--out", str(out)],
                   cwd=ROOT, check=True, capture_output=True)
    report = json.loads(out.read_text())
    row = report["runs"]["inference_guidance"]["results"][0]
    assert row["extrapolated_50_step_s"] == 30.0 + 46 * 2.0
    assert report["runs"]["inference_guidance"]["suite_wall_s"] == 41 and report["wall_s"] == 50
    (run / "training.json").write_text("Traceback ...")
    (run / "training.seconds").write_text("3")
    proc = subprocess.run([sys.executable, script, str(run), "--mode", "full", "--seconds", "50", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode != 0 and "training.json" in proc.stderr
