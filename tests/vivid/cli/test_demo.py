"""The demo's stages in miniature: VAE pre-training and installation, the demo's train config, argument checks."""

from __future__ import annotations

import argparse
import json

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


def test_demo_train_config_is_the_tiny_recipe(tmp_path):
    from vivid.cli.demo import DemoPlan, plan_for, train_config

    cfg = train_config(DemoPlan(), tmp_path / "m", tmp_path / "d", tmp_path / "t", seed=0)
    assert (cfg.data.height, cfg.data.width, cfg.data.frames) == (64, 96, 9)
    assert cfg.data.image_video_ratio == DemoPlan().image_video_ratio and cfg.model.train_base
    assert cfg.data.delete_ratio == 0.25 and cfg.data.kive_prob == 0.5
    assert cfg.model.pretrained == str(tmp_path / "m") and cfg.optim.max_steps == DemoPlan().train_steps
    assert cfg.optim.max_minutes == DemoPlan().train_minutes > 0  # the 20-minute budget holds on a busy CPU too
    quick = plan_for(argparse.Namespace(quick=True, steps=None, train_minutes=None))
    assert quick.train_steps < DemoPlan().train_steps
    assert plan_for(argparse.Namespace(quick=False, steps=7, train_minutes=None)).train_steps == 7
    assert plan_for(argparse.Namespace(quick=False, steps=None, train_minutes=0)).train_minutes == 0
    with pytest.raises(ValueError, match="--steps"):
        plan_for(argparse.Namespace(quick=False, steps=0, train_minutes=None))
    with pytest.raises(ValueError, match="--train-minutes must be >= 0"):
        plan_for(argparse.Namespace(quick=False, steps=None, train_minutes=-1.0))


def test_demo_rejects_negative_threads(tmp_path, capsys):
    from vivid.cli import main

    assert main(["demo", "--out", str(tmp_path / "demo"), "--threads", "-1"]) == 2
    assert "vivid demo: error: --threads must be >= 0, got -1" in capsys.readouterr().err
    assert not (tmp_path / "demo").exists()  # refused before anything is written


def test_committed_tiny_vae_reconstructs_the_synthetic_world(synth_dir):
    """The VAE in vivid/model/tiny_vae (see its README) must keep flat colours recognisable."""
    from diffusers import AutoencoderKLCogVideoX

    from train.vae_pretrain import FrameSource, VAEPretrainConfig, reconstruction_error
    from vivid.cli.demo import COMMITTED_VAE

    if not (COMMITTED_VAE / "config.json").is_file():
        pytest.skip("no committed tiny VAE")
    vae = AutoencoderKLCogVideoX.from_pretrained(COMMITTED_VAE).eval()
    source = FrameSource(VAEPretrainConfig(manifests=[str(synth_dir / "train-*.jsonl")], seed=1))
    images, clip = source.batch(4, 1), source.batch(1, 9)
    assert reconstruction_error(vae, images) < 10.0  # 5.7 measured on 16 held-out images
    assert reconstruction_error(vae, clip) < 15.0  # 10.4 on clips
    untrained = AutoencoderKLCogVideoX(**vae.config)
    assert reconstruction_error(untrained, images) > 25.0
