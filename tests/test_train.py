"""Training: configs, the loss, checkpoints, non-finite losses, an end-to-end tiny run (CPU)."""

from __future__ import annotations

import json
import re
import math
from pathlib import Path

import pytest
import torch

from train.config import ConfigError, TrainConfig, load_config

REPO = Path(__file__).resolve().parents[1]
TINY_YAML = REPO / "configs" / "tiny.yaml"


@pytest.fixture(scope="session")
def synth_data(tmp_path_factory) -> Path:
    from vivid.cli import main

    out = tmp_path_factory.mktemp("synth") / "data"
    assert main(["data", "synth", "--out", str(out), "--videos", "3", "--images", "6", "--eval", "1",
                 "--frames", "5"]) == 0
    return out


def tiny_overrides(data: Path, out: Path, *extra: str) -> list[str]:
    """configs/tiny.yaml made smaller still for tests: 5 frames at 32x64."""
    return [
        f"data.train_manifests=[{data}/train-*.jsonl]", f"data.eval_manifests=[{data}/eval-*.jsonl]",
        "data.frames=5", "data.height=32", "data.width=64", "data.num_workers=0", "data.image_batch_size=2",
        "data.image_video_ratio=1.0", "validation.every_n_steps=0", f"checkpoint.output_dir={out}",
        "logging.wandb=disabled", *extra,
    ]


def read_metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line]


# --------------------------------------------------------------------------- config


def test_config_loads_with_typed_overrides():
    c = load_config(TINY_YAML, ["optim.lr=1e-4", "data.frames=5", "model.lora_targets=[to_q, to_v]",
                                "optim.betas=[0.9, 0.99]", "logging.wandb=offline", "logging.run_name=null"])
    assert isinstance(c, TrainConfig)
    assert c.optim.lr == 1e-4 and isinstance(c.optim.lr, float)  # YAML reads "1e-4" as a string
    assert c.data.frames == 5 and c.model.lora_targets == ["to_q", "to_v"]
    assert c.optim.betas == [0.9, 0.99] and c.logging.wandb == "offline" and c.logging.run_name is None
    assert c.model.pretrained == "tiny" and c.mixed_precision == "no"


def test_vivid_5b_config_is_the_paper_recipe():
    c = load_config(REPO / "configs" / "vivid-5b.yaml")
    assert (c.data.height, c.data.width, c.data.frames) == (480, 720, 49)
    assert (c.model.lora_rank, c.model.lora_alpha) == (32, 32)
    assert c.model.pretrained == "THUDM/CogVideoX-5b" and c.mixed_precision == "bf16"
    assert c.model.gradient_checkpointing and c.data.image_video_ratio == 10 and c.data.delete_ratio == 0.25
    assert c.data.kive_prob == 0.5


