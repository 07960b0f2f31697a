"""Both benchmarks run in tiny mode on CPU and print their figures (no timing asserts); the 5B setup builds
the real architecture on the meta device with the right shapes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_bench(script: str, *args: str) -> dict:
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), "--size", "tiny", "--json", *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout[proc.stdout.index("{"):])
    for row in out["results"]:
        for key in ("step_s", "peak_memory_gb", "mfu", "speedup_vs_stock", "memory_ratio_vs_stock"):
            assert row[key] > 0, (row["name"], key)
    return out


@pytest.mark.slow  # ~80 s on 2 shared cores: three tiny pipelines, VAE decode dominates
def test_bench_inference_tiny():
    out = run_bench("bench_inference.py", "--steps", "3", "--attention-backend", "auto", "--merge-lora",
                    "--fuse-qkv", "--cache", "fbc")
    names = [r["name"] for r in out["results"]]
    assert names[0] == "stock CogVideoXPipeline" and len(names) == 3
    assert out["transformer_tflops_per_step_vivid"] > out["transformer_tflops_per_step_stock"] > 0


def test_bench_train_tiny():
    out = run_bench("bench_train.py", "--steps", "1")
    assert [r["name"] for r in out["results"]][0] == "stock CogVideoX LoRA step"
    assert len(out["results"]) == 3


def test_5b_components_on_meta():
    import torch

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from common import build_components

    from vivid.model.transformer import make_vivid_transformer, parameter_report

    comps = build_components("5b", torch.device("meta"), torch.bfloat16)
    transformer = make_vivid_transformer(comps["transformer"])
    report = parameter_report(transformer)
    assert 5.5e9 < report["total"] < 5.8e9 and report["trainable"] < 0.01 * report["total"]
    assert 4.6e9 < sum(p.numel() for p in comps["text_encoder"].parameters()) < 4.9e9  # T5-XXL encoder
    assert transformer.patch_embed.proj.in_channels == 36
    with torch.no_grad():
        out = transformer(hidden_states=torch.empty(1, 13, 36, 60, 90, device="meta", dtype=torch.bfloat16),
                          encoder_hidden_states=torch.empty(1, 226, 4096, device="meta", dtype=torch.bfloat16),
                          timestep=torch.zeros(1, device="meta"), return_dict=False)[0]
    assert out.shape == (1, 13, 16, 60, 90)
