"""Training: configs, the loss, checkpoints, non-finite losses, an end-to-end tiny run (CPU)."""

from __future__ import annotations

import json
import re
import math
from pathlib import Path

import pytest
import torch

from train.config import ConfigError, TrainConfig, load_config
from train.step import LRUCache, TrainStep
from vivid.model.cogvideox_spec import CogVideoXSpec

SPEC = CogVideoXSpec()

from tests.conftest import REPO_ROOT as REPO
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


def test_optimizer_is_fused_adamw_by_default_and_makes_the_same_update():
    """optim.fused_adam (default on) picks torch's fused AdamW kernel; it updates as the per-tensor loop does."""
    from train.optim import build_optimizer

    def trained(fused: bool) -> tuple[torch.optim.Optimizer, torch.Tensor]:
        config = load_config(TINY_YAML, ["optim.lr=1e-2", "optim.weight_decay=0.1", f"optim.fused_adam={fused}"])
        weight = torch.nn.Parameter(torch.linspace(-1, 1, 12).reshape(3, 4))
        optimizer = build_optimizer([weight], config, torch.device("cpu"))
        for step in range(3):
            weight.grad = torch.sin(weight.detach() * (step + 1))
            optimizer.step()
        return optimizer, weight.detach()

    fused, fused_weight = trained(True)
    plain, plain_weight = trained(False)
    assert fused.defaults["fused"] is True and not plain.defaults["fused"]
    assert not torch.equal(fused_weight, torch.linspace(-1, 1, 12).reshape(3, 4))
    torch.testing.assert_close(fused_weight, plain_weight, rtol=1e-6, atol=1e-7)
    assert load_config(TINY_YAML, []).optim.fused_adam is True


def test_vivid_5b_config_is_the_paper_recipe():
    c = load_config(REPO / "configs" / "vivid-5b.yaml")
    assert (c.data.height, c.data.width, c.data.frames) == (480, 720, 49)
    assert (c.model.lora_rank, c.model.lora_alpha) == (32, 32)
    assert c.model.pretrained == "THUDM/CogVideoX-5b" and c.mixed_precision == "bf16"
    assert c.model.gradient_checkpointing and c.data.image_video_ratio == 10 and c.data.delete_ratio == 0.25
    assert c.data.kive_prob == 0.5
    assert (480, 720) in c.data.sizes() and (432, 768) in c.data.sizes() and len(c.data.sizes()) == 7
    # the fast default: T5 resident on the GPU, not moved over PCIe at nearly every step (docs/training.md)
    assert c.offload_encoders is False and c.caption_embeddings is None


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


def _tiny_train_step(c: dict, **options) -> TrainStep:
    """The trainer's step on the tiny components `c`, on the CPU."""
    return TrainStep(SPEC, c["vae"], c["scheduler"], torch.device("cpu"), c["tokenizer"], c["text_encoder"], 16,
                     **options)


def test_loss_is_finite_and_decreases_on_a_tiny_batch():
    from vivid.model.tiny import build_tiny_components

    c = build_tiny_components(seed=0)
    transformer = SPEC.make_vivid(c["transformer"], rank=8, alpha=8)
    c["vae"].requires_grad_(False)
    batch = _hand_batch()
    step = _tiny_train_step(c)
    params = [p for p in transformer.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=3e-3)
    losses = []
    for _ in range(6):  # the same timestep and noise every step: the loss must go down
        loss = step.loss(transformer, batch, torch.Generator().manual_seed(7))
        loss.backward()  # then what the trainer's accelerator does on one process
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
    assert all(math.isfinite(x) for x in losses)
    assert losses[-1] < losses[0] * 0.98, losses


def test_mask_loss_weight_weights_the_edit_region_cells():
    """0 is CogVideoX's loss exactly; w > 0 is the mean with the edit region's latent cells weighted 1 + w."""
    from vivid.model.tiny import build_tiny_components

    c = build_tiny_components(seed=0)
    transformer = SPEC.make_vivid(c["transformer"], rank=8, alpha=8)
    torch.manual_seed(0)
    latents = torch.randn(1, 3, 16, 8, 12)
    conditions = torch.cat([torch.randn(1, 3, 16, 8, 12), torch.zeros(1, 3, 4, 8, 12)], dim=2)
    conditions[:, :, 16 + 1, 2:5, 3:7] = 1.0  # one packed mask channel marks a region in every latent frame

    def loss(weight, cond=conditions):
        with torch.no_grad():
            return float(SPEC.compute_loss(transformer, c["scheduler"], latents, cond, torch.zeros(1, 16, 64),
                                           torch.Generator().manual_seed(3), mask_loss_weight=weight))

    empty = conditions.clone()
    empty[:, :, 16:] = 0
    assert loss(4.0, empty) == pytest.approx(loss(0.0, empty), rel=1e-6)  # no edit region: nothing reweighted
    full = conditions.clone()
    full[:, :, 16] = 1
    assert loss(4.0, full) == pytest.approx(loss(0.0, full), rel=1e-6)  # all region: uniform weights
    # L(w) = (E_out + (1 + w) E_in) / (n_out + (1 + w) n_in): solve E_in, E_out from L(0) and L(4), predict L(9)
    n_in = 3 * 3 * 4 * 16  # latent frames x rows x columns x channels
    n_out = 3 * 8 * 12 * 16 - n_in
    l0, l4 = loss(0.0), loss(4.0)
    assert l4 != pytest.approx(l0, rel=1e-3)
    e_in = (l4 * (n_out + 5 * n_in) - l0 * (n_out + n_in)) / 4
    e_out = l0 * (n_out + n_in) - e_in
    assert loss(9.0) == pytest.approx((e_out + 10 * e_in) / (n_out + 10 * n_in), rel=1e-4)
    with pytest.raises(ValueError, match="mask_loss_weight"):
        loss(-1.0)


def test_encode_batch_rejects_bad_shapes():
    from vivid.model.tiny import build_tiny_components

    vae = build_tiny_components(seed=0)["vae"]
    batch = _hand_batch()
    batch["mask"] = batch["mask"][:, :, :, :16]
    with pytest.raises(ValueError, match="mask"):
        SPEC.encode_batch(vae, batch)
    with pytest.raises(KeyError, match="video"):
        SPEC.encode_batch(vae, {"mask": batch["mask"]})


def test_vae_latent_cache_returns_the_encoders_posteriors():
    """Cached posteriors equal fresh encodes; only new inputs are encoded; samples stay fresh per step."""
    from vivid.model.tiny import build_tiny_components

    c = build_tiny_components(seed=0)
    vae = c["vae"]
    a, b = _hand_batch(seed=0), _hand_batch(seed=1)
    both = {k: torch.cat([a[k], b[k]]) if torch.is_tensor(a[k]) else a[k] + b[k] for k in a}
    fresh_latents, fresh_conditions = SPEC.encode_batch(vae, both, torch.Generator().manual_seed(7))
    cache = LRUCache(max_items=8)
    step = _tiny_train_step(c, latent_cache=cache)
    step.encode_batch(a, torch.Generator().manual_seed(0))
    assert (cache.hits, cache.misses, len(cache)) == (0, 2, 2)  # video and masked video of `a`
    latents, conditions = step.encode_batch(both, torch.Generator().manual_seed(7))
    assert (cache.hits, cache.misses) == (2, 4)
    assert torch.allclose(latents, fresh_latents, atol=1e-5) and torch.allclose(conditions, fresh_conditions, atol=1e-5)
    again, _ = step.encode_batch(both, torch.Generator().manual_seed(8))
    assert cache.misses == 4 and not torch.allclose(again, latents)  # a new posterior sample, no new encode
    small = LRUCache(max_items=1)
    _tiny_train_step(c, latent_cache=small).encode_batch(a, None)
    assert len(small) == 1
    with pytest.raises(ValueError, match="max_items"):
        LRUCache(0)


