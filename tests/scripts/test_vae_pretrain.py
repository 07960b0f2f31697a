"""scripts/vae_pretrain.py, the one-off script that trained the committed tiny VAE (vivid/model/tiny_vae): it
learns and sets the scaling factor, installs into a model folder, and the committed VAE still reconstructs the
synthetic world; the script runs from the command line."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from tests.conftest import REPO_ROOT as ROOT


@pytest.fixture
def on_path(monkeypatch):
    """scripts/ on sys.path, as when the script runs."""
    monkeypatch.syspath_prepend(str(ROOT / "scripts"))


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory):
    from data_loaders.synthetic import write_synthetic_dataset

    out = tmp_path_factory.mktemp("synth")
    write_synthetic_dataset(out, videos=2, images=2, eval_per_task=1, seed=5)
    return out


def test_vae_pretraining_learns_and_sets_the_scaling_factor(tmp_path, synth_dir, tiny_model_dir, on_path):
    from diffusers import AutoencoderKLCogVideoX

    from vae_pretrain import (
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


def test_committed_tiny_vae_reconstructs_the_synthetic_world(synth_dir, on_path):
    """The VAE in vivid/model/tiny_vae (see its README) must keep flat colours recognisable."""
    from diffusers import AutoencoderKLCogVideoX

    from vae_pretrain import FrameSource, VAEPretrainConfig, reconstruction_error
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


def test_the_script_runs_from_anywhere(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "vae_pretrain.py"), "--help"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "python scripts/vae_pretrain.py" in proc.stdout and "--init-from" in proc.stdout
