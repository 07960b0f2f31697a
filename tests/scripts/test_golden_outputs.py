"""scripts/golden_outputs.py --compare: bit-equal files say so, the first difference is named (recording the
outputs runs the tiny models and the trainer for minutes: it is run by hand, see docs/reliability.md)."""

from __future__ import annotations

import subprocess
import sys

import torch
from safetensors.torch import save_file

from tests.conftest import REPO_ROOT as ROOT


def _compare(a, b) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "golden_outputs.py"), "--compare", str(a), str(b)],
                          capture_output=True, text=True, timeout=120)


def test_compare_says_bit_equal_or_names_the_first_difference(tmp_path):
    losses = torch.tensor([1.5, 1.25, 1.125], dtype=torch.float64)
    frames = torch.rand(2, 4, 6, 3)
    save_file({"wan/train/losses": losses, "wan/edit/guidance_5": frames}, str(tmp_path / "a.safetensors"))
    save_file({"wan/train/losses": losses.clone(), "wan/edit/guidance_5": frames.clone()},
              str(tmp_path / "b.safetensors"))
    same = _compare(tmp_path / "a.safetensors", tmp_path / "b.safetensors")
    assert same.returncode == 0 and same.stdout.startswith("bit-equal: 2 tensors")

    changed = losses.clone()
    changed[1] += 1e-12  # far below any printed precision
    save_file({"wan/train/losses": changed, "wan/edit/guidance_5": frames}, str(tmp_path / "c.safetensors"))
    differ = _compare(tmp_path / "a.safetensors", tmp_path / "c.safetensors")
    assert differ.returncode == 1 and differ.stdout.startswith("wan/train/losses: first difference at (1,)")

    save_file({"wan/train/losses": losses}, str(tmp_path / "d.safetensors"))
    missing = _compare(tmp_path / "a.safetensors", tmp_path / "d.safetensors")
    assert missing.returncode == 1 and "wan/edit/guidance_5" in missing.stdout
