"""The demo's stages in miniature: VAE pre-training and installation, the pretrained tiny family, the demo's train
config, its targets, per-shape misses and learning curve, argument checks."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory):
    from data_loaders.synthetic import write_synthetic_dataset

    out = tmp_path_factory.mktemp("synth")
    write_synthetic_dataset(out, videos=2, images=2, eval_per_task=1, seed=5)
    return out


def test_vae_pretraining_learns_and_sets_the_scaling_factor(tmp_path, synth_dir, tiny_model_dir):
    from diffusers import AutoencoderKLCogVideoX

    from train.vae_pretrain import (
        FrameSource,
        VAEPretrainConfig,
        install_vae,
        latent_std,
        new_tiny_vae,
        pretrain_vae,
        reconstruction_error,
    )

    cfg = VAEPretrainConfig(manifests=[str(synth_dir / "train-*.jsonl")], out_dir=str(tmp_path / "vae"), steps=8,
                            image_batch=4, video_batch=1, video_every=4, lr=2e-3, log_every=1)
    x = FrameSource(cfg).batch(4, 1)
    assert x.shape == (4, 3, 1, 64, 96) and x.min() >= -1 and x.max() <= 1
    crops = FrameSource(cfg).batch(2, 9, crop=(32, 48))
    assert crops.shape == (2, 3, 9, 32, 48)
    messages = []
    out = pretrain_vae(cfg, progress=messages.append)
    assert len(messages) == 9 and "scaling_factor" in messages[-1]
    vae = AutoencoderKLCogVideoX.from_pretrained(out)
    # the scaling factor is 1 / std of the latents of held-out frames (seed + 1), as CogVideoX's is
    held_out = FrameSource(VAEPretrainConfig(**{**cfg.__dict__, "seed": cfg.seed + 1})).batch(16, 1)
    assert vae.config.scaling_factor == pytest.approx(1.0 / latent_std(vae, held_out), rel=1e-4)
    # every parameter group was trained from the seeded initial VAE (8 steps are too few to measure
    # reconstruction; test_committed_tiny_vae_reconstructs_the_synthetic_world checks a full run's result)
    start = new_tiny_vae(cfg.seed, cfg.init_logvar).state_dict()
    moved = {k for k, v in vae.state_dict().items() if k in start and not torch.equal(v, start[k])}
    assert any(k.startswith("encoder.") for k in moved) and any(k.startswith("decoder.") for k in moved)
    assert reconstruction_error(vae, x) < 64.0  # finite and in range (0-255 scale)

    model = tmp_path / "model"
    import shutil

    shutil.copytree(tiny_model_dir, model)
    install_vae(out, model)
    assert json.loads((model / "vae" / "config.json").read_text())["scaling_factor"] == vae.config.scaling_factor
    with pytest.raises(FileNotFoundError, match="model_index.json"):
        install_vae(out, tmp_path)


def test_demo_train_config_is_the_recipe_on_the_frozen_base(tmp_path):
    from vivid.cli.demo import QUICK, DemoPlan, plan_for, train_config
    from vivid.model.cogvideox_spec import CogVideoXSpec

    cfg = train_config(DemoPlan(), tmp_path / "m", tmp_path / "d", tmp_path / "t", seed=0)
    assert not cfg.model.train_base and cfg.model.objective == "edit"  # base frozen: LoRA + patch embedding
    assert cfg.model.lora_rank == CogVideoXSpec.lora_rank and tuple(cfg.model.lora_targets) == CogVideoXSpec.lora_targets
    assert cfg.data.delete_ratio == 0.25 and cfg.data.kive_prob == 0.5  # the recipe's values
    assert cfg.data.image_video_ratio == DemoPlan().image_video_ratio
    assert cfg.data.frames == 9 and (cfg.data.height, cfg.data.width) == (64, 96)
    assert cfg.model.pretrained == str(tmp_path / "m") and cfg.optim.max_steps == DemoPlan().train_steps
    assert cfg.optim.max_minutes == DemoPlan().train_minutes > 0  # the time budget holds on a busy CPU too
    assert cfg.validation.every_n_steps == DemoPlan().curve_every and cfg.validation.num_samples > 0
    quick = plan_for(argparse.Namespace(quick=True, steps=None, train_minutes=None))
    assert quick == QUICK and quick.train_minutes < DemoPlan().train_minutes
    assert plan_for(argparse.Namespace(quick=False, steps=7, train_minutes=None)).train_steps == 7
    assert plan_for(argparse.Namespace(quick=False, steps=None, train_minutes=0)).train_minutes == 0
    with pytest.raises(ValueError, match="--steps"):
        plan_for(argparse.Namespace(quick=False, steps=0, train_minutes=None))
    with pytest.raises(ValueError, match="--train-minutes must be >= 0"):
        plan_for(argparse.Namespace(quick=False, steps=None, train_minutes=-1.0))


def _report(method: str, tasks: dict) -> dict:
    return {"method": method, **tasks, "samples": []}


def test_demo_targets_per_shape_misses_and_curve_points(tmp_path):
    from vivid.cli.demo import curve_points, format_comparison, per_shape, targets
    from vivid.evaluation import EvalSample

    vivid = _report("vivid", {"add": {"n": 2, "bp": 4.0, "synthetic_ta": 0.5}, "modify": {"n": 2, "bp": 4.0,
                              "synthetic_ta": 0.9}, "delete": {"n": 1, "bp": 3.0, "remnant": 0.02}})
    vivid["samples"] = [
        {"id": "a0", "task": "add", "synthetic_match": True, "found_color": "red", "found_shape": "circle"},
        {"id": "a1", "task": "add", "synthetic_match": False, "found_color": "red", "found_shape": "square"},
        {"id": "m0", "task": "modify", "synthetic_match": True, "found_color": "blue", "found_shape": "square"},
    ]
    untrained = _report("untrained", {"add": {"n": 2, "bp": 10.0}, "modify": {"n": 2, "bp": 7.0},
                                      "delete": {"n": 1, "bp": 8.0, "remnant": 0.5}})
    untrained["samples"] = [{"id": "a0", "task": "add", "synthetic_match": False},
                            {"id": "m0", "task": "modify", "synthetic_match": False}]
    inpaint = _report("inpaint", {"delete": {"n": 1, "bp": 0.0, "remnant": 0.0}})
    got = targets({"vivid": vivid, "untrained": untrained, "inpaint": inpaint})
    assert not got["synthetic_ta_add"]["met"] and got["synthetic_ta_modify"]["met"]
    assert got["bp_add"]["met"] and not got["bp_modify"]["met"]  # 4.0 <= 5.0; 4.0 > 3.5
    assert not got["remnant"]["met"] and got["remnant"]["goal"] == "<= 0.010"
    frames, mask = np.zeros((1, 8, 8, 3), np.uint8), np.ones((1, 8, 8), bool)
    samples = [EvalSample(id=i, task=t, frames=frames, mask=mask, prompt="", attributes={"shape": sh})
               for i, t, sh in (("a0", "add", "circle"), ("a1", "add", "triangle"), ("m0", "modify", "square"))]
    shapes = per_shape(vivid, samples)
    assert shapes["add"]["triangle"] == {"n": 1, "synthetic_ta": 0.0, "misses": {"red square": 1}}
    assert shapes["add"]["circle"]["synthetic_ta"] == 1.0 and shapes["modify"]["square"]["n"] == 1
    step = tmp_path / "validation" / "step-5"
    step.mkdir(parents=True)
    (step / "scores.json").write_text(json.dumps({"step": 5, "samples": [
        {"id": "a0", "task": "add", "match": True}, {"id": "m0", "task": "modify", "match": False},
        {"id": "zz", "task": "add", "match": False}]}))  # not in the subset: left out
    points = curve_points(tmp_path, untrained, vivid, 10, {"a0", "m0"})
    assert points == {"add": [(0, 0.0), (5, 1.0), (10, 1.0)], "modify": [(0, 0.0), (5, 0.0), (10, 1.0)]}
    table = format_comparison({"vivid": vivid, "untrained": untrained, "inpaint": inpaint})
    assert "| from scratch (published) | add | 32 | 11.26 |" in table


def test_learning_curve_png(tmp_path):
    from vivid.evaluation.figures import moving_average, read_losses, write_learning_curve

    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text("".join(json.dumps({"step": i, "loss": 1.0 / i, "skipped": i == 3}) + "\n"
                               for i in range(1, 21)))
    steps, losses = read_losses(metrics)
    assert len(steps) == 19 and 3 not in steps
    assert np.allclose(moving_average(np.array([1.0, 3.0, 5.0]), 2), [1.0, 2.0, 4.0])
    path = write_learning_curve(tmp_path / "curve.png", metrics, {"add": [(0, 0.1), (20, 0.7)], "modify": []})
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curve.png", "metrics.jsonl"]  # no temporaries left


def test_init_tiny_pretrained_base_and_vae(tmp_path, capsys):
    from safetensors.torch import load_file

    from vivid.cli import main
    from vivid.model.configs import TINY_BASE_OVERRIDES
    from vivid.model.tiny import TINY_BASE_DIR, TINY_VAE_DIR

    assert main(["init-tiny", str(tmp_path / "base"), "--pretrained", "base"]) == 0
    assert "pretrained base" in capsys.readouterr().out
    for part, source in (("transformer", TINY_BASE_DIR / "transformer"), ("text_encoder", TINY_BASE_DIR / "text_encoder"),
                         ("vae", TINY_VAE_DIR)):
        for weights in source.glob("*.safetensors"):
            got, want = load_file(tmp_path / "base" / part / weights.name), load_file(weights)
            assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)
    assert main(["init-tiny", str(tmp_path / "vae"), "--pretrained", "vae"]) == 0
    config = json.loads((tmp_path / "vae" / "transformer" / "config.json").read_text())
    assert all(config[k] == v for k, v in TINY_BASE_OVERRIDES.items())  # the base's architecture, random weights
    assert main(["init-tiny", str(tmp_path / "wan"), "--family", "wan", "--pretrained", "base"]) == 2
    assert "--pretrained is for the tiny CogVideoX family" in capsys.readouterr().err


def test_demo_rejects_negative_threads(tmp_path, capsys):
    from vivid.cli import main

    assert main(["demo", "--out", str(tmp_path / "demo"), "--threads", "-1"]) == 2
    assert "vivid demo: error: --threads must be >= 0, got -1" in capsys.readouterr().err
    assert not (tmp_path / "demo").exists()  # refused before anything is written


def test_committed_tiny_vae_reconstructs_the_synthetic_world(synth_dir):
    """The VAE in vivid/model/tiny_vae (see its README) must keep flat colours recognisable."""
    from diffusers import AutoencoderKLCogVideoX

    from train.vae_pretrain import FrameSource, VAEPretrainConfig, reconstruction_error
    from vivid.model.tiny import TINY_VAE_DIR as COMMITTED_VAE

    if not (COMMITTED_VAE / "config.json").is_file():
        pytest.skip("no committed tiny VAE")
    vae = AutoencoderKLCogVideoX.from_pretrained(COMMITTED_VAE).eval()
    source = FrameSource(VAEPretrainConfig(manifests=[str(synth_dir / "train-*.jsonl")], seed=1))
    images, clip = source.batch(4, 1), source.batch(1, 9)
    assert reconstruction_error(vae, images) < 10.0  # 5.7 measured on 16 held-out images
    assert reconstruction_error(vae, clip) < 15.0  # 10.4 on clips
    untrained = AutoencoderKLCogVideoX(**vae.config)
    assert reconstruction_error(untrained, images) > 25.0
