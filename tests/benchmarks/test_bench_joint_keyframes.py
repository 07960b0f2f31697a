"""The joint keyframe memory benchmark: its analytic model (AAS fits more keyframes; its keys/values do not grow
with the number of keyframes) and one measured run on the tiny model."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import bench_joint_keyframes as bench  # noqa: E402


def test_analytic_keys_grow_quadratically_without_aas_and_not_with_it():
    full = [bench.joint_pass_bytes("cogvideox", k, None, 4)["kv"] for k in (10, 20)]
    slim = [bench.joint_pass_bytes("cogvideox", k, 1350, 4)["kv"] for k in (10, 20)]
    assert 3.5 < full[1] / full[0] < 4.5 and slim[0] == slim[1]
    for family in bench.SIZES_480P:
        assert bench.most_keyframes(family, 1560, 4, 80e9) > 4 * bench.most_keyframes(family, None, 4, 80e9) > 0


def test_measured_run_reports_the_budgeted_keys(tiny_model_dir):
    row = bench.measure_one(str(tiny_model_dir), 3, "aas", 5, 2, 64)
    (kv,) = row["kv_tokens_per_query"]
    assert row["peak_kv_tokens"] == 2 * kv and row["peak_mib"] >= 0
    full = bench.measure_one(str(tiny_model_dir), 3, "full", None, 2, 64)
    assert full["kv_tokens_per_query"][0] > kv
