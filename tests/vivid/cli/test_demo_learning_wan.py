"""The tiny Wan learns from the tiny demo's data: a few hundred steps of `vivid demo`'s training recipe on its
synthetic data set, with the tiny Wan folder as the base, and the training loss falls (slow). The tiny Wan is
random (there is no pretrained tiny Wan base), so its base trains too (`model.train_base`, the from-scratch recipe),
and the demo's validation is off."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest


@pytest.mark.slow
def test_the_demo_data_trains_the_tiny_wan_and_its_loss_falls(tiny_wan_model_dir, tmp_path):
    from data_loaders.synthetic import write_synthetic_dataset
    from train.trainer import train
    from vivid.cli.demo import QUICK, DemoPlan, train_config

    plan = DemoPlan(**{**QUICK.__dict__, "train_steps": 300, "train_minutes": 0.0})
    data = tmp_path / "data"
    write_synthetic_dataset(data, videos=plan.videos, images=plan.images, eval_per_task=plan.eval_per_task, seed=0)
    run = tmp_path / "train"
    config = train_config(plan, tiny_wan_model_dir, data, run, seed=0)
    config.model.train_base, config.validation.every_n_steps = True, 0
    result = train(config)
    assert result.step == plan.train_steps
    losses = np.array([json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()])
    assert len(losses) == plan.train_steps and np.isfinite(losses).all()
    first, last = losses[:50].mean(), losses[-50:].mean()
    print(f"tiny Wan on the demo data: loss mean of steps 1-50 {first:.4f}, of the last 50 {last:.4f}")
    assert last < 0.8 * first, (first, last)
    assert json.loads((result.checkpoint / "vivid-weights" / "vivid_config.json").read_text())["family"] == "wan"
    assert math.isfinite(result.loss)
