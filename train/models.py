"""The models a run trains with: the frozen VAE and T5, and the base transformer made VIVID (LoRA + widened patch
embedding), placed on their devices in their dtypes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator

from train.checkpoint import barrier
from train.config import TINY, TrainConfig
from train.distributed import without_zero3_partitioning
from vivid.model.frame_conv import use_frame_convs
from vivid.model.tiny import write_tiny_model
from vivid.model.registry import spec_for
from vivid.model.spec import ModelSpecification
from vivid.model.transformer import unwrap
from vivid.model.weights import VIVIDWeightsConfig, save_vivid_weights

logger = logging.getLogger("vivid.train")

WEIGHT_DTYPES = {"no": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class Models:
    spec: ModelSpecification  # the base's model specification, chosen by its transformer class
    components: dict[str, Any]  # the base pipeline's components as loaded (what validation builds a pipeline of)
    vae: Any
    text_encoder: Any  # None with precomputed caption embeddings
    tokenizer: Any
    scheduler: Any
    transformer: torch.nn.Module  # the VIVID transformer, trainable parameters in fp32
    dtype: torch.dtype  # the frozen weights' (compute) dtype

    @property
    def max_text_len(self) -> int:
        return self.spec.max_text_length(self.tokenizer, self.transformer)


def refuse_inference_only_base(config: TrainConfig) -> None:
    """A one-line ValueError where `model.pretrained` is a base vivid only edits with (VACE), before any run folder
    or model is touched (its model_index.json alone is read)."""
    if config.model.pretrained != TINY:
        spec_for(config.model.pretrained).refuse_training(f"vivid train on {config.model.pretrained}")


def resolve_pretrained(config: TrainConfig, rank: int) -> str:
    """The base model path; `tiny` is written once into <output_dir>/tiny-model (rank 0, atomically)."""
    if config.model.pretrained != TINY:
        return config.model.pretrained
    path = config.output_dir / "tiny-model"
    if rank == 0 and not (path / "model_index.json").is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tiny-model.", dir=path.parent))
        write_tiny_model(tmp, seed=config.model.tiny_seed)
        shutil.rmtree(path, ignore_errors=True)
        os.replace(tmp, path)
    barrier()
    return str(path)


@contextlib.contextmanager
def on_device(module: torch.nn.Module, device: torch.device, offload: bool) -> Iterator[torch.nn.Module]:
    """With `offload`, keep `module` on the CPU except inside this block (GPU memory for the transformer)."""
    if offload and device.type != "cpu":
        module.to(device)
        try:
            yield module
        finally:
            module.to("cpu")
    else:
        yield module


def load_models(config: TrainConfig, accelerator: Accelerator, pretrained: str, without_t5: bool,
                is_main: bool) -> Models:
    """VAE and T5 frozen (no grad, eval), on the CPU with offload_encoders; the transformer made VIVID, in train
    mode on the accelerator's device. With `without_t5` (precomputed caption embeddings) T5 and its tokenizer are
    never loaded."""
    device = accelerator.device
    dtype = WEIGHT_DTYPES[config.mixed_precision]
    skipped = {"text_encoder": None, "tokenizer": None} if without_t5 else {}
    spec = spec_for(pretrained)
    with without_zero3_partitioning(accelerator):  # T5 and the VAE run outside the DeepSpeed engine: whole
        components = spec.load_components(pretrained, dtype, **skipped)
    vae, text_encoder = components["vae"], components["text_encoder"]
    vae.requires_grad_(False).eval()
    use_frame_convs(vae)  # on a CPU (offload_encoders, or no GPU): torch's conv3d is slow at batch size 1
    if text_encoder is not None:
        text_encoder.requires_grad_(False).eval()
    if config.model.vae_slicing:
        vae.enable_slicing()
    if config.model.vae_tiling:
        vae.enable_tiling()
    encoder_device = torch.device("cpu") if config.offload_encoders else device
    vae.to(encoder_device)
    if text_encoder is not None:
        text_encoder.to(encoder_device)
    if config.model.objective == "text_to_video":  # the base itself, as it is, every weight trained
        transformer = components["transformer"].requires_grad_(True)
    else:
        transformer = spec.make_vivid(
            components["transformer"], config.model.lora_rank, config.model.lora_alpha, config.model.lora_targets
        )
        if config.model.train_base:
            transformer.requires_grad_(True)
    transformer.to(device)
    for p in transformer.parameters():  # trainable weights in fp32, frozen ones in the compute dtype
        if p.requires_grad:
            p.data = p.data.float()
    if config.model.gradient_checkpointing:
        transformer.enable_gradient_checkpointing()
    transformer.train()
    if is_main:
        logger.info("transformer: %s", spec.format_parameter_report(transformer))
    return Models(spec=spec, components=components, vae=vae, text_encoder=text_encoder,
                  tokenizer=components["tokenizer"], scheduler=components["scheduler"], transformer=transformer,
                  dtype=dtype)


def weights_config(config: TrainConfig, pretrained: str) -> VIVIDWeightsConfig:
    """What the saved VIVID weights record about their making (`vivid_config.json`)."""
    return VIVIDWeightsConfig(
        base_model=config.model.pretrained if config.model.pretrained != TINY else pretrained,
        lora_rank=config.model.lora_rank,
        lora_alpha=config.model.lora_alpha,
        lora_targets=list(config.model.lora_targets),
        base_trained=config.model.train_base,
        buckets=[list(b) for b in config.data.buckets],
        kive_last_frame_prob=config.data.kive_last_frame_prob,
        joint_keyframe_prob=config.joint_keyframe_prob,
    )


def save_base_transformer(model: torch.nn.Module, folder: Path) -> Path:
    """Write a text-to-video run's transformer as a diffusers model folder (`from_pretrained` reads it), atomically:
    written into a temporary folder beside it, then renamed into place."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        if folder.exists():
            raise FileExistsError(f"{folder} exists")
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def save_weights(transformer: torch.nn.Module, params: list[torch.nn.Parameter], folder: Path,
                 config: VIVIDWeightsConfig, is_main: bool, zero3: bool, objective: str = "edit") -> None:
    """Write the VIVID weights folder (objective "edit") or the base transformer's diffusers folder
    ("text_to_video") on rank 0 (collective: every rank calls it). Under ZeRO-3 the parameters are partitioned: the
    trainable ones are gathered on every rank first."""
    model = unwrap(transformer)

    def write() -> None:
        if objective == "text_to_video":
            save_base_transformer(model, folder)
        else:
            save_vivid_weights(model, folder, config)

    if zero3:
        import deepspeed

        with deepspeed.zero.GatheredParameters(params, modifier_rank=None):
            if is_main:
                write()
    elif is_main:
        write()