def test_loss_with_every_parameter_trainable():
    """A fully trained transformer (no frozen weight to read the compute dtype from) still computes its loss."""
    from vivid.model.tiny import build_tiny_components

    c = build_tiny_components(seed=0)
    transformer = SPEC.make_vivid(c["transformer"], rank=4, alpha=4).requires_grad_(True)
    batch = _hand_batch()
    step = _tiny_train_step(c)
    latents, conditions = step.encode_batch(batch, torch.Generator().manual_seed(0))
    embeds = step.encode_prompts(batch["prompt"])
    loss = SPEC.compute_loss(transformer, c["scheduler"], latents, conditions, embeds, torch.Generator().manual_seed(0))
    assert torch.isfinite(loss)


# --------------------------------------------------------------------------- checkpoints


def _linear_accelerator(tmp_path):
    from accelerate import Accelerator

    from train import checkpoint as ckpt

    from diffusers.optimization import get_scheduler

    accelerator = Accelerator(cpu=True)
    model = torch.nn.Linear(4, 3)
    model.bias.requires_grad_(False)
    optimizer = torch.optim.AdamW([model.weight], lr=0.1)
    model, optimizer = accelerator.prepare(model, optimizer)
    scheduler = get_scheduler("constant_with_warmup", optimizer, num_warmup_steps=3, num_training_steps=10)
    return accelerator, ckpt.TrainingObjects(model=model, optimizer=optimizer, scheduler=scheduler)


def _train_one(objects):
    objects.model(torch.ones(2, 4)).square().sum().backward()
    objects.optimizer.step()
    objects.scheduler.step()
    objects.optimizer.zero_grad()


def test_checkpoint_atomic_keep_last_and_resume(tmp_path):
    from train import checkpoint as ckpt

    accelerator, objects = _linear_accelerator(tmp_path)
    model = objects.model

    def weights(folder: Path) -> None:
        folder.mkdir()
        (folder / "w.txt").write_text("ok")

    saved = {}
    for step in (1, 2, 3, 4):
        _train_one(objects)
        ckpt.save_checkpoint(accelerator, tmp_path, step, 0, 1, {"last_loss": step}, {"cursor": step}, weights,
                             keep_last=2, objects=objects)
        saved[step] = model.weight.detach().clone()
    names = [p.name for p in ckpt.list_checkpoints(tmp_path)]
    assert names == ["checkpoint-3", "checkpoint-4"]
    assert ckpt.latest_checkpoint(tmp_path).name == "checkpoint-4"
    assert sorted(p.name for p in (tmp_path / "checkpoints" / "checkpoint-4").iterdir()) == [
        "optimizer.json", "optimizer.safetensors", "rng_state_rank0.json", "rng_state_rank0.safetensors",
        "sampler_rank0.json", "scheduler.json", "trainable_0.safetensors", "trainer_state.json", "vivid-weights",
    ]  # safetensors and JSON only: no pickle

    # a save that dies half-way (after accelerate wrote its files) leaves checkpoint-4 the latest and intact
    def dying(folder: Path) -> None:
        raise KeyboardInterrupt("killed while writing the weights")

    _train_one(objects)
    with pytest.raises(KeyboardInterrupt):
        ckpt.save_checkpoint(accelerator, tmp_path, 5, 0, 1, {}, {"cursor": 5}, dying, keep_last=2, objects=objects)
    assert (tmp_path / "checkpoints" / ".tmp-checkpoint-5").is_dir()  # the torn write, never renamed
    assert ckpt.latest_checkpoint(tmp_path).name == "checkpoint-4"
    assert ckpt.resolve_resume("latest", tmp_path).name == "checkpoint-4"

    state, loader_state = ckpt.load_checkpoint(accelerator, ckpt.latest_checkpoint(tmp_path), 0, 1, objects=objects)
    assert loader_state == {"cursor": 4} and state["step"] == 4 and state["last_loss"] == 4
    torch.testing.assert_close(model.weight.detach(), saved[4], rtol=0, atol=0)

    # the next save cleans the torn folder
    ckpt.save_checkpoint(accelerator, tmp_path, 5, 0, 1, {}, {"cursor": 5}, weights, keep_last=2, objects=objects)
    assert not (tmp_path / "checkpoints" / ".tmp-checkpoint-5").exists()
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == ["checkpoint-4", "checkpoint-5"]

    with pytest.raises(ValueError, match="processes"):
        ckpt.load_checkpoint(accelerator, ckpt.latest_checkpoint(tmp_path), 0, 2, objects=objects)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        ckpt.resolve_resume("latest", tmp_path / "elsewhere")
    with pytest.raises(FileNotFoundError, match="not a checkpoint"):
        ckpt.resolve_resume(str(tmp_path), tmp_path)


def test_fp16_overflow_goes_through_the_scaler_which_skips_the_step_and_halves_its_scale(monkeypatch):
    """fp16 on a GPU, simulated on the CPU: accelerate's gradient scaler (a CPU torch.amp.GradScaler here). A
    forced inf gradient: that step is skipped, the scale halves and the next steps run (without the scaler's
    update the next clip raises "unscale_() has already been called")."""
    from accelerate import Accelerator
    from diffusers.optimization import get_scheduler

    from train.optim import optimizer_step

    accelerator = Accelerator(cpu=True)
    accelerator.native_amp = True  # what accelerate sets for fp16 on a GPU
    monkeypatch.setattr(accelerator.state, "_mixed_precision", "fp16")  # a shared singleton: restored after
    accelerator.scaler = torch.amp.GradScaler("cpu", init_scale=1024.0, growth_interval=1000)
    model = torch.nn.Linear(4, 3)
    params = list(model.parameters())
    model, optimizer = accelerator.prepare(model, torch.optim.AdamW(params, lr=0.1))
    scheduler = get_scheduler("constant", optimizer)
    applied, scales = [], []
    for step in range(4):
        before = model.weight.detach().clone()
        accelerator.backward(model(torch.ones(2, 4)).square().sum())
        if step == 1:
            model.weight.grad[0, 0] = float("inf")  # an fp16 overflow
        ok, norm = optimizer_step(accelerator, model, optimizer, scheduler, params, 1.0, True, step)
        applied.append(ok)
        scales.append(accelerator.scaler.get_scale())
        assert torch.equal(model.weight.detach(), before) != ok  # a skipped step leaves the weights alone
    assert applied == [True, False, True, True]
    assert scales == [1024.0, 512.0, 512.0, 512.0]
    assert scheduler.last_epoch == 3  # the schedule steps with the applied steps only


# --------------------------------------------------------------------------- the trainer


