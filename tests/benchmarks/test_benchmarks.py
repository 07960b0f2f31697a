"""The benchmarks run in tiny mode on CPU and print their figures (no timing asserts); the 5B setup builds
the real architecture on the meta device with the right shapes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO_ROOT as ROOT
SMALL = ("--frames", "5", "--height", "32", "--width", "48")  # the smallest shape the tiny model takes


def run_script(script: str, *args: str) -> dict:
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), "--json", *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout[proc.stdout.index("{"):])


def run_bench(script: str, *args: str) -> dict:
    out = run_script(script, "--size", "tiny", *args)
    for row in out["results"]:
        for key in ("step_s", "peak_memory_gb", "mfu", "speedup_vs_stock", "memory_ratio_vs_stock"):
            assert row[key] > 0, (row["name"], key)
    return out


def test_bench_inference_tiny():
    # ~25 s: on CPU each configuration runs in its own process, so each has its own peak memory
    out = run_bench("bench_inference.py", "--steps", "1", *SMALL)
    names = [r["name"] for r in out["results"]]
    assert names == ["stock CogVideoXPipeline", "vivid (default settings)"]
    assert out["isolated"] is True and out["shape"] == "5x32x48" and out["steps"] == 1
    kinds = {r["peak_memory_kind"] for r in out["results"]}
    assert kinds == {"process max RSS of this configuration's own process (CPU)"}
    assert out["results"][0]["speedup_vs_stock"] == 1.0
    assert out["transformer_tflops_per_step_vivid"] > out["transformer_tflops_per_step_stock"] > 0


def test_bench_frame_conv_tiny():
    out = run_script("bench_frame_conv.py", "--repeats", "1", *SMALL)
    assert [r["name"].split(" (")[0] for r in out["results"]] == [
        "encode 1 clip", "encode 1 image", "encode 2 clips", "decode 1 clip"]
    for r in out["results"]:
        assert r["conv3d_ms"] > 0 and r["frame_wise_ms"] > 0 and r["max_diff"] < 1e-4, r


def test_bench_train_tiny():
    # one process (--no-isolate): the memory column is then labelled an upper bound
    out = run_bench("bench_train.py", "--steps", "1", "--no-isolate", *SMALL)
    names = [r["name"] for r in out["results"]]
    assert names == ["stock CogVideoX LoRA step", "vivid step (pre-encoded latents)",
                     "vivid trainer step (+ VAE encode)", "vivid joint keyframe step"]
    assert out["isolated"] is False
    assert all("upper bound" in r["peak_memory_kind"] for r in out["results"])


def test_bench_cache_quality_tiny(tiny_model_dir, tmp_path):
    from data_loaders.synthetic import write_synthetic_dataset

    from vivid.speed import CACHES

    data = write_synthetic_dataset(tmp_path / "data", videos=0, images=0, size=(32, 48), frames=5,
                                   eval_per_task=1)
    out = run_script("bench_cache_quality.py", "--model", str(tiny_model_dir), "--data",
                     *map(str, data.eval_manifests), "--limit", "1", "--steps", "4", "--threads", "1",
                     "--out", str(tmp_path / "caches.json"))
    assert json.loads((tmp_path / "caches.json").read_text()) == out
    rows = {r["cache"]: r for r in out["results"]}
    assert list(rows) == ["none", *CACHES]
    assert out["settings"]["tasks"] == {"add": 1, "modify": 1, "delete": 1}
    none = rows["none"]
    assert none["speedup"] == 1.0 and none["psnr_db_mean"] == 100.0 and none["flips"] == 0
    assert none["d_synthetic_ta"] == none["d_bp"] == none["d_remnant"] == 0.0
    assert none["synthetic_ta"] is not None and none["remnant"] is not None and none["bp"] > 0
    for row in rows.values():
        assert row["edit_s"] > 0 and row["transformer_s"] > 0 and 0 < row["psnr_db_mean"] <= 100.0
        assert 0 < row["transformer_work"] <= 1.0
    # the attention caches skip work at 4 steps, and that changes the output
    for name in ("pab", "fastercache"):
        assert rows[name]["transformer_work"] < 1.0 and rows[name]["psnr_db_mean"] < 100.0, name


def test_5b_components_on_meta():
    import torch

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from common import build_components

    from vivid.model.cogvideox_spec import CogVideoXSpec
    from vivid.model.transformer import parameter_report

    comps = build_components("5b", torch.device("meta"), torch.bfloat16)
    transformer = CogVideoXSpec().make_vivid(comps["transformer"])
    report = parameter_report(transformer)
    assert 5.5e9 < report["total"] < 5.8e9 and report["trainable"] < 0.01 * report["total"]
    assert 4.6e9 < sum(p.numel() for p in comps["text_encoder"].parameters()) < 4.9e9  # T5-XXL encoder
    assert transformer.patch_embed.proj.in_channels == 36
    with torch.no_grad():
        out = transformer(hidden_states=torch.empty(1, 13, 36, 60, 90, device="meta", dtype=torch.bfloat16),
                          encoder_hidden_states=torch.empty(1, 226, 4096, device="meta", dtype=torch.bfloat16),
                          timestep=torch.zeros(1, device="meta"), return_dict=False)[0]
    assert out.shape == (1, 13, 16, 60, 90)


def test_bench_manifest_memory_tiny():
    """`vivid data check` on a 500-line manifest (every 10th line bad JSON, most naming a missing file): the bad
    list holds every bad line and a peak RSS is printed."""
    out = run_script("bench_manifest_memory.py", "--lines", "500")
    (row,) = out["results"]
    assert row["lines"] == 500 and row["exit_code"] == 1 and row["bad_listed"] == 495 and row["peak_rss_mib"] > 0
