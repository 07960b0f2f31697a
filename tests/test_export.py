"""vivid export: weights + config + model card, loadable by VIVIDPipeline; --push-to-hub --dry-run."""

from __future__ import annotations

import json

import torch
import yaml

from vivid.cli import main


def _fake_checkpoint(tiny_model_dir, root):
    """A training checkpoint as the trainer writes it: vivid-weights/ + trainer_state.json."""
    from vivid.model.tiny import build_tiny_components
    from vivid.model.transformer import make_vivid_transformer
    from vivid.model.weights import VIVIDWeightsConfig, save_vivid_weights

    t = make_vivid_transformer(build_tiny_components(0)["transformer"], rank=4, alpha=4)
    with torch.no_grad():
        for name, p in t.named_parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.01)
    ckpt = root / "checkpoints" / "checkpoint-7"
    save_vivid_weights(t, ckpt / "vivid-weights", VIVIDWeightsConfig(base_model=str(tiny_model_dir), lora_rank=4,
                                                                    lora_alpha=4))
    state = {"step": 7, "world_size": 1, "last_loss": 0.5,
             "config": {"data": {"frames": 9, "height": 64, "width": 96}, "optim": {"lr": 1e-3},
                        "mixed_precision": "no"}}
    (ckpt / "trainer_state.json").write_text(json.dumps(state))
    return ckpt, t


def test_export_writes_weights_config_card_and_loads(tiny_model_dir, tmp_path, capsys):
    ckpt, trained = _fake_checkpoint(tiny_model_dir, tmp_path / "run")
    out = tmp_path / "export"
    # the run folder resolves to its newest checkpoint; the base model is recorded as a hub id
    assert main(["export", "--checkpoint", str(tmp_path / "run"), "--out", str(out),
                 "--base-model", "THUDM/CogVideoX-5b"]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["README.md", "patch_embed.safetensors", "pytorch_lora_weights.safetensors",
                     "training_config.json", "vivid_config.json"]
    card = (out / "README.md").read_text()
    meta = yaml.safe_load(card.split("---")[1])
    assert meta["base_model"] == "THUDM/CogVideoX-5b" and meta["library_name"] == "diffusers"
    assert meta["license"] == "other" and "vivid" in meta["tags"] and "lora" in meta["tags"]
    assert "LoRA rank 4" in card and "Trained 7 optimizer steps" in card and "VIVIDPipeline.from_vivid" in card
    assert json.loads((out / "vivid_config.json").read_text())["base_model"] == "THUDM/CogVideoX-5b"

    from vivid.pipeline import VIVIDPipeline

    pipe = VIVIDPipeline.from_vivid(out, base_model=str(tiny_model_dir))
    loaded = dict(pipe.transformer.named_parameters())
    for name, p in trained.named_parameters():
        if p.requires_grad:
            torch.testing.assert_close(loaded[name], p, rtol=0, atol=0)


def test_export_errors(tmp_path, capsys):
    assert main(["export", "--checkpoint", str(tmp_path / "none"), "--out", str(tmp_path / "o")]) == 2
    assert "no such folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["export", "--checkpoint", str(tmp_path / "empty"), "--out", str(tmp_path / "o")]) == 2
    assert "neither a VIVID weights folder" in capsys.readouterr().err


def test_export_of_an_incomplete_weights_folder_names_the_missing_file(tiny_model_dir, tmp_path, capsys):
    ckpt, _ = _fake_checkpoint(tiny_model_dir, tmp_path / "run")
    (ckpt / "vivid-weights" / "patch_embed.safetensors").unlink()
    assert main(["export", "--checkpoint", str(ckpt), "--out", str(tmp_path / "export")]) == 2
    assert "patch_embed.safetensors not found: incomplete VIVID weights folder" in capsys.readouterr().err
    assert not (tmp_path / "export").exists()


def test_push_to_hub_dry_run_lists_files_and_hides_the_token(tiny_model_dir, tmp_path, monkeypatch, capsys):
    secret = "hf_FAKEtoken1234567890abcdef"
    monkeypatch.setenv("HF_TOKEN", secret)
    ckpt, _ = _fake_checkpoint(tiny_model_dir, tmp_path / "run")
    assert main(["export", "--checkpoint", str(ckpt), "--out", str(tmp_path / "export"), "--push-to-hub",
                 "someone/vivid-tiny", "--private", "--dry-run"]) == 0
    captured = capsys.readouterr()
    text = captured.out + captured.err
    assert "would upload to https://huggingface.co/someone/vivid-tiny (private)" in text
    assert "HF_TOKEN environment variable" in text
    for name in ("README.md", "pytorch_lora_weights.safetensors", "patch_embed.safetensors", "vivid_config.json"):
        assert name in text
    assert secret not in text
    assert main(["export", "--checkpoint", str(ckpt), "--out", str(tmp_path / "e2"), "--push-to-hub",
                 "not-a-repo-id", "--dry-run"]) == 2
    assert secret not in capsys.readouterr().err


def test_from_vivid_downloads_a_hub_repo_and_loads_its_base_model(tiny_model_dir, tmp_path, monkeypatch):
    import huggingface_hub

    from vivid.pipeline import VIVIDPipeline

    ckpt, trained = _fake_checkpoint(tiny_model_dir, tmp_path / "run")
    out = tmp_path / "export"
    assert main(["export", "--checkpoint", str(ckpt), "--out", str(out), "--base-model", str(tiny_model_dir)]) == 0
    calls = []

    def snapshot_download(repo_id, **kwargs):  # the hub: the export folder is what `vivid export --push-to-hub` uploads
        calls.append((repo_id, kwargs))
        return str(out)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    pipe = VIVIDPipeline.from_vivid("someone/vivid-tiny")  # the base model comes from the repo's vivid_config.json
    assert [c[0] for c in calls] == ["someone/vivid-tiny"]
    assert set(calls[0][1]["allow_patterns"]) == {"pytorch_lora_weights.safetensors", "patch_embed.safetensors",
                                                   "vivid_config.json", "transformer.safetensors"}
    assert pipe.vivid_config.base_model == str(tiny_model_dir)
    loaded = dict(pipe.transformer.named_parameters())
    for name, p in trained.named_parameters():
        if p.requires_grad:
            torch.testing.assert_close(loaded[name], p, rtol=0, atol=0)
