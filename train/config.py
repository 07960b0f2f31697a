"""Training configuration: typed dataclasses loaded from YAML, with dotted `key=value` overrides.

    config = load_config("configs/tiny.yaml", ["optim.lr=1e-4", "data.frames=9"])

Loaded by `vivid.yaml_config`: an unknown key or a value of the wrong type is a `ConfigError` naming the key (and
the file); a field typed as text keeps the text as written on the command line (`mixed_precision=no`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from data_loaders.config import DataConfig
from vivid.model.spec import ModelSpecification
from vivid.yaml_config import ConfigError, build_dataclass, load_dataclass_config

TINY = "tiny"  # reserved `model.pretrained` value: the built-in tiny CogVideoX family


@dataclass
class ModelConfig:
    pretrained: str = TINY  # hub id, local diffusers folder, or "tiny" (written to <output_dir>/tiny-model)
    tiny_seed: int = 0
    # "edit": VIVID (noise | masked-video | mask latents in, LoRA + widened patch embedding trained);
    # "text_to_video": the base's own objective, no condition channels, every transformer weight trained, the
    # checkpoint's transformer/ a diffusers model folder (how vivid/model/tiny_base was pretrained)
    objective: Literal["edit", "text_to_video"] = "edit"
    # the recipe's LoRA, as every base's specification has it (vivid/model/spec.py)
    lora_rank: int = ModelSpecification.lora_rank
    lora_alpha: int = ModelSpecification.lora_alpha
    lora_targets: list[str] = field(default_factory=lambda: list(ModelSpecification.lora_targets))
    # train every base transformer weight too, beside the LoRA and patch embedding: only for tiny models trained
    # from scratch (a random base has nothing to keep; a LoRA on it learns shapes far slower, see docs/training.md).
    # The weights folder then carries the base transformer as well.
    train_base: bool = False
    gradient_checkpointing: bool = True
    vae_slicing: bool = False  # encode the batch one video at a time (lower peak memory)
    vae_tiling: bool = False


@dataclass
class OptimConfig:
    lr: float = 1e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])
    weight_decay: float = 1e-4
    eps: float = 1e-8
    warmup_steps: int = 100
    lr_scheduler: str = "constant_with_warmup"  # any name of diffusers.optimization.get_scheduler
    max_grad_norm: float = 1.0
    gradient_accumulation_steps: int = 1
    use_8bit_adam: bool = False  # bitsandbytes AdamW8bit; needs bitsandbytes and a GPU
    # torch's fused AdamW kernel (CPU and CUDA): the same update as the per-tensor loop, in one pass over all
    # weights, much faster than the loop where a model has many small tensors; false: torch's default
    fused_adam: bool = True
    max_steps: int = 1000  # optimizer steps
    # also stop, with a final checkpoint, once this run has trained for this many minutes (0 = no limit): for a
    # job with a wall-clock limit, or a demo with a time budget; resume with a larger limit to go on
    max_minutes: float = 0.0


@dataclass
class LoggingConfig:
    wandb: Literal["online", "offline", "disabled"] = "disabled"
    project: str = "vivid"
    run_name: str | None = None
    log_every: int = 1  # progress-bar / wandb cadence; metrics.jsonl gets every step
    log_sample_ids: bool = False  # write sample_ids_rank<r>.jsonl (which samples each rank trained on)


@dataclass
class ValidationConfig:
    every_n_steps: int = 0  # 0 = never
    num_samples: int = 2  # held-out eval samples edited at each validation
    steps: int | None = None  # denoising steps (None: the base's, `ModelSpecification.default_num_inference_steps`)
    guidance: float | None = None  # None: the base's (`default_guidance_scale`: CogVideoX 6, Wan2.1 5)
    seed: int = 0


@dataclass
class CheckpointConfig:
    output_dir: str = "runs/vivid"  # the run folder: checkpoints/, metrics.jsonl, validation/, tiny-model/
    every_n_steps: int = 500  # 0 = only the final checkpoint
    keep_last: int = 3  # 0 = keep all


@dataclass
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    mixed_precision: Literal["no", "bf16", "fp16"] = "bf16"
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    cache_text_embeddings: bool = False  # keep T5 embeddings of seen captions on the CPU
    text_cache_max_items: int = 1024  # LRU bound of that cache (1.85 MB per caption for CogVideoX-5B's T5)
    # keep VAE posteriors of inputs seen before (content-keyed, CPU): for small, revisited data sets such as the
    # tiny recipe's; useless on VIVID-10M, where inputs rarely recur (train/step.py, TrainStep.latent_cache)
    cache_vae_latents: bool = False
    vae_cache_max_items: int = 20000  # LRU bound (tiny recipe: 12 KB per image, 37 KB per 9-frame clip)
    # a folder of precomputed T5 caption embeddings (`vivid data embed-captions`): the trainer reads every prompt's
    # embedding there and never loads T5 (no T5 memory, no T5 time); a caption it lacks is an error at start
    caption_embeddings: str | None = None
    # keep the VAE and T5 on the CPU, moving each to the GPU only for its own forward pass (saves their GPU memory,
    # T5-XXL's ~9.5 GB above all, at the cost of moving it over PCIe for every step that has an uncached caption);
    # false keeps both resident on the GPU. See docs/training.md
    offload_encoders: bool = False
    seed: int = 0
    max_bad_steps: int = 5  # non-finite losses in a row before training stops
    # extra loss weight of the edit region's latent cells (0: CogVideoX's loss); with model.objective=text_to_video
    # the region is the record's mask (the entity the caption names)
    mask_loss_weight: float = 0.0
    # vivid's addition for `--long-mode parallel`: the share of video batches trained as their frames'
    # `joint_keyframes` one-frame edits under the joint keyframe attention (each frame attending to the others of
    # its video, as the long edit's joint pass does), so that the model learns to read the other keyframes
    # instead of being disturbed by them; 0: never (the paper's recipe)
    joint_keyframe_prob: float = 0.0
    joint_keyframes: int = 4

    @property
    def output_dir(self) -> Path:
        return Path(self.checkpoint.output_dir)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def config_from_dict(data: dict[str, Any]) -> TrainConfig:
    config = build_dataclass(TrainConfig, data)
    validate(config)
    return config


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> TrainConfig:
    """Read a YAML config (or the defaults when `path` is None) and apply dotted overrides."""
    return load_dataclass_config(TrainConfig, path, overrides, validate)


def validate(config: TrainConfig) -> None:
    """Cross-field checks the types cannot express."""
    o = config.optim
    checks = [
        (o.lr > 0, "optim.lr must be > 0"),
        (len(o.betas) == 2 and all(0 <= b < 1 for b in o.betas), "optim.betas must be two numbers in [0, 1)"),
        (o.max_steps >= 1, "optim.max_steps must be >= 1"),
        (o.max_minutes >= 0, f"optim.max_minutes must be >= 0 (0 = no limit), got {o.max_minutes}"),
        (o.warmup_steps >= 0, "optim.warmup_steps must be >= 0"),
        (o.gradient_accumulation_steps >= 1, "optim.gradient_accumulation_steps must be >= 1"),
        (o.max_grad_norm > 0, "optim.max_grad_norm must be > 0"),
        (config.max_bad_steps >= 1, "max_bad_steps must be >= 1"),
        (config.mask_loss_weight >= 0, f"mask_loss_weight must be >= 0, got {config.mask_loss_weight}"),
        (0 <= config.joint_keyframe_prob <= 1,
         f"joint_keyframe_prob must be in [0, 1], got {config.joint_keyframe_prob}"),
        (config.joint_keyframes >= 2, f"joint_keyframes must be >= 2, got {config.joint_keyframes}"),
        (config.model.objective == "edit" or config.joint_keyframe_prob == 0,
         "joint_keyframe_prob trains joint keyframe edits: with model.objective=text_to_video set it to 0"),
        (config.text_cache_max_items >= 1, "text_cache_max_items must be >= 1"),
        (config.vae_cache_max_items >= 1, "vae_cache_max_items must be >= 1"),
        (config.checkpoint.every_n_steps >= 0, "checkpoint.every_n_steps must be >= 0"),
        (config.checkpoint.keep_last >= 0, "checkpoint.keep_last must be >= 0"),
        (config.validation.every_n_steps >= 0, "validation.every_n_steps must be >= 0"),
        (config.logging.log_every >= 1, "logging.log_every must be >= 1"),
        (config.model.lora_rank >= 1, "model.lora_rank must be >= 1"),
        (bool(config.model.lora_targets), "model.lora_targets must not be empty"),
        (config.model.objective == "edit" or config.validation.every_n_steps == 0,
         "validation edits held-out samples: with model.objective=text_to_video set validation.every_n_steps=0"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)
    from diffusers.optimization import SchedulerType

    names = [s.value for s in SchedulerType]
    if o.lr_scheduler not in names:
        raise ConfigError(f"optim.lr_scheduler: {o.lr_scheduler!r} is not one of {names}")