def test_train_tiny_end_to_end(synth_data, tmp_path):
    """Two steps with validation, a checkpoint the pipeline loads, wandb offline, metrics.jsonl."""
    from train.trainer import train
    from vivid.pipeline import VIVIDPipeline

    run = tmp_path / "run"
    config = load_config(TINY_YAML, tiny_overrides(
        synth_data, run, "optim.max_steps=2", "checkpoint.every_n_steps=1", "checkpoint.keep_last=1",
        "validation.every_n_steps=2", "validation.steps=2", "validation.num_samples=3", "logging.wandb=offline",
        "cache_vae_latents=true",
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
    scores = json.loads((run / "validation" / "step-2" / "scores.json").read_text())  # synthetic eval samples
    assert scores["step"] == 2 and {r["task"] for r in scores["samples"]} == {"add", "modify", "delete"}
    assert 0 <= scores["synthetic_ta_add"] <= 1 and 0 <= scores["remnant"] <= 1
    assert list((run / "wandb").glob("offline-run-*"))
    pipe = VIVIDPipeline.from_vivid(result.checkpoint / "vivid-weights", base_model=str(run / "tiny-model"))
    trained = dict(pipe.transformer.named_parameters())["patch_embed.proj.weight"]
    assert trained[:, 16:].abs().sum() > 0  # the new channels moved away from zero


def test_a_run_reads_each_manifest_once(synth_data, tmp_path, monkeypatch):
    """The train and eval manifests are read once per run, however often validation runs."""
    from collections import Counter

    import data_loaders.format as fmt
    from train.trainer import train

    reads: Counter = Counter()
    iter_manifest = fmt.iter_manifest

    def counting(path, *args, **kwargs):
        reads[Path(path).name] += 1
        return iter_manifest(path, *args, **kwargs)

    monkeypatch.setattr(fmt, "iter_manifest", counting)
    train(load_config(TINY_YAML, tiny_overrides(synth_data, tmp_path / "run", "optim.max_steps=2",
                                                "validation.every_n_steps=1", "validation.steps=1",
                                                "checkpoint.every_n_steps=0")))
    assert reads == {"train-00000.jsonl": 1, "eval-00000.jsonl": 1}


def test_a_mix_slot_no_record_can_fill_stops_the_run_before_step_1_naming_the_key(synth_data, tmp_path):
    """Entities that cover the whole frame leave deletion synthesis no background: with delete slots in the mix
    the run stops before its first step, in one line naming data.delete_ratio (not at the step that draws one)."""
    import shutil

    import numpy as np

    from data_loaders.errors import DataError
    from train.trainer import train
    from vivid.io.masks import MaskSource, write_mask_npz

    data = tmp_path / "data"
    shutil.copytree(synth_data, data)
    manifest = data / "train-00000.jsonl"
    lines = [json.loads(line) for line in manifest.read_text().splitlines()]
    for line in lines:
        if line["kind"] == "video":
            source = MaskSource(str(data / line["mask"]))
            full = f"train/{line['id']}_everywhere.npz"
            write_mask_npz(data / full, np.ones((source.count, source.height, source.width), bool))
            line["entity_masks"] = [full]
    manifest.write_text("".join(json.dumps(line) + "\n" for line in lines))
    run = tmp_path / "run"
    overrides = tiny_overrides(data, run, "optim.max_steps=2", "data.image_video_ratio=0", "data.delete_ratio=0.5")
    with pytest.raises(DataError) as raised:
        train(load_config(TINY_YAML, overrides))
    message = str(raised.value)
    assert "video deletion" in message and "data.delete_ratio=0" in message and "\n" not in message
    assert not (run / "metrics.jsonl").exists() or not (run / "metrics.jsonl").read_text()
    assert train(load_config(TINY_YAML, [*overrides, "data.delete_ratio=0"], ), overwrite=True).step == 2


def test_train_with_buckets_records_them_in_the_weights(synth_data, tmp_path, monkeypatch):
    """A tiny run on landscape and portrait data with two buckets: batches at both sizes, validation at the eval
    sample's bucket, the buckets saved in vivid_config.json and named in the exported model card."""
    import train.trainer as trainer_module
    from data_loaders.format import read_manifests, write_manifest
    from data_loaders.synthetic import write_synthetic_dataset
    from vivid.apps.export import export_weights

    portrait = write_synthetic_dataset(tmp_path / "portrait", videos=3, images=6, size=(96, 64), frames=5, seed=1,
                                       eval_per_task=1)
    records, _ = read_manifests([str(p) for p in portrait.train_manifests])
    for r in records:
        r.id = f"portrait-{r.id}"
    write_manifest(records, tmp_path / "portrait" / "renamed.jsonl")
    sizes: list[tuple[int, int]] = []
    real_encode = TrainStep.encode_batch

    def spy(self, batch, *args, **kwargs):
        sizes.append(tuple(batch["video"].shape[-2:]))
        return real_encode(self, batch, *args, **kwargs)

    monkeypatch.setattr(TrainStep, "encode_batch", spy)
    run = tmp_path / "run"
    config = load_config(TINY_YAML, tiny_overrides(
        synth_data, run, "optim.max_steps=6", "data.buckets=[[32,48],[48,32]]",
        f"data.train_manifests=[{synth_data}/train-*.jsonl,{tmp_path}/portrait/renamed.jsonl]",
        f"data.eval_manifests=[{portrait.eval_manifests[0]}]", "validation.every_n_steps=6",
        "validation.steps=1", "validation.num_samples=1",
    ))
    result = trainer_module.train(config)
    assert result.step == 6 and set(sizes) == {(32, 48), (48, 32)}
    weights = result.checkpoint / "vivid-weights"
    assert json.loads((weights / "vivid_config.json").read_text())["buckets"] == [[32, 48], [48, 32]]
    assert list((run / "validation" / "step-6").glob("*.mp4"))
    card = (export_weights(result.checkpoint, tmp_path / "export") / "README.md").read_text()
    assert "aspect-ratio buckets 32x48, 48x32" in card


def test_train_base_trains_and_saves_the_whole_transformer(synth_data, tmp_path):
    """model.train_base (tiny models from scratch): base weights train too, resume restores them, and the weights
    folder carries them, so the pipeline rebuilds the trained transformer exactly."""
    from safetensors.torch import load_file

    from train.trainer import train
    from vivid.pipeline import VIVIDPipeline

    def config(out: Path, steps: int):
        return load_config(TINY_YAML, tiny_overrides(synth_data, out, "model.train_base=true", "optim.lr=1e-2",
                                                     "checkpoint.every_n_steps=1", "checkpoint.keep_last=2",
                                                     f"optim.max_steps={steps}"))

    run = tmp_path / "run"
    train(config(run, 1))
    result = train(config(run, 2), resume="latest")
    assert result.step == 2
    straight = train(config(tmp_path / "straight", 2))  # the same two steps without the interruption
    weights = result.checkpoint / "vivid-weights"
    assert json.loads((weights / "vivid_config.json").read_text())["base_trained"] is True
    saved = load_file(weights / "transformer.safetensors")
    base = VIVIDPipeline.from_pretrained(run / "tiny-model").transformer.state_dict()
    key = "transformer_blocks.0.attn1.to_q.base_layer.weight"
    assert not torch.equal(saved[key], base["transformer_blocks.0.attn1.to_q.weight"])  # the base moved
    first = load_file(run / "checkpoints" / "checkpoint-1" / "vivid-weights" / "transformer.safetensors")
    assert not torch.equal(saved[key], first[key])  # and went on moving after the resume
    uninterrupted = load_file(straight.checkpoint / "vivid-weights" / "transformer.safetensors")
    for k, v in saved.items():
        assert torch.allclose(v, uninterrupted[k], atol=1e-6), k  # resume restored the base weights and their state
    pipe = VIVIDPipeline.from_vivid(weights, base_model=str(run / "tiny-model"))
    loaded = pipe.transformer.state_dict()
    for k, v in saved.items():
        assert torch.equal(loaded[k], v), k
    from vivid.apps.export import export_weights

    exported = export_weights(result.checkpoint, tmp_path / "export")
    assert (exported / "transformer.safetensors").read_bytes() == (weights / "transformer.safetensors").read_bytes()
    assert "`transformer.safetensors`: the base transformer's trained weights" in (exported / "README.md").read_text()


def test_train_stops_at_max_minutes_with_a_checkpoint_and_resumes(synth_data, tmp_path, caplog):
    """optim.max_minutes: past the limit the run saves a checkpoint at the step it reached and stops; resuming
    without the limit goes on to max_steps."""
    from train.trainer import train

    run = tmp_path / "run"
    common = ("optim.max_steps=4", "checkpoint.every_n_steps=0")
    with caplog.at_level("WARNING", logger="vivid.train"):
        stopped = train(load_config(TINY_YAML, tiny_overrides(synth_data, run, "optim.max_minutes=1e-9", *common)))
    assert stopped.step == 1 and stopped.checkpoint == run / "checkpoints" / "checkpoint-1"
    assert (stopped.checkpoint / "vivid-weights").is_dir()
    assert [r["step"] for r in read_metrics(run)] == [1]
    assert "optim.max_minutes=1e-09 reached: stopped at step 1 of 4" in caplog.text
    finished = train(load_config(TINY_YAML, tiny_overrides(synth_data, run, *common)), resume="latest")
    assert finished.step == 4 and [r["step"] for r in read_metrics(run)] == [1, 2, 3, 4]
    with pytest.raises(ConfigError, match="optim.max_minutes must be >= 0"):
        load_config(TINY_YAML, ["optim.max_minutes=-1"])


def test_train_skips_nonfinite_losses_then_stops(synth_data, tmp_path, monkeypatch):
    from train.checkpoint import latest_checkpoint, list_checkpoints
    from train.trainer import NonFiniteLossError, train

    real = CogVideoXSpec.compute_loss
    calls = {"n": 0}

    def flaky(*args, **kwargs):  # call 3 is NaN, and every call from 5 on
        calls["n"] += 1
        loss = real(*args, **kwargs)
        return loss * float("nan") if calls["n"] == 3 or calls["n"] >= 5 else loss

    monkeypatch.setattr(CogVideoXSpec, "compute_loss", flaky)
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


# --------------------------------------------------------------------------- audit fixes: config overrides


@pytest.mark.parametrize(
    "override, field, expected",
    [
        ("mixed_precision=no", ("mixed_precision",), "no"),  # YAML 1.1 reads `no` as false
        ("logging.run_name=2024", ("logging", "run_name"), "2024"),
        ("logging.run_name=off", ("logging", "run_name"), "off"),
        ("logging.run_name=2024-01-31", ("logging", "run_name"), "2024-01-31"),  # not a date
        ("logging.run_name=null", ("logging", "run_name"), None),
        ("model.pretrained=1.5", ("model", "pretrained"), "1.5"),
        ("model.lora_targets=[to_q, on, 1]", ("model", "lora_targets"), ["to_q", "on", "1"]),
        ("data.frames=9", ("data", "frames"), 9),  # numbers stay numbers where numbers are wanted
        ("model.gradient_checkpointing=no", ("model", "gradient_checkpointing"), False),
    ],
)
def test_overrides_keep_text_for_text_fields(override, field, expected):
    c = load_config(TINY_YAML, [override])
    value = c
    for part in field:
        value = getattr(value, part)
    assert value == expected and type(value) is type(expected)


def test_yaml_file_boolean_for_a_text_field_names_the_quoting(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("mixed_precision: no\n")
    with pytest.raises(ConfigError, match=r"mixed_precision: False is not one of .*quote"):
        load_config(bad)
    with pytest.raises(ConfigError, match="text_cache_max_items"):
        load_config(TINY_YAML, ["text_cache_max_items=0"])


# --------------------------------------------------------------------------- text-embedding cache


def test_text_embedding_cache_is_a_bounded_lru_and_encodes_only_missing_captions():
    from vivid.model.tiny import build_tiny_components

    c = build_tiny_components(seed=0)
    tokenizer, encoder = c["tokenizer"], c["text_encoder"].eval()  # eval: no dropout
    seen: list[int] = []
    encoder.register_forward_pre_hook(lambda module, args: seen.append(args[0].shape[0]))
    direct = {p: SPEC.encode_prompts(tokenizer, encoder, [p], 16)[0] for p in ("a cat", "a dog", "a red ball", "")}
    seen.clear()

    cache = LRUCache(max_items=2)
    step = _tiny_train_step(c, text_cache=cache)

    out = step.encode_prompts(["a cat", "a dog", "a cat"])
    assert seen == [2] and len(cache) == 2  # one T5 call for the two distinct captions
    torch.testing.assert_close(out[2], direct["a cat"])
    assert cache.missing(["a cat", "a dog"]) == []
    step.encode_prompts(["a dog"])  # a hit: no T5 call, "a dog" most recent
    assert seen == [2]
    # a hit and a new caption in one batch, with the cache full: the hit must survive its own batch's insert
    out = step.encode_prompts(["a dog", "a red ball"])
    assert seen == [2, 1] and len(cache) == 2
    torch.testing.assert_close(out[0], direct["a dog"])
    torch.testing.assert_close(out[1], direct["a red ball"])
    assert "a cat" not in cache and cache.missing(["a cat", "a dog", "a red ball"]) == ["a cat"]  # LRU evicted
    # more distinct captions than the cap in a single batch still encode correctly, and the cap holds
    out = step.encode_prompts(["a cat", "a dog", "", "a red ball"])
    assert len(cache) == 2
    for row, p in zip(out, ["a cat", "a dog", "", "a red ball"]):
        torch.testing.assert_close(row, direct[p])
    for e in cache._items.values():  # compact CPU copies, not views keeping a whole batch alive
        assert e.device.type == "cpu" and e.untyped_storage().nbytes() == e.numel() * e.element_size()
    with pytest.raises(ValueError, match="max_items"):
        LRUCache(0)


# --------------------------------------------------------------------------- distributed helpers


def test_distributed_rank_world_trusts_torch_distributed(monkeypatch, caplog):
    from types import SimpleNamespace

    from train import distributed

    fake = SimpleNamespace(process_index=0, num_processes=1)  # what accelerate reported under DeepSpeed on CPU
    monkeypatch.setattr(distributed.dist, "is_available", lambda: True)
    monkeypatch.setattr(distributed.dist, "is_initialized", lambda: True)
    monkeypatch.setattr(distributed.dist, "get_rank", lambda: 1)
    monkeypatch.setattr(distributed.dist, "get_world_size", lambda: 2)
    with caplog.at_level("WARNING", logger="vivid.train"):
        assert distributed.distributed_rank_world(fake) == (1, 2)
    assert "using torch.distributed" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="vivid.train"):
        assert distributed.distributed_rank_world(SimpleNamespace(process_index=1, num_processes=2)) == (1, 2)
    assert "using torch.distributed" not in caplog.text
    monkeypatch.setattr(distributed.dist, "is_initialized", lambda: False)
    assert distributed.distributed_rank_world(fake) == (0, 1)


def test_deepspeed_config_without_gpu_warns(monkeypatch, caplog):
    from types import SimpleNamespace

    from accelerate.utils import DistributedType

    from train import distributed

    cpu = SimpleNamespace(distributed_type=DistributedType.MULTI_CPU)
    monkeypatch.setattr(distributed.torch.cuda, "is_available", lambda: False)
    monkeypatch.delenv("ACCELERATE_USE_DEEPSPEED", raising=False)
    assert distributed.warn_if_deepspeed_without_gpu(cpu) is False
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")  # what `accelerate launch` with zero2.yaml sets
    with caplog.at_level("WARNING", logger="vivid.train"):
        assert distributed.warn_if_deepspeed_without_gpu(cpu) is True
    assert "no GPU" in caplog.text and "MULTI_CPU" in caplog.text
    assert distributed.warn_if_deepspeed_without_gpu(SimpleNamespace(distributed_type=DistributedType.DEEPSPEED)) is False


def test_deepspeed_step_skipped_reads_overflow_and_engine():
    from types import SimpleNamespace

    from train.distributed import deepspeed_step_skipped

    applied = SimpleNamespace(was_step_applied=lambda: True)
    not_applied = SimpleNamespace(was_step_applied=lambda: False)
    assert deepspeed_step_skipped(applied, SimpleNamespace(step_was_skipped=False)) is False
    assert deepspeed_step_skipped(applied, SimpleNamespace(step_was_skipped=True)) is True  # fp16/bf16 overflow
    assert deepspeed_step_skipped(not_applied, SimpleNamespace(step_was_skipped=False)) is True
    assert deepspeed_step_skipped(SimpleNamespace(), SimpleNamespace()) is False


# --------------------------------------------------------------------------- metrics file


def test_metrics_writer_strict_json_and_torn_last_line(tmp_path):
    from train.tracking import MetricsWriter

    path = tmp_path / "metrics.jsonl"
    writer = MetricsWriter(path, True, None)
    for step in (1, 2, 3):
        writer.write({"step": step, "loss": 0.5, "grad_norm": float("nan") if step == 2 else 1.0,
                      "samples_per_s": float("inf") if step == 3 else 2.0})

    def strict(text: str) -> dict:
        return json.loads(text, parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}"))

    records = [strict(line) for line in path.read_text().splitlines()]
    assert records[1]["grad_norm"] is None and records[2]["samples_per_s"] is None and records[0]["grad_norm"] == 1.0
    with open(path, "a") as f:
        f.write('{"step": 4, "loss": 0.')  # a crash mid-write
    MetricsWriter(path, True, resume_step=2)
    assert [strict(line)["step"] for line in path.read_text().splitlines()] == [1, 2]
    with open(path, "a") as f:
        f.write('{"step": 3, "lo')
    MetricsWriter(path, True, resume_step=5)  # torn line past every kept step, dropped too
    assert [strict(line)["step"] for line in path.read_text().splitlines()] == [1, 2]


# --------------------------------------------------------------------------- checkpoint edge cases


def test_checkpoint_resave_prune_and_abandon_use_renames(tmp_path):
    from train import checkpoint as ckpt

    accelerator, objects = _linear_accelerator(tmp_path)
    model = objects.model

    def weights(folder: Path) -> None:
        folder.mkdir()
        (folder / "w.txt").write_text("ok")

    for step in (1, 2, 3):
        _train_one(objects)
        ckpt.save_checkpoint(accelerator, tmp_path, step, 0, 1, {"n": step}, {"cursor": step}, weights,
                             rank_state={"skipped_samples": 10 + step}, objects=objects)
    assert ckpt.read_rank_state(ckpt.latest_checkpoint(tmp_path), 0) == {"skipped_samples": 13}
    assert ckpt.read_rank_state(tmp_path / "nowhere", 0) == {}
    root = tmp_path / "checkpoints"
    # the same step again replaces the folder (old one moved aside first, then deleted)
    ckpt.save_checkpoint(accelerator, tmp_path, 3, 0, 1, {"n": "again"}, {"cursor": 3}, weights, objects=objects)
    assert ckpt.read_trainer_state(root / "checkpoint-3")["n"] == "again"
    assert sorted(p.name for p in root.iterdir()) == ["checkpoint-1", "checkpoint-2", "checkpoint-3"]
    # a deletion that crashed half-way leaves a .trash-* folder, never a half-deleted checkpoint-N; cleaned next save
    (root / ".trash-checkpoint-0-dead").mkdir()
    assert ckpt.prune_checkpoints(tmp_path, 2) == [root / "checkpoint-1"]
    assert sorted(p.name for p in root.iterdir()) == [".trash-checkpoint-0-dead", "checkpoint-2", "checkpoint-3"]
    ckpt.save_checkpoint(accelerator, tmp_path, 4, 0, 1, {}, {"cursor": 4}, weights, objects=objects)
    assert sorted(p.name for p in root.iterdir()) == ["checkpoint-2", "checkpoint-3", "checkpoint-4"]
    # resuming from checkpoint-2: the newer ones are moved aside, kept, and no longer "latest"
    moved = ckpt.abandon_checkpoints_after(tmp_path, 2)
    assert [p.name.split(".abandoned-")[0] for p in moved] == ["checkpoint-3", "checkpoint-4"]
    assert all(p.is_dir() and (p / "trainer_state.json").is_file() for p in moved)
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == ["checkpoint-2"]
    assert ckpt.resolve_resume("latest", tmp_path).name == "checkpoint-2"
    assert ckpt.abandon_checkpoints_after(tmp_path, 2) == []


_DEEPSPEED_CHECKPOINT = """
import json, os, shutil, sys
import torch
from accelerate import Accelerator
from accelerate.utils import DeepSpeedPlugin
from diffusers.optimization import get_scheduler
from train import checkpoint as ckpt

out, marker = sys.argv[1], sys.argv[2]
accelerator = Accelerator(deepspeed_plugin=DeepSpeedPlugin(zero_stage=2, gradient_accumulation_steps=1,
                                                           gradient_clipping=1.0), mixed_precision="no")
accelerator.state.deepspeed_plugin.deepspeed_config["train_micro_batch_size_per_gpu"] = 1
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.Linear(64, 2))
model[0].requires_grad_(False)  # the frozen "base"
optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.1)
model, optimizer = accelerator.prepare(model, optimizer)
scheduler = get_scheduler("constant_with_warmup", optimizer, num_warmup_steps=4, num_training_steps=10)
objects = ckpt.TrainingObjects(model=model, optimizer=optimizer, scheduler=scheduler)
accelerator.backward(model(torch.ones(1, 64)).sum())
scheduler.step()
trained = {n: p.detach().clone() for n, p in model.module.named_parameters()}
path = ckpt.save_checkpoint(accelerator, out, 1, 0, 1, {}, {"cursor": 1}, lambda folder: None, objects=objects)
files = sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file())
model_file = os.path.join(path, "pytorch_model", "mp_rank_00_model_states.pt")
with torch.serialization.safe_globals(ckpt.deepspeed_safe_globals()):  # what the trainer's loader allows
    states = torch.load(model_file, weights_only=True)
with torch.no_grad():
    for p in model.module.parameters():
        if p.requires_grad:
            p.zero_()
scheduler.step()
state, loader_state = ckpt.load_checkpoint(accelerator, path, 0, 1, objects=objects)
restored = all(torch.equal(p, trained[n]) for n, p in model.module.named_parameters())
# a crafted pickle in place of the engine's model file: an error, and it never runs
class Evil:
    def __reduce__(self):
        return (exec, ("open(%r, 'w').write('pwned')" % marker,))
shutil.copy(model_file, model_file + ".good")
torch.save(Evil(), model_file)
try:
    ckpt.load_checkpoint(accelerator, path, 0, 1, objects=objects)
    crafted = "loaded"
except Exception as err:
    crafted = type(err).__name__
print("RESULT " + json.dumps({"is_deepspeed": ckpt.is_deepspeed(accelerator), "module_keys": sorted(states["module"]),
                              "restored": restored, "loader_state": loader_state, "files": files,
                              "last_epoch": scheduler.last_epoch, "crafted": crafted}))
"""


def test_deepspeed_checkpoint_leaves_out_frozen_weights(tmp_path):
    """A real DeepSpeed ZeRO-2 engine (on the CPU, one process): the checkpoint holds only the trainable weights
    (exclude_frozen_parameters) and loads back (load_module_strict=False) through the weights_only loader, with the
    scheduler restored from JSON; a crafted pickle in the engine's file is refused and never runs."""
    import os
    import socket
    import subprocess
    import sys

    pytest.importorskip("deepspeed")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    script = tmp_path / "ds_checkpoint.py"
    script.write_text(_DEEPSPEED_CHECKPOINT)
    marker = tmp_path / "pwned"
    env = dict(os.environ, PYTHONPATH=str(REPO), CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS="1", MASTER_ADDR="127.0.0.1",
               MASTER_PORT=str(port), RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", ACCELERATE_USE_DEEPSPEED="true")
    out = subprocess.run([sys.executable, str(script), str(tmp_path / "run"), str(marker)], env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(next(line for line in out.stdout.splitlines() if line.startswith("RESULT "))[7:])
    assert result["is_deepspeed"]
    assert result["module_keys"] == ["1.bias", "1.weight"]  # not 0.weight / 0.bias, the frozen layer
    assert result["restored"] and result["loader_state"] == {"cursor": 1} and result["last_epoch"] == 1
    assert "scheduler.json" in result["files"] and "rng_state_rank0.json" in result["files"]
    assert not [f for f in result["files"] if f.endswith(".pkl") or f.endswith(".bin")], result["files"]
    assert result["crafted"] == "UnpicklingError" and not marker.exists()


# --------------------------------------------------------------------------- trainer: resume bookkeeping, CLI errors


def test_resume_from_older_checkpoint_abandons_newer_keeps_counts_and_logs_step_lr(synth_data, tmp_path, monkeypatch):
    from data_loaders.loader import TrainLoader
    from train import checkpoint as ckpt
    from train.trainer import train

    real_iter = TrainLoader.__iter__

    def one_bad_per_batch(self):  # as if the loader had skipped one bad sample before each batch
        for batch in real_iter(self):
            self.tracker.counts["unreadable"] += 1
            yield batch

    monkeypatch.setattr(TrainLoader, "__iter__", one_bad_per_batch)
    run = tmp_path / "run"
    common = ("checkpoint.every_n_steps=1", "checkpoint.keep_last=0", "optim.lr=1e-3", "optim.warmup_steps=2")
    train(load_config(TINY_YAML, tiny_overrides(synth_data, run, "optim.max_steps=3", *common)))
    first = read_metrics(run)
    assert [r["skipped_samples"] for r in first] == [1, 2, 3]
    # the lr each step used: constant_with_warmup over 2 steps starts at 0
    assert [r["lr"] for r in first] == pytest.approx([0.0, 5e-4, 1e-3])
    assert all(isinstance(r["grad_norm"], float) for r in first)
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"step": 4, "lo')  # torn by a crash

    train(load_config(TINY_YAML, tiny_overrides(synth_data, run, "optim.max_steps=3", *common)),
          resume=str(run / "checkpoints" / "checkpoint-1"))
    second = read_metrics(run)
    assert [r["step"] for r in second] == [1, 2, 3]
    assert [r["skipped_samples"] for r in second] == [1, 2, 3]  # 1 saved with checkpoint-1, then one per step
    assert [r["lr"] for r in second] == pytest.approx([0.0, 5e-4, 1e-3])
    assert [r["loss"] for r in second] == pytest.approx([r["loss"] for r in first], abs=1e-6)
    abandoned = sorted(p.name.split(".abandoned-")[0] for p in (run / "checkpoints").glob("*.abandoned-*"))
    assert abandoned == ["checkpoint-2", "checkpoint-3"]
    assert [p.name for p in ckpt.list_checkpoints(run)] == ["checkpoint-1", "checkpoint-2", "checkpoint-3"]
    assert ckpt.read_trainer_state(ckpt.latest_checkpoint(run))["skipped_samples"] == 3


@pytest.mark.parametrize("error", ["nonfinite", "data"])
def test_cli_train_stopped_run_is_one_line_error(error, monkeypatch, capsys):
    from data_loaders.errors import DataError
    from train import trainer
    from vivid.cli import main

    def stopped(config, resume=None, overwrite=False):
        if error == "data":
            raise DataError("too many bad samples: 12 of the last 200 samples were bad")
        raise trainer.NonFiniteLossError("5 non-finite losses in a row (max_bad_steps=5) at step 9; stopped.")

    monkeypatch.setattr(trainer, "train", stopped)
    assert main(["train", "--config", str(TINY_YAML)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert ("too many bad samples" if error == "data" else "non-finite losses") in err
    from train.cli import main as train_main

    assert train_main(["--config", str(TINY_YAML)]) == 2  # `python -m train` / accelerate launch
    assert "train: error:" in capsys.readouterr().err
    from vivid.cli import CLIError

    with pytest.raises(CLIError) as raised:  # -v: the traceback, the original error chained
        main(["-v", "train", "--config", str(TINY_YAML)])
    assert isinstance(raised.value.__cause__, (DataError, trainer.NonFiniteLossError))


# --------------------------------------------------------------------------- a fresh run into a folder with a run


def _plant_previous_run(run: Path) -> dict[str, bytes]:
    """An earlier run's checkpoints 3000/4000/5000 and metrics.jsonl; returns {relative path: bytes}."""
    files = {"metrics.jsonl": b"".join(b'{"step": %d, "loss": 0.5}\n' % s for s in range(1, 5001, 1000)),
             "config.json": b'{"seed": 7}\n', "notes.txt": b"mine, not vivid's\n"}
    for step in (3000, 4000, 5000):
        files[f"checkpoints/checkpoint-{step}/trainer_state.json"] = b'{"step": %d, "world_size": 1}' % step
        files[f"checkpoints/checkpoint-{step}/sampler_rank0.json"] = b"{}"
    for rel, data in files.items():
        (run / rel).parent.mkdir(parents=True, exist_ok=True)
        (run / rel).write_bytes(data)
    return files


def test_fresh_train_into_a_run_folder_refuses_and_overwrite_moves_the_run_aside(synth_data, tmp_path, capsys):
    """Without --resume, a run folder holding checkpoints 3000/4000/5000 and metrics.jsonl is refused (one line,
    nothing touched, before any model work); --overwrite moves that run into previous-1/ and trains afresh."""
    from train import checkpoint as ckpt
    from vivid.cli import main
    from train.cli import main as train_main

    run = tmp_path / "run"
    planted = _plant_previous_run(run)
    args = ["train", "--config", str(TINY_YAML), *tiny_overrides(synth_data, run, "optim.max_steps=2",
                                                                 "checkpoint.every_n_steps=1")]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "checkpoint-5000" in err and "--resume latest" in err and "--overwrite" in err
    assert train_main(args[1:]) == 2 and "train: error:" in capsys.readouterr().err  # `python -m train`
    assert main([*args, "--resume", "latest", "--overwrite"]) == 2
    assert "pass one" in capsys.readouterr().err
    assert {str(p.relative_to(run)) for p in run.rglob("*") if p.is_file()} == set(planted)  # no tiny-model
    assert all((run / rel).read_bytes() == data for rel, data in planted.items())

    assert main([*args, "--overwrite"]) == 0
    previous = run / "previous-1"
    for rel, data in planted.items():  # every byte of the earlier run kept, in previous-1/ (the user's note stays)
        where = run / rel if rel == "notes.txt" else previous / rel
        assert where.read_bytes() == data, rel
    assert [p.name for p in ckpt.list_checkpoints(run)] == ["checkpoint-1", "checkpoint-2"]  # not pruned by 5000
    assert ckpt.resolve_resume("latest", run).name == "checkpoint-2"
    assert [r["step"] for r in read_metrics(run)] == [1, 2]
    assert main([*args, "--overwrite"]) == 0  # again: the second run goes to previous-2/
    assert [p.name for p in ckpt.list_checkpoints(run / "previous-2")] == ["checkpoint-1", "checkpoint-2"]
    assert (previous / "metrics.jsonl").read_bytes() == planted["metrics.jsonl"]


# --------------------------------------------------------------------------- no unpickling on resume


class _Evil:
    """Unpickling this runs code: it writes `marker`."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('pwned')",))


# every pickle accelerate's save_state wrote or load_state read, and DeepSpeed's engine files
_PICKLE_NAMES = ["optimizer.bin", "scheduler.bin", "scaler.pt", "custom_checkpoint_0.pkl", "random_states_0.pkl",
                 "pytorch_model.bin", "sampler.bin", "dl_state_dict.bin", "pytorch_model/mp_rank_00_model_states.pt",
                 "pytorch_model/zero_pp_rank_0_mp_rank_00_optim_states.pt"]


def _plant_pickles(checkpoint: Path, marker: Path) -> None:
    for name in _PICKLE_NAMES:
        (checkpoint / name).parent.mkdir(exist_ok=True)
        torch.save(_Evil(marker), checkpoint / name)


def test_state_tree_round_trips_without_pickle(tmp_path):
    """Tensors (any dtype, 0-d, shared storage), int keys, tuples, NumPy arrays, non-finite floats: exact."""
    import random

    import numpy as np

    from train import checkpoint as ckpt

    base = torch.arange(6, dtype=torch.float32)
    state = {"state": {0: {"step": torch.tensor(3.0), "exp_avg": base[:3], "exp_avg_sq": base[3:].double()}},
             "param_groups": [{"lr": 1e-3, "betas": (0.9, 0.95), "params": [0], "fused": None, "eps": float("inf")}],
             "python": random.getstate(), "numpy": np.random.get_state(), "bytes": torch.get_rng_state()}
    ckpt.save_state_tree(state, tmp_path, "s")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.json", "s.safetensors"]
    back = ckpt.load_state_tree(tmp_path, "s")
    assert back["param_groups"] == state["param_groups"] and back["python"] == state["python"]
    assert isinstance(back["param_groups"][0]["betas"], tuple) and list(back["state"]) == [0]
    for k, v in state["state"][0].items():
        assert torch.equal(back["state"][0][k], v) and back["state"][0][k].dtype == v.dtype
    assert torch.equal(back["bytes"], state["bytes"])
    assert back["numpy"][0] == "MT19937" and np.array_equal(back["numpy"][1], state["numpy"][1])
    assert back["numpy"][1].dtype == state["numpy"][1].dtype and back["numpy"][2:] == state["numpy"][2:]
    with pytest.raises(TypeError, match="without pickling"):
        ckpt.save_state_tree({"f": lambda: 0}, tmp_path, "bad")


def test_resume_never_unpickles_and_repeats_the_losses(synth_data, tmp_path):
    """Malicious pickles under every file name the old (accelerate) format and DeepSpeed used, planted in the
    checkpoint: resuming never runs them and repeats the uninterrupted run's losses exactly; a checkpoint in the
    old pickled format is refused with one line."""
    from train.trainer import train

    marker = tmp_path / "pwned"
    probe = tmp_path / "probe.bin"
    torch.save(_Evil(marker), probe)
    torch.load(probe, weights_only=False)  # the planted files are live: an unpickling load runs them
    assert marker.exists()
    marker.unlink()

    common = ("optim.max_steps=3", "checkpoint.every_n_steps=1", "checkpoint.keep_last=0")
    straight = tmp_path / "straight"
    train(load_config(TINY_YAML, tiny_overrides(synth_data, straight, *common)))
    run = tmp_path / "run"
    train(load_config(TINY_YAML, tiny_overrides(synth_data, run, "optim.max_steps=1", *common[1:])))
    first = run / "checkpoints" / "checkpoint-1"
    assert not [p for p in first.rglob("*") if p.suffix in (".pkl", ".bin", ".pt")]  # nothing pickled is written
    _plant_pickles(first, marker)
    train(load_config(TINY_YAML, tiny_overrides(synth_data, run, *common)), resume="latest")
    assert not marker.exists()
    assert [r["loss"] for r in read_metrics(run)] == [r["loss"] for r in read_metrics(straight)]  # exactly
    assert [r["lr"] for r in read_metrics(run)] == [r["lr"] for r in read_metrics(straight)]

    old = run / "checkpoints" / "checkpoint-2"  # as an older vivid wrote it: accelerate's pickles, no JSON state
    for name in ("scheduler.json", "optimizer.json", "optimizer.safetensors"):
        (old / name).unlink()
    _plant_pickles(old, marker)
    with pytest.raises(ValueError, match="older vivid as pickles .*never loaded"):
        train(load_config(TINY_YAML, tiny_overrides(synth_data, run, *common)), resume=str(old))
    assert not marker.exists()


def test_resume_latest_passes_over_a_corrupt_checkpoint_and_refuses_a_changed_lora_rank(synth_data, tmp_path,
                                                                                          caplog):
    """A truncated latest checkpoint: --resume latest resumes from the newest complete one, saying which and why
    (and repeats the uninterrupted run's losses); that checkpoint named itself is refused naming its file;
    resuming with another model.lora_rank is refused naming the key, before any model work."""
    from train import checkpoint as ckpt
    from train.trainer import train

    common = ("checkpoint.every_n_steps=1", "checkpoint.keep_last=0")
    straight = tmp_path / "straight"
    train(load_config(TINY_YAML, tiny_overrides(synth_data, straight, "optim.max_steps=3", *common)))
    run = tmp_path / "run"
    train(load_config(TINY_YAML, tiny_overrides(synth_data, run, "optim.max_steps=2", *common)))
    broken = run / "checkpoints" / "checkpoint-2" / "trainable_0.safetensors"
    broken.write_bytes(broken.read_bytes()[:-20])  # torn by a crash or a full disk
    with pytest.raises(ckpt.CheckpointError, match=r"checkpoint-2 is unusable \(trainable_0.safetensors: "):
        train(load_config(TINY_YAML, tiny_overrides(synth_data, run, "optim.max_steps=3", *common)),
              resume=str(broken.parent))
    with pytest.raises(ckpt.CheckpointError, match=r"model.lora_rank is 4 but .*checkpoint-1 .*model.lora_rank=8"):
        train(load_config(TINY_YAML, tiny_overrides(synth_data, run, "optim.max_steps=3", "model.lora_rank=4",
                                                    *common)), resume="latest")
    with caplog.at_level("WARNING"):
        train(load_config(TINY_YAML, tiny_overrides(synth_data, run, "optim.max_steps=3", *common)), resume="latest")
    assert "resuming from checkpoint-1: the newer checkpoint-2 is unusable (trainable_0.safetensors" in caplog.text
    assert [r["loss"] for r in read_metrics(run)] == [r["loss"] for r in read_metrics(straight)]
    assert [p.name for p in ckpt.list_checkpoints(run)] == ["checkpoint-1", "checkpoint-2", "checkpoint-3"]


def test_a_full_disk_during_a_checkpoint_is_one_line_and_the_earlier_ones_stay_usable(synth_data, tmp_path,
                                                                                      monkeypatch, capsys):
    """The disk fills while checkpoint-2 is written (safetensors' own error, as on a real full disk): `vivid train`
    says so in one line naming the latest complete checkpoint, no partial folder is left, and the run resumes
    from checkpoint-1 to the losses of an uninterrupted run."""
    from safetensors import SafetensorError

    from train import checkpoint as ckpt
    from vivid.cli import main

    common = ("checkpoint.every_n_steps=1", "checkpoint.keep_last=0")
    straight = tmp_path / "straight"
    assert main(["train", "--config", str(TINY_YAML),
                 *tiny_overrides(synth_data, straight, "optim.max_steps=3", *common)]) == 0
    save_file, calls = ckpt.save_file, []

    def filling_up(tensors, path, *args, **kwargs):
        calls.append(path)
        if "tmp-checkpoint-2" in str(path):
            raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")
        return save_file(tensors, path, *args, **kwargs)

    monkeypatch.setattr(ckpt, "save_file", filling_up)
    run = tmp_path / "run"
    args = ["train", "--config", str(TINY_YAML), *tiny_overrides(synth_data, run, "optim.max_steps=3", *common)]
    capsys.readouterr()
    assert main(args) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(err) == 1 and "could not write checkpoint-2" in err[0] and "No space left on device" in err[0]
    assert "latest complete checkpoint is checkpoint-1" in err[0]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["checkpoint-1"]
    monkeypatch.setattr(ckpt, "save_file", save_file)
    assert main([*args, "--resume", "latest"]) == 0
    assert [r["loss"] for r in read_metrics(run)][-2:] == [r["loss"] for r in read_metrics(straight)][-2:]


def test_the_trainer_trains_the_tiny_wan_through_its_spec(synth_data, tiny_wan_model_dir, tmp_path):
    """model.pretrained = a Wan folder: the same trainer loads it, trains it with Wan's flow-matching objective (the
    spec chosen from the folder), validates with VIVIDPipeline on Wan and saves weights of the wan family."""
    from train.trainer import train

    run = tmp_path / "run"
    result = train(load_config(TINY_YAML, tiny_overrides(
        synth_data, run, "optim.max_steps=2", f"model.pretrained={tiny_wan_model_dir}", "validation.every_n_steps=2",
        "validation.steps=1", "validation.num_samples=1",
    )))
    losses = [r["loss"] for r in read_metrics(run)]
    assert result.step == 2 and len(losses) == 2 and all(math.isfinite(x) for x in losses)
    assert json.loads((result.checkpoint / "vivid-weights" / "vivid_config.json").read_text())["family"] == "wan"
    assert list((run / "validation" / "step-2").glob("*.mp4"))


def test_text_to_video_objective_trains_the_whole_base_without_conditions(synth_data, tmp_path):
    """model.objective=text_to_video: no LoRA, no widened patch embedding, every weight trained, the checkpoint's
    transformer/ a diffusers folder that CogVideoXPipeline loads; the loss sees the target latents alone."""
    from diffusers import CogVideoXTransformer3DModel

    from train.trainer import train

    run = tmp_path / "run"
    config = load_config(TINY_YAML, tiny_overrides(
        synth_data, run, "optim.max_steps=2", "checkpoint.every_n_steps=0", "model.objective=text_to_video",
        "data.delete_ratio=0",
    ))
    result = train(config)
    assert result.step == 2 and math.isfinite(result.loss)
    folder = result.checkpoint / "transformer"
    assert not (result.checkpoint / "vivid-weights").exists()
    trained = CogVideoXTransformer3DModel.from_pretrained(folder)
    start = CogVideoXTransformer3DModel.from_pretrained(run / "tiny-model" / "transformer")
    assert trained.config.in_channels == start.config.in_channels == 16  # no condition channels
    assert not any("lora" in name for name in trained.state_dict())
    moved = [n for n, p in trained.named_parameters() if not torch.equal(p, start.get_parameter(n))]
    assert "patch_embed.proj.weight" in moved and any("ff.net" in n for n in moved)  # the base itself trained


def test_text_to_video_step_encodes_the_target_alone():
    """TrainStep(conditioned=False): the conditions have no channels, so the transformer input is the noise."""
    from vivid.model.tiny import build_tiny_components

    vae = build_tiny_components(0)["vae"].eval()
    batch = {"video": torch.randint(0, 255, (1, 5, 3, 32, 32), dtype=torch.uint8)}  # no masked_video, no mask
    step = TrainStep(SPEC, vae, None, torch.device("cpu"), conditioned=False)
    latents, conditions = step.encode_batch(batch, torch.Generator().manual_seed(0))
    assert latents.shape == (1, 2, 16, 4, 4) and conditions.shape == (1, 2, 0, 4, 4)
    assert SPEC.transformer_input(latents, conditions).shape == latents.shape


def test_text_to_video_mask_loss_weight_weights_the_entity_cells():
    """With the text-to-video objective the weighted region is the record's mask (the entity the caption names):
    an empty mask leaves the base's loss as it is, a mask reweights it the way `region` does in compute_loss."""
    from vivid.model.tiny import build_tiny_components

    c = build_tiny_components(seed=0)
    vae = c["vae"].eval()
    transformer = c["transformer"].eval()
    mask = torch.zeros(1, 5, 1, 32, 48)
    mask[:, :, :, 8:24, 16:40] = 1
    batch = {"video": torch.randint(0, 255, (1, 5, 3, 32, 48), dtype=torch.uint8), "mask": mask, "prompt": ["a"]}

    def loss(weight, b=batch):
        step = TrainStep(SPEC, vae, c["scheduler"], torch.device("cpu"), conditioned=False, mask_loss_weight=weight,
                         captions=lambda prompts, device: torch.zeros(len(prompts), 16, 64))
        with torch.no_grad():
            return float(step.loss(transformer, b, torch.Generator().manual_seed(0)))

    assert loss(4.0, dict(batch, mask=torch.zeros_like(mask))) == pytest.approx(loss(0.0), rel=1e-6)
    weighted = loss(4.0)
    assert weighted != pytest.approx(loss(0.0), rel=1e-3)
    generator = torch.Generator().manual_seed(0)  # the posterior sample first, then the timesteps and noise
    latents, conditions = TrainStep(SPEC, vae, None, torch.device("cpu"), conditioned=False).encode_batch(
        batch, generator)
    region = SPEC.pack_mask(mask).amax(dim=2, keepdim=True)
    with torch.no_grad():
        expected = float(SPEC.compute_loss(transformer, c["scheduler"], latents, conditions, torch.zeros(1, 16, 64),
                                           generator, 4.0, region))
    assert weighted == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("override, message", [
    ("validation.every_n_steps=5", "validation edits held-out samples"),
])
def test_text_to_video_objective_refuses_edit_only_options(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(TINY_YAML, ["model.objective=text_to_video", "validation.every_n_steps=0", override])
    with pytest.raises(ConfigError, match="objective"):
        load_config(TINY_YAML, ["model.objective=inpaint"])


def test_keyframe_batch_is_each_videos_frames_from_first_to_last_in_rows_of_its_own():
    from train.step import keyframe_batch

    batch = _hand_batch(frames=9)
    batch = {k: torch.cat([v, v.flip(1) if torch.is_tensor(v) else v]) if torch.is_tensor(v) else v * 2
             for k, v in batch.items()}
    out = keyframe_batch(batch, 4)
    assert out["video"].shape == (8, 1, 3, 32, 64) and out["mask"].shape == (8, 1, 1, 32, 64)
    for b in range(2):
        for j, f in enumerate([0, 3, 5, 8]):  # evenly spaced, both ends included
            assert torch.equal(out["video"][4 * b + j, 0], batch["video"][b, f])
            assert torch.equal(out["masked_video"][4 * b + j, 0], batch["masked_video"][b, f])
    assert out["prompt"] == ["a red ball"] * 8 and batch["video"].shape[1] == 9  # the batch itself unchanged


def test_joint_keyframe_training_attends_across_a_videos_frames_with_the_same_gradients_checkpointed():
    """A video batch drawn for joint keyframe training is its frames' one-frame edits under the joint attention:
    its loss is not those edits' loss without it, gradients reach the LoRA, the base's processors come back, and
    gradient checkpointing (whose backward would recompute the blocks with the base's attention) changes nothing."""
    from train.step import keyframe_batch
    from vivid.model.tiny import build_tiny_components

    c = build_tiny_components(seed=0)
    transformer = SPEC.make_vivid(c["transformer"], rank=8, alpha=8)
    c["vae"].requires_grad_(False)
    c["text_encoder"].eval()
    batch = _hand_batch(frames=9)
    processors = dict(transformer.attn_processors)
    transformer.enable_gradient_checkpointing()  # then off or on per call below

    def loss_and_grads(step, b, checkpointing=False):
        transformer.gradient_checkpointing = checkpointing
        transformer.zero_grad(set_to_none=True)
        loss = step.loss(transformer, b, torch.Generator().manual_seed(5))
        loss.backward()
        transformer.gradient_checkpointing = False
        grads = {n: p.grad.clone() for n, p in transformer.named_parameters() if p.grad is not None}
        return float(loss.detach()), grads

    joint, grads = loss_and_grads(_tiny_train_step(c, joint_keyframe_prob=1.0), batch)
    assert all(transformer.attn_processors[n] is p for n, p in processors.items())
    assert any("lora" in n and g.abs().sum() > 0 for n, g in grads.items())
    generator = torch.Generator().manual_seed(5)
    torch.rand((), generator=generator)  # what the joint step drew to decide
    apart = _tiny_train_step(c).loss(transformer, keyframe_batch(batch, 4), generator)
    assert joint != pytest.approx(float(apart.detach()), rel=1e-4)
    checkpointed, grads_checkpointed = loss_and_grads(_tiny_train_step(c, joint_keyframe_prob=1.0), batch, True)
    assert checkpointed == pytest.approx(joint, rel=1e-6)
    for name, g in grads.items():
        torch.testing.assert_close(grads_checkpointed[name], g, rtol=1e-4, atol=1e-6)
    assert _tiny_train_step(c, joint_keyframe_prob=1.0).joint_keyframes_of(_hand_batch(frames=1), None) == 0


def test_joint_keyframe_options_are_checked():
    with pytest.raises(ConfigError, match="joint_keyframe_prob must be in"):
        load_config(TINY_YAML, ["joint_keyframe_prob=1.5"])
    with pytest.raises(ConfigError, match="joint_keyframes must be >= 2"):
        load_config(TINY_YAML, ["joint_keyframes=1"])
    with pytest.raises(ConfigError, match="text_to_video"):
        load_config(TINY_YAML, ["model.objective=text_to_video", "validation.every_n_steps=0",
                                "joint_keyframe_prob=0.5"])


def test_joint_keyframe_training_runs_on_wan():
    """Wan's self-attention takes the joint processor in training too: finite loss, LoRA gradients, the base's
    processors back afterwards."""
    from vivid.model.tiny_wan import build_tiny_wan_components
    from vivid.model.wan_spec import WanSpec

    spec = WanSpec()
    c = build_tiny_wan_components(0)
    transformer = spec.make_vivid(c["transformer"], rank=8, alpha=8)
    c["vae"].requires_grad_(False)
    c["text_encoder"].eval()
    processors = dict(transformer.attn_processors)
    step = TrainStep(spec, c["vae"], c["scheduler"], torch.device("cpu"), c["tokenizer"], c["text_encoder"],
                     spec.max_text_length(c["tokenizer"], transformer), joint_keyframe_prob=1.0)
    loss = step.loss(transformer, _hand_batch(frames=9), torch.Generator().manual_seed(5))
    loss.backward()
    assert math.isfinite(loss.item())
    assert any("lora" in n and p.grad is not None and p.grad.abs().sum() > 0 for n, p in transformer.named_parameters())
    assert all(transformer.attn_processors[n] is p for n, p in processors.items())


def test_saved_weights_record_the_long_video_training_options():
    """vivid_config.json says whether clips can run between two keyframes and whether the joint pass was trained
    for: parallel mode reads both."""
    from train.models import weights_config

    config = load_config(TINY_YAML, ["data.kive_last_frame_prob=0.5", "joint_keyframe_prob=0.25"])
    saved = weights_config(config, "tiny")
    assert (saved.kive_last_frame_prob, saved.joint_keyframe_prob) == (0.5, 0.25)
    assert weights_config(load_config(TINY_YAML, ["joint_keyframe_prob=0"]), "tiny").joint_keyframe_prob == 0
