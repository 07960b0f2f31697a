"""`vivid train` -> `vivid export` -> `vivid edit --weights` on the tiny model of each base (CogVideoX and Wan2.1):
a few training steps, `--resume latest` repeating the uninterrupted run's losses, the exported weights (in the
base's layout, with a card naming the base's objective) loading into an edit that they change."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from tests.train.test_trainer import TINY_YAML, read_metrics, synth_data, tiny_overrides  # noqa: F401 (fixture)
from vivid.cli import main
from vivid.io.images import read_image
from vivid.model.registry import spec_for


def _train(data: Path, model: Path, run: Path, steps: int, *extra: str) -> int:
    overrides = tiny_overrides(data, run, f"optim.max_steps={steps}", f"model.pretrained={model}",
                               "checkpoint.every_n_steps=1", "checkpoint.keep_last=0")
    return main(["train", "--config", str(TINY_YAML), *overrides, *extra])


def test_train_resume_export_and_edit_with_the_weights(synth_data, family_model_dir, tmp_path, capsys):
    spec = spec_for(family_model_dir)
    straight, run = tmp_path / "straight", tmp_path / "run"
    assert _train(synth_data, family_model_dir, straight, 2) == 0
    assert _train(synth_data, family_model_dir, run, 1) == 0
    assert _train(synth_data, family_model_dir, run, 2, "--resume", "latest") == 0
    losses = [r["loss"] for r in read_metrics(straight)]
    resumed = [r["loss"] for r in read_metrics(run)]
    assert [r["step"] for r in read_metrics(run)] == [1, 2] and all(math.isfinite(x) for x in losses)
    np.testing.assert_allclose(resumed, losses, rtol=0, atol=1e-6)

    out = tmp_path / "export"
    assert main(["export", "--checkpoint", str(run), "--out", str(out)]) == 0
    config = json.loads((out / "vivid_config.json").read_text())
    assert config["family"] == spec.name
    card = (out / "README.md").read_text()
    assert spec.name in yaml.safe_load(card.split("---")[1])["tags"] and spec.objective in card
    other = {"cogvideox": "Wan2.1", "wan": "CogVideoX"}[spec.name]
    assert other not in card, f"the card of a {spec.name} export names {other}"

    frame = np.full((64, 96, 3), 90, np.uint8)
    frame[:, 48:] = (200, 60, 30)
    cv2.imwrite(str(tmp_path / "in.png"), frame)
    mask = np.zeros((64, 96), np.uint8)
    mask[16:48, 24:72] = 255
    cv2.imwrite(str(tmp_path / "m.png"), mask)
    edit = ["edit", "--model", str(family_model_dir), "--video", str(tmp_path / "in.png"), "--mask",
            str(tmp_path / "m.png"), "--task", "add", "--prompt", "a red ball", "--steps", "2"]
    assert main([*edit, "--out", str(tmp_path / "base.png")]) == 0
    assert main([*edit, "--out", str(tmp_path / "tuned.png"), "--weights", str(out)]) == 0
    base, tuned = read_image(tmp_path / "base.png"), read_image(tmp_path / "tuned.png")
    assert not np.array_equal(base[mask > 0], tuned[mask > 0]), "the exported weights changed nothing"
