"""Training configuration: typed dataclasses loaded from YAML, with dotted `key=value` overrides.

    config = load_config("configs/tiny.yaml", ["optim.lr=1e-4", "data.frames=9"])

Every key is checked against the dataclasses: an unknown key or a value of the wrong type is a `ConfigError`
naming the key (and the file). Values on the command line are parsed as YAML (`true`, `[0.9, 0.99]`, `null`),
except that a field typed as text keeps the text as written: YAML 1.1 would read `mixed_precision=no` as false
and `logging.run_name=2024` as a number.
"""

from __future__ import annotations

import dataclasses
import datetime
import types
import typing
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from data_loaders.config import DataConfig
from vivid.constants import LORA_ALPHA, LORA_RANK, LORA_TARGETS

TINY = "tiny"  # reserved `model.pretrained` value: the built-in tiny CogVideoX family


class ConfigError(ValueError):
    """A bad configuration key or value; the message names the key."""


@dataclass
class ModelConfig:
    pretrained: str = TINY  # hub id, local diffusers folder, or "tiny" (written to <output_dir>/tiny-model)
    tiny_seed: int = 0
    lora_rank: int = LORA_RANK
    lora_alpha: int = LORA_ALPHA
    lora_targets: list[str] = field(default_factory=lambda: list(LORA_TARGETS))
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
    # weights (tiny recipe, 162 tensors, one CPU thread: 14-22 -> 4-5 ms a step); false: torch's default
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
    steps: int = 50  # denoising steps
    guidance: float = 6.0
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
    mask_loss_weight: float = 0.0  # extra loss weight of the edit region's latent cells (0: CogVideoX's loss)

    @property
    def output_dir(self) -> Path:
        return Path(self.checkpoint.output_dir)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------- loading


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check `value` against the annotation `tp` (and convert the few safe cases); ConfigError otherwise."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping of {tp.__name__} fields, got {value!r}")
        return _build(tp, value, key)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg, key)
            except ConfigError:
                continue
        hint = _yaml11_hint(value) if any(a is str for a in args) else ""
        raise ConfigError(f"{key}: {value!r} is not a {_type_name(tp)}{hint}")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key}: {value!r} is not one of {list(args)}{_yaml11_hint(value)}")
        return value
    if origin in (list, tuple) or tp in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(f"{key}: expected {len(args)} values, got {len(value)}")
            return tuple(_coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        item = args[0] if args else Any
        out = [_coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(out) if (origin is tuple or tp is tuple) else out
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads "1e-4" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}{_yaml11_hint(value)}")
        return value
    if isinstance(tp, type) and not isinstance(value, tp):
        raise ConfigError(f"{key}: expected {tp.__name__}, got {value!r}")
    return value


def _yaml11_hint(value: Any) -> str:
    """A hint for values YAML 1.1 turned into booleans or numbers (`no`, `off`, `2024`) in a YAML file."""
    if isinstance(value, (bool, int, float, datetime.date)):
        return " (YAML reads unquoted no/yes/on/off, numbers and dates as such: quote the text, e.g. \"no\")"
    return ""


def _build(cls: type, data: dict[str, Any], prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - names)
    if unknown:
        where = f"{prefix}." if prefix else ""
        raise ConfigError(f"unknown key {where}{unknown[0]} (known in {cls.__name__}: {', '.join(sorted(names))})")
    kwargs = {k: _coerce(v, hints[k], f"{prefix}.{k}" if prefix else k) for k, v in data.items()}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as err:  # a dataclass's own __post_init__ checks
        raise ConfigError(f"{prefix or cls.__name__}: {err}") from err


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = data
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {dotted}: {part} is not a section")
        node = child
    node[parts[-1]] = value


def _field_type(dotted: str, cls: type | None = None) -> Any:
    """The annotation of a dotted TrainConfig key (`optim.lr` -> float), or None for an unknown key."""
    tp: Any = cls or TrainConfig
    for part in dotted.split("."):
        if not (isinstance(tp, type) and dataclasses.is_dataclass(tp)):
            return None
        hints = typing.get_type_hints(tp)
        if part not in hints:
            return None
        tp = hints[part]
    return tp


def _wants_text(tp: Any) -> bool:
    """True for `str`, a Literal of strings, or an optional one of those (no number or bool alternative)."""
    if tp is str:
        return True
    args = typing.get_args(tp)
    if typing.get_origin(tp) is Literal:
        return bool(args) and all(isinstance(a, str) for a in args)
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        return any(_wants_text(a) for a in rest) and not any(a in (bool, int, float) for a in rest)
    return False


def _is_text_scalar(value: Any) -> bool:
    return isinstance(value, str) or value is None


def _override_value(key: str, raw: str, cls: type | None = None) -> Any:
    """Parse one override value as YAML, keeping text as written where the target field is text."""
    if not raw.strip():
        return ""
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError as err:
        raise ConfigError(f"override {key}: cannot parse {raw!r}: {err}") from err
    tp = _field_type(key, cls)
    if tp is None:
        return value
    if _wants_text(tp) and not _is_text_scalar(value) and not isinstance(value, (list, dict)):
        return raw.strip()  # `mixed_precision=no`, `logging.run_name=2024`: the text, not False / 2024
    origin = typing.get_origin(tp)
    item = typing.get_args(tp)[0] if origin in (list, tuple) and typing.get_args(tp) else None
    if isinstance(value, list) and item is not None and _wants_text(item) and not all(map(_is_text_scalar, value)):
        text = yaml.load(raw, Loader=yaml.BaseLoader)  # every scalar as a string: `[to_q, on]` keeps "on"
        if isinstance(text, list):
            return text
    return value


def parse_overrides(overrides: list[str] | None, cls: type | None = None) -> dict[str, Any]:
    """["optim.lr=1e-4", "data.frames=9"] -> {"optim": {"lr": "1e-4"}, "data": {"frames": 9}}.

    Values are parsed as YAML, but a field typed as text (str, a Literal of strings) of `cls` (TrainConfig by
    default) gets the text as written: `mixed_precision=no` is "no", not false.
    """
    data: dict[str, Any] = {}
    for item in overrides or []:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"override {item!r} is not of the form section.key=value")
        _set_dotted(data, key, _override_value(key, raw, cls))
    return data


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def config_from_dict(data: dict[str, Any]) -> TrainConfig:
    config = _build(TrainConfig, data)
    validate(config)
    return config


