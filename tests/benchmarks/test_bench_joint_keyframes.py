"""The joint keyframe memory benchmark: its analytic model (AAS and keyframe groups fit more keyframes; in groups
with AAS only what every keyframe keeps grows with the number of keyframes) and measured runs on the tiny model."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import bench_joint_keyframes as bench  # noqa: E402


def test_analytic_groups_keep_one_groups_activations_and_fit_more_keyframes():
    grouped = [bench.joint_pass_bytes("cogvideox", k, 1350, 4) for k in (10, 20)]
    assert grouped[0]["active"] == grouped[1]["active"] and grouped[1]["resident"] == 2 * grouped[0]["resident"]
    full = [bench.joint_pass_bytes("cogvideox", k, None, k)["active"] for k in (10, 20)]
    assert full[1] / full[0] > 2.2  # one batch of full extended attention: more than linear
    assert bench.joint_pass_bytes("cogvideox", 4, 1350, 4)["resident"] == 0  # one group holds them all
    for family in bench.SIZES_480P:
        in_groups = bench.most_keyframes(family, 1560, 4, 80e9)
        one_batch = bench.most_keyframes(family, 1560, None, 80e9)
        assert in_groups > 2 * one_batch > 4 * bench.most_keyframes(family, None, None, 80e9) > 0


def test_measured_runs_report_the_budgeted_keys_and_the_group(tiny_model_dir):
    row = bench.measure_one(str(tiny_model_dir), 3, "aas-groups", 5, 2, 64)
    (kv,) = row["kv_tokens_per_query"]
    assert row["peak_kv_tokens"] == 2 * kv and row["peak_rows"] == 2 and row["peak_mib"] >= 0
    one_batch = bench.measure_one(str(tiny_model_dir), 3, "aas", 5, 2, 64)
    assert one_batch["peak_kv_tokens"] == 3 * kv and one_batch["peak_rows"] == 3
    full = bench.measure_one(str(tiny_model_dir), 3, "full", None, 2, 64)
    assert full["kv_tokens_per_query"][0] > kv
