"""benchmarks/bench_wan_offload.py, the GPU suite's Wan offload rows, at the dry run's size on the CPU."""

from __future__ import annotations

from tests.benchmarks.test_benchmarks import run_script


def test_bench_wan_offload_runs_both_offloads_on_the_cpu():
    """The GPU suite's Wan offload rows at the dry run's size: sequential offload puts the VAE on `meta` and still
    edits (as the plain edit does, within one grey level)."""
    for memory in ("model_offload", "sequential_offload"):
        out = run_script("bench_wan_offload.py", "--memory", memory, "--device", "cpu", "--steps", "1")
        row = out["results"][0]
        assert row["name"] == f"wan_{memory}" and row["max_abs_diff_vs_plain"] <= 1.01 / 255
        assert row["execution_device"].startswith("cpu") and row["vae_dtype"] == "torch.float32"
        assert row["vae_device"] == ("meta" if memory == "sequential_offload" else "cpu")