def load_dataclass_config(
    cls: type, path: str | Path | None, overrides: list[str] | None = None,
    validator: Callable[[Any], None] | None = None,
) -> Any:
    """Any config dataclass `cls` from a YAML file (or its defaults when `path` is None) and dotted overrides,
    every key and value checked as for TrainConfig; `validator` adds cross-field checks (raising ConfigError)."""
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file {path} not found")
        loaded = yaml.safe_load(path.read_text())
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of sections")
        data = loaded or {}
    data = _merge(data, parse_overrides(overrides, cls))
    try:
        config = _build(cls, data)
        if validator is not None:
            validator(config)
        return config
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}" if path else str(err)) from err


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
        (config.text_cache_max_items >= 1, "text_cache_max_items must be >= 1"),
        (config.vae_cache_max_items >= 1, "vae_cache_max_items must be >= 1"),
        (config.checkpoint.every_n_steps >= 0, "checkpoint.every_n_steps must be >= 0"),
        (config.checkpoint.keep_last >= 0, "checkpoint.keep_last must be >= 0"),
        (config.validation.every_n_steps >= 0, "validation.every_n_steps must be >= 0"),
        (config.logging.log_every >= 1, "logging.log_every must be >= 1"),
        (config.model.lora_rank >= 1, "model.lora_rank must be >= 1"),
        (bool(config.model.lora_targets), "model.lora_targets must not be empty"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)
    from diffusers.optimization import SchedulerType

    names = [s.value for s in SchedulerType]
    if o.lr_scheduler not in names:
        raise ConfigError(f"optim.lr_scheduler: {o.lr_scheduler!r} is not one of {names}")