@pytest.mark.parametrize(
    "override, message",
    [
        ("optim.lrr=1", "optim.lrr"),
        ("nosuch.key=1", "nosuch"),
        ("data.frames=six", "data.frames"),
        ("data.frames=6", "4k+1"),
        ("optim.max_steps=1.5", "optim.max_steps"),
        ("mixed_precision=fp8", "mixed_precision"),
        ("model.gradient_checkpointing=maybe", "model.gradient_checkpointing"),
        ("optim.lr_scheduler=cosine_annealing", "optim.lr_scheduler"),
        ("optim.lr", "section.key=value"),
    ],
)
def test_config_errors_name_the_key(override, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(TINY_YAML, [override])


def test_config_missing_file_and_unknown_yaml_key(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_config(tmp_path / "none.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim:\n  lr: 1.0e-4\n  warmpu_steps: 3\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: unknown key optim\.warmpu_steps"):
        load_config(bad)


def test_cli_train_bad_key_is_one_line_error(capsys):
    from vivid.cli import main

    assert main(["train", "--config", str(TINY_YAML), "optim.lrr=1"]) == 2
    err = capsys.readouterr().err
    assert "optim.lrr" in err and "Traceback" not in err


# --------------------------------------------------------------------------- the step


def _hand_batch(frames=5, height=32, width=64, seed=0) -> dict:
    g = torch.Generator().manual_seed(seed)
    video = torch.randint(0, 256, (1, frames, 3, height, width), dtype=torch.uint8, generator=g)
    mask = torch.zeros(1, frames, 1, height, width, dtype=torch.uint8)
    mask[..., 8:24, 16:48] = 1
    return dict(video=video, masked_video=video * (1 - mask), mask=mask, prompt=["a red ball"], id=["x"])


def test_loss_is_finite_and_decreases_on_a_tiny_batch():
    from train.step import encode_prompts, training_step
    from vivid.model.tiny import build_tiny_components
    from vivid.model.transformer import make_vivid_transformer

    c = build_tiny_components(seed=0)
    transformer = make_vivid_transformer(c["transformer"], rank=8, alpha=8)
    c["vae"].requires_grad_(False)
    batch = _hand_batch()
    embeds = encode_prompts(c["tokenizer"], c["text_encoder"], batch["prompt"], 16)
    params = [p for p in transformer.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=3e-3)
    losses = []
    for _ in range(6):  # the same timestep and noise every step: the loss must go down
        out = training_step(transformer, c["vae"], c["scheduler"], batch, embeds, optimizer,
                            generator=torch.Generator().manual_seed(7))
        losses.append(out["loss"])
    assert all(math.isfinite(x) for x in losses)
    assert losses[-1] < losses[0] * 0.98, losses


def test_encode_batch_rejects_bad_shapes():
    from train.step import encode_batch
    from vivid.model.tiny import build_tiny_components

    vae = build_tiny_components(seed=0)["vae"]
    batch = _hand_batch()
    batch["mask"] = batch["mask"][:, :, :, :16]
    with pytest.raises(ValueError, match="mask"):
        encode_batch(vae, batch)
    with pytest.raises(KeyError, match="video"):
        encode_batch(vae, {"mask": batch["mask"]})


# --------------------------------------------------------------------------- checkpoints


def _linear_accelerator(tmp_path):
    from accelerate import Accelerator

    from train import checkpoint as ckpt

    accelerator = Accelerator(cpu=True)
    model = torch.nn.Linear(4, 3)
    model.bias.requires_grad_(False)
    optimizer = torch.optim.AdamW([model.weight], lr=0.1)
    model, optimizer = accelerator.prepare(model, optimizer)
    ckpt.register_trainable_state_hooks(accelerator, lambda: True)
    return accelerator, model, optimizer


def _train_one(model, optimizer):
    model(torch.ones(2, 4)).square().sum().backward()
    optimizer.step()
    optimizer.zero_grad()


def test_checkpoint_atomic_keep_last_and_resume(tmp_path):
    from train import checkpoint as ckpt

    accelerator, model, optimizer = _linear_accelerator(tmp_path)

    def weights(folder: Path) -> None:
        folder.mkdir()
        (folder / "w.txt").write_text("ok")

    saved = {}
    for step in (1, 2, 3, 4):
        _train_one(model, optimizer)
        ckpt.save_checkpoint(accelerator, tmp_path, step, 0, 1, {"last_loss": step}, {"cursor": step}, weights,
                             keep_last=2)
        saved[step] = model.weight.detach().clone()
    names = [p.name for p in ckpt.list_checkpoints(tmp_path)]
    assert names == ["checkpoint-3", "checkpoint-4"]
    assert ckpt.latest_checkpoint(tmp_path).name == "checkpoint-4"
    assert sorted(p.name for p in (tmp_path / "checkpoints" / "checkpoint-4").iterdir()) == [
        "optimizer.bin", "random_states_0.pkl", "sampler_rank0.json", "trainable_0.safetensors",
        "trainer_state.json", "vivid-weights",
    ]

    # a save that dies half-way (after accelerate wrote its files) leaves checkpoint-4 the latest and intact
    def dying(folder: Path) -> None:
        raise KeyboardInterrupt("killed while writing the weights")

    _train_one(model, optimizer)
    with pytest.raises(KeyboardInterrupt):
        ckpt.save_checkpoint(accelerator, tmp_path, 5, 0, 1, {}, {"cursor": 5}, dying, keep_last=2)
    assert (tmp_path / "checkpoints" / ".tmp-checkpoint-5").is_dir()  # the torn write, never renamed
    assert ckpt.latest_checkpoint(tmp_path).name == "checkpoint-4"
    assert ckpt.resolve_resume("latest", tmp_path).name == "checkpoint-4"

    state, loader_state = ckpt.load_checkpoint(accelerator, ckpt.latest_checkpoint(tmp_path), 0, 1)
    assert loader_state == {"cursor": 4} and state["step"] == 4 and state["last_loss"] == 4
    torch.testing.assert_close(model.weight.detach(), saved[4], rtol=0, atol=0)

    # the next save cleans the torn folder
    ckpt.save_checkpoint(accelerator, tmp_path, 5, 0, 1, {}, {"cursor": 5}, weights, keep_last=2)
    assert not (tmp_path / "checkpoints" / ".tmp-checkpoint-5").exists()
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == ["checkpoint-4", "checkpoint-5"]

    with pytest.raises(ValueError, match="processes"):
        ckpt.load_checkpoint(accelerator, ckpt.latest_checkpoint(tmp_path), 0, 2)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        ckpt.resolve_resume("latest", tmp_path / "elsewhere")
    with pytest.raises(FileNotFoundError, match="not a checkpoint"):
        ckpt.resolve_resume(str(tmp_path), tmp_path)


# --------------------------------------------------------------------------- the trainer


def test_train_tiny_end_to_end(synth_data, tmp_path):
    """Two steps with validation, a checkpoint the pipeline loads, wandb offline, metrics.jsonl."""
    from train.trainer import train
    from vivid.pipeline import VIVIDPipeline

    run = tmp_path / "run"
    config = load_config(TINY_YAML, tiny_overrides(
        synth_data, run, "optim.max_steps=2", "checkpoint.every_n_steps=1", "checkpoint.keep_last=1",
        "validation.every_n_steps=2", "validation.steps=2", "logging.wandb=offline",
    ))
    result = train(config)
    assert result.step == 2 and math.isfinite(result.loss)
    assert result.checkpoint == run / "checkpoints" / "checkpoint-2"
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["checkpoint-2"]
    records = read_metrics(run)
    assert [r["step"] for r in records] == [1, 2]
    for r in records:
        assert {"step", "loss", "lr", "grad_norm", "samples_per_s", "skipped_samples"} <= set(r)
        assert math.isfinite(r["loss"]) and r["samples_per_s"] > 0
    assert list((run / "validation" / "step-2").glob("*.mp4"))
    assert list((run / "wandb").glob("offline-run-*"))
    pipe = VIVIDPipeline.from_vivid(result.checkpoint / "vivid-weights", base_model=str(run / "tiny-model"))
    trained = dict(pipe.transformer.named_parameters())["patch_embed.proj.weight"]
    assert trained[:, 16:].abs().sum() > 0  # the new channels moved away from zero


def test_train_skips_nonfinite_losses_then_stops(synth_data, tmp_path, monkeypatch):
    from train import step as step_lib
    from train.checkpoint import latest_checkpoint, list_checkpoints
    from train.trainer import NonFiniteLossError, train

    real = step_lib.compute_loss
    calls = {"n": 0}

    def flaky(*args, **kwargs):  # call 3 is NaN, and every call from 5 on
        calls["n"] += 1
        loss = real(*args, **kwargs)
        return loss * float("nan") if calls["n"] == 3 or calls["n"] >= 5 else loss

    monkeypatch.setattr(step_lib, "compute_loss", flaky)
    run = tmp_path / "run"
    config = load_config(TINY_YAML, tiny_overrides(
        synth_data, run, "optim.max_steps=20", "checkpoint.every_n_steps=1", "checkpoint.keep_last=0",
        "max_bad_steps=3",
    ))
    with pytest.raises(NonFiniteLossError, match="3 non-finite losses in a row.*checkpoint-4"):
        train(config)
    records = read_metrics(run)
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5, 6, 7]
    assert [r["skipped"] for r in records] == [False, False, True, False, True, True, True]
    assert records[2]["loss"] is None and records[3]["skipped_steps"] == 1
    assert [p.name for p in list_checkpoints(run)] == ["checkpoint-1", "checkpoint-2", "checkpoint-4"]
    assert latest_checkpoint(run).name == "checkpoint-4"
