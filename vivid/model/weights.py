"""Saving and loading the VIVID weights: the LoRA and the widened patch embedding, safetensors only.

A weights folder holds
- `pytorch_lora_weights.safetensors`: the LoRA in diffusers' layout (keys `transformer.<module>.lora_A.weight`),
  written by diffusers' own `save_lora_weights` (the base's stock pipeline's) with the LoRA's peft config (rank,
  alpha, targets) as its adapter metadata, so that a plain diffusers `load_lora_weights` scales it by alpha / rank
  as vivid does,
- `patch_embed.safetensors`: the widened patch embedding, `<name>.weight` / `.bias` with the base's module name
  (CogVideoX: `patch_embed.proj`, Wan: `patch_embedding`; diffusers' LoRA loader cannot widen a conv),
- `vivid_config.json`: base model and its family (`cogvideox`, `wan`), LoRA rank/alpha/targets, mask encoding and
  channel layout, and the training sizes (aspect-ratio buckets; inference edits at the one nearest the source's
  aspect);
- `transformer.safetensors`, only where `base_trained` is set: the base transformer's own weights (every weight
  but the LoRA), for tiny models trained from scratch (`model.train_base`), whose random base has nothing to keep.
Keys are written without DeepSpeed/DDP `module.` prefixes, and such prefixes are stripped on load.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
from peft.utils import get_peft_model_state_dict, set_peft_model_state_dict
from safetensors.torch import load_file, save_file

from vivid.conditioning.buckets import check_buckets
from vivid.constants import BASE_WEIGHTS_NAME, LORA_WEIGHTS_NAME, PATCH_EMBED_WEIGHTS_NAME, VIVID_CONFIG_NAME
from vivid.io.files import read_json
from vivid.io.swap import MANIFEST_NAME, check_manifest, finish_interrupted_swaps
from vivid.model.hub import hub_offline, is_repo_id
from vivid.model.cogvideox_spec import CogVideoXSpec
from vivid.model.registry import spec_for
from vivid.model.transformer import unwrap
from vivid.yaml_config import ConfigError, build_dataclass


VIVID_WEIGHT_FILES = (LORA_WEIGHTS_NAME, PATCH_EMBED_WEIGHTS_NAME, VIVID_CONFIG_NAME, BASE_WEIGHTS_NAME)
EXPORT_TEMPORARY_KIND = "export"  # `vivid.apps.export`'s temporary folders (`vivid.io.atomic.temporary_dir`)


def resolve_weights_folder(weights: str | os.PathLike) -> Path:
    """A local VIVID weights folder as given, or else the weight files of hub repo `weights` (owner/name),
    downloaded with `huggingface_hub.snapshot_download` (only the cache is used when HF_HUB_OFFLINE is set)."""
    path = Path(weights)
    if path.is_dir():
        finish_interrupted_swaps(path, EXPORT_TEMPORARY_KIND)  # a killed export into it: completed first
        return path
    name = str(weights)
    if path.exists():
        raise NotADirectoryError(f"VIVID weights {name} is a file; give the weights folder or a hub repo id")
    if not is_repo_id(name):
        raise FileNotFoundError(f"VIVID weights {name}: no such folder, and not a hub repo id (owner/name)")
    from huggingface_hub import snapshot_download

    offline = hub_offline()
    try:
        local = Path(snapshot_download(name, allow_patterns=[*VIVID_WEIGHT_FILES, MANIFEST_NAME], local_files_only=offline))
    except Exception as err:  # not found, gated, no network, not in the offline cache
        if offline:
            why = "is not in the local hub cache and HF_HUB_OFFLINE is set"
        else:
            why = "could not be downloaded: " + (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise FileNotFoundError(f"VIVID weights {name}: no such local folder, and the hub repo {why}") from None
    if not (local / VIVID_CONFIG_NAME).is_file():
        raise FileNotFoundError(f"hub repo {name} has no {VIVID_CONFIG_NAME}: not a VIVID weights repo")
    return local


@dataclass
class VIVIDWeightsConfig:
    # defaults: CogVideoX's (configs written before `family` existed are CogVideoX's)
    base_model: str = CogVideoXSpec.default_model_id
    family: str = CogVideoXSpec.name  # the base's model specification (vivid/model/registry.py); set on save
    lora_rank: int = CogVideoXSpec.lora_rank
    lora_alpha: int = CogVideoXSpec.lora_alpha
    lora_targets: list[str] = field(default_factory=lambda: list(CogVideoXSpec.lora_targets))
    mask_encoding: str = "packed"  # 4 channels: 4 frames per latent frame, 8x max-pooled
    in_channels: int = CogVideoXSpec().in_channels
    channel_order: str = "noise|masked_video_latents|mask_latents"
    base_trained: bool = False  # the base transformer was trained too: its weights are in BASE_WEIGHTS_NAME
    # the training sizes [[h, w], ...] (vivid/conditioning/buckets.py); empty: one size, inference keeps the source's aspect
    buckets: list[list[int]] = field(default_factory=list)
    # trained with last-frame KIVE (`data.kive_last_frame_prob`): clips can be generated between two keyframes;
    # absent (older weights) = 0
    kive_last_frame_prob: float = 0.0
    # trained with joint keyframe training (`joint_keyframe_prob`): the joint keyframe pass's attention was seen in
    # training; absent (older weights) = 0
    joint_keyframe_prob: float = 0.0

    def __post_init__(self) -> None:
        self.buckets = [list(b) for b in check_buckets(self.buckets or [], f"{VIVID_CONFIG_NAME} buckets")]

    @classmethod
    def load(cls, folder: str | os.PathLike) -> "VIVIDWeightsConfig":
        """The config of a local weights folder or of a hub repo id (downloaded, see `resolve_weights_folder`)."""
        folder = resolve_weights_folder(folder)
        path = folder / VIVID_CONFIG_NAME
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: not a VIVID weights folder")
        check_manifest(folder, [VIVID_CONFIG_NAME])  # an export's config is that of its files
        data = read_json(path, VIVID_CONFIG_NAME)
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a JSON object of VIVID settings, got {type(data).__name__}")
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        try:
            return build_dataclass(cls, known)
        except ConfigError as err:
            raise ValueError(f"{path}: {err}") from None


def _strip_prefixes(state: dict[str, torch.Tensor], prefixes: tuple[str, ...]) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state.items():
        changed = True
        while changed:
            changed = False
            for prefix in prefixes:
                if key.startswith(prefix):
                    key, changed = key[len(prefix) :], True
        out[key] = value
    return out


def vivid_state_dicts(transformer: torch.nn.Module) -> tuple[dict, dict]:
    """(LoRA state, patch-embedding state), contiguous CPU tensors, no `module.` prefixes. The LoRA's keys are the
    transformer's (`<module>.lora_A.weight`); its file adds diffusers' `transformer.` prefix."""
    model = unwrap(transformer)
    lora = get_peft_model_state_dict(model)
    lora = _strip_prefixes(lora, ("module.", "base_model.model."))
    lora = {k: v.detach().cpu().contiguous() for k, v in lora.items()}
    spec = spec_for(model)
    proj, name = spec.patch_embedding(model), spec.patch_embedding_name
    patch = {f"{name}.weight": proj.weight.detach().cpu().contiguous()}
    if proj.bias is not None:
        patch[f"{name}.bias"] = proj.bias.detach().cpu().contiguous()
    return lora, patch


def lora_adapter_metadata(transformer: torch.nn.Module) -> dict:
    """The LoRA's peft config (rank, alpha, targets, ...) as a dict: what diffusers' training scripts store as a
    LoRA file's adapter metadata and its `load_lora_weights` builds the adapter from (without it, alpha = rank)."""
    model = unwrap(transformer)
    return model.peft_config["default"].to_dict()


