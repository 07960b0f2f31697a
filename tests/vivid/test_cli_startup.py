"""`vivid --help` and every subcommand's `--help` import no heavy library (issue 30: they took 3x `import torch`);
the times are measured by benchmarks/bench_cli_startup.py, not here. DeepSpeed's accelerator guess is not printed."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import REPO_ROOT

HEAVY = ("torch", "diffusers", "transformers", "accelerate", "deepspeed", "peft", "gradio", "cv2", "decord",
         "numpy", "safetensors", "huggingface_hub")


def test_building_every_parser_imports_no_heavy_library():
    script = ("import sys; from vivid.cli import build_parser; build_parser(); "
              f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_deepspeeds_accelerator_guess_is_not_printed(tmp_path):
    """`vivid init-tiny` loads accelerate (and with it DeepSpeed, which logs its CPU guess to stdout on import)."""
    out = subprocess.run([sys.executable, "-m", "vivid.cli", "init-tiny", str(tmp_path / "tiny")], cwd=REPO_ROOT,
                         capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert out.returncode == 0, out.stderr
    assert "Setting accelerator to CPU" not in out.stdout + out.stderr