def base_state_dict(transformer: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Every weight of the (LoRA-wrapped) transformer but the LoRA's, contiguous CPU tensors, no `module.` prefix.
    Keys are those of the wrapped model (`...to_q.base_layer.weight`), so they load into a transformer made VIVID
    with the same LoRA targets."""
    model = unwrap(transformer)
    state = _without_lora(model.state_dict())
    return {k: v.detach().cpu().contiguous() for k, v in _strip_prefixes(state, ("module.",)).items()}


def _without_lora(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in state.items() if "lora_" not in k}


def save_vivid_weights(
    transformer: torch.nn.Module, folder: str | os.PathLike, config: VIVIDWeightsConfig
) -> Path:
    """Write the VIVID weights folder atomically (a temporary folder renamed into place). The config's `family`
    is that of `transformer`."""
    folder = Path(folder)
    config = replace(config, family=spec_for(transformer).name)
    folder.parent.mkdir(parents=True, exist_ok=True)
    lora, patch = vivid_state_dicts(transformer)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        spec_for(transformer).stock_pipeline_class.save_lora_weights(
            tmp, transformer_lora_layers=lora, weight_name=LORA_WEIGHTS_NAME,
            transformer_lora_adapter_metadata=lora_adapter_metadata(transformer),
        )
        save_file(patch, tmp / PATCH_EMBED_WEIGHTS_NAME, metadata={"format": "pt"})
        if config.base_trained:
            save_file(base_state_dict(transformer), tmp / BASE_WEIGHTS_NAME, metadata={"format": "pt"})
        (tmp / VIVID_CONFIG_NAME).write_text(json.dumps(asdict(config), indent=2) + "\n")
        if folder.exists():
            old = folder.with_name(folder.name + ".old")
            shutil.rmtree(old, ignore_errors=True)
            folder.rename(old)
            tmp.rename(folder)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def required_weight_files(folder: Path, config: VIVIDWeightsConfig) -> tuple[str, ...]:
    """The weight files a folder with this config must hold (besides the config itself); FileNotFoundError naming
    the first one `folder` lacks."""
    names = (LORA_WEIGHTS_NAME, PATCH_EMBED_WEIGHTS_NAME) + ((BASE_WEIGHTS_NAME,) if config.base_trained else ())
    for name in names:
        if not (folder / name).is_file():
            raise FileNotFoundError(f"{folder / name} not found: incomplete VIVID weights folder")
    return names


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file; a one-line ValueError naming the file for a malformed or truncated one
    (safetensors' own error names no file)."""
    try:
        return load_file(path)
    except Exception as err:  # SafetensorError (a malformed header, a truncated file), OSError
        lines = [line for line in str(err).splitlines() if line.strip()]
        raise ValueError(f"{path}: not a readable safetensors file ({lines[0] if lines else type(err).__name__})"
                         ) from None


def _check_lora_shapes(transformer: torch.nn.Module, lora: dict[str, torch.Tensor], path: Path,
                       config: VIVIDWeightsConfig) -> None:
    """Every LoRA tensor has the shape of the layer it loads into (the config's rank): a one-line ValueError
    naming the file, the key and the rank otherwise (peft's size-mismatch error is a long traceback)."""
    own = {k.replace(".default.", "."): v.shape for k, v in transformer.state_dict().items() if "lora_" in k}
    for key, tensor in lora.items():
        shape = own.get(key.replace(".default.", "."))
        if shape is not None and tuple(shape) != tuple(tensor.shape):
            rank = tensor.shape[0] if "lora_A" in key else tensor.shape[-1]
            why = ("the config and the weights disagree" if rank != config.lora_rank
                   else "the layer's width differs: wrong base model?")
            raise ValueError(f"{path}: {key} is {tuple(tensor.shape)}, the model's is {tuple(shape)} with "
                             f"{VIVID_CONFIG_NAME}'s lora_rank {config.lora_rank}: {why}")


def _load_base(transformer: torch.nn.Module, path: Path) -> None:
    """Load trained base weights into a transformer already made VIVID; every non-LoRA weight must be there."""
    state = _strip_prefixes(read_safetensors(path), ("module.",))
    own = _without_lora(transformer.state_dict())
    missing, extra = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    if missing or extra:
        raise ValueError(f"{path}: base weights do not fit the model (missing {missing[:3]}, extra {extra[:3]})")
    wrong = [k for k in own if own[k].shape != state[k].shape]
    if wrong:
        k = wrong[0]
        raise ValueError(f"{path}: {k} is {tuple(state[k].shape)}, the model's is {tuple(own[k].shape)} (wrong base model?)")
    transformer.load_state_dict(state, strict=False)


def load_vivid_weights(transformer: torch.nn.Module, folder: str | os.PathLike) -> VIVIDWeightsConfig:
    """Make `transformer` a VIVID transformer (if it is not yet) and load the weights of `folder` into it.
    `folder` is a local weights folder or a hub repo id (downloaded, see `resolve_weights_folder`)."""
    spec_for(transformer).refuse_training(f"VIVID weights {folder}")  # an inference-only base: before any file
    folder = resolve_weights_folder(folder)
    config = VIVIDWeightsConfig.load(folder)
    check_manifest(folder, VIVID_WEIGHT_FILES)  # an export: its files are one set (sizes and hashes)
    required_weight_files(folder, config)
    spec = spec_for(transformer)
    if config.family != spec.name:
        raise ValueError(f"{folder}: VIVID weights for a {config.family} base, but the base model is {spec.name}")
    if config.mask_encoding != "packed" or config.in_channels != spec.in_channels:
        raise ValueError(
            f"{folder}: mask encoding {config.mask_encoding!r} with {config.in_channels} channels is not supported"
        )
    spec.make_vivid(transformer, config.lora_rank, config.lora_alpha, config.lora_targets)
    if config.base_trained:
        _load_base(transformer, folder / BASE_WEIGHTS_NAME)
    patch = _strip_prefixes(read_safetensors(folder / PATCH_EMBED_WEIGHTS_NAME), ("module.",))
    proj, name = spec.patch_embedding(transformer), spec.patch_embedding_name
    if f"{name}.weight" not in patch:
        raise ValueError(
            f"{folder / PATCH_EMBED_WEIGHTS_NAME}: no {name}.weight (keys {sorted(patch)[:3]}; wrong base model?)"
        )
    if patch[f"{name}.weight"].shape != proj.weight.shape:
        raise ValueError(
            f"{folder / PATCH_EMBED_WEIGHTS_NAME}: patch embedding {tuple(patch[f'{name}.weight'].shape)} "
            f"does not fit the base model's {tuple(proj.weight.shape)} (wrong base model?)"
        )
    lora = _strip_prefixes(read_safetensors(folder / LORA_WEIGHTS_NAME), ("module.", "transformer."))
    _check_lora_shapes(transformer, lora, folder / LORA_WEIGHTS_NAME, config)
    result = set_peft_model_state_dict(transformer, lora)
    unexpected = getattr(result, "unexpected_keys", None) or []
    if unexpected:
        raise ValueError(f"{folder / LORA_WEIGHTS_NAME}: keys that fit no LoRA layer of the base model: {unexpected[:5]}")
    with torch.no_grad():
        proj.weight.copy_(patch[f"{name}.weight"])
        if proj.bias is not None:
            proj.bias.copy_(patch[f"{name}.bias"])
    return config
