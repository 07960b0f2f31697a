"""The VIVID transformer's parts every base shares: a patch embedding widened with zero channels, the LoRA and
which weights train, the compute dtype, unwrapping DDP / DeepSpeed. The specifications (`vivid/model/spec.py`) call
these with their numbers (channels, LoRA recipe); `widen_patch_embed` is CogVideoX's widening."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from diffusers import CogVideoXTransformer3DModel
from peft import LoraConfig



def widen_patch_embed(transformer: CogVideoXTransformer3DModel, in_channels: int, latent_channels: int) -> None:
    """Give `patch_embed.proj` `in_channels` inputs: noise | masked-video latents | mask latents.

    The first 16 input channels keep the pretrained weights and the new ones start at zero, so that before
    training the model computes exactly what CogVideoX computes. A no-op if already widened.
    """
    proj = transformer.patch_embed.proj
    if not isinstance(proj, torch.nn.Conv2d):
        raise TypeError(
            "only CogVideoX 1.0 transformers (Conv2d patch embedding, patch_size_t=None) are supported, "
            f"got {type(proj).__name__}"
        )
    if proj.in_channels == in_channels:
        return
    transformer.patch_embed.proj = widened_conv(proj, in_channels, latent_channels)
    transformer.register_to_config(in_channels=in_channels, out_channels=latent_channels)


def widened_conv(
    proj: torch.nn.Conv2d | torch.nn.Conv3d, in_channels: int, latent_channels: int
) -> torch.nn.Conv2d | torch.nn.Conv3d:
    """A copy of patch-embedding conv `proj` (`latent_channels` inputs) with `in_channels` inputs: the first keep
    their weights, the new ones start at zero, so the widened conv computes what `proj` computes as long as the
    new inputs carry no weight."""
    if proj.in_channels != latent_channels:
        raise ValueError(f"patch embedding has {proj.in_channels} input channels, expected {latent_channels}")
    wide = type(proj)(
        in_channels,
        proj.out_channels,
        kernel_size=proj.kernel_size,
        stride=proj.stride,
        bias=proj.bias is not None,
        device=proj.weight.device,
        dtype=proj.weight.dtype,
    )
    with torch.no_grad():
        wide.weight.zero_()
        wide.weight[:, : proj.in_channels] = proj.weight
        if proj.bias is not None:
            wide.bias.copy_(proj.bias)
    return wide


def lora_config(rank: int, alpha: int, targets: Sequence[str]) -> LoraConfig:
    return LoraConfig(r=rank, lora_alpha=alpha, target_modules=list(targets), init_lora_weights=True)


def make_vivid_transformer(
    transformer: CogVideoXTransformer3DModel,
    rank: int,
    alpha: int,
    targets: Sequence[str],
    widen: Callable[[torch.nn.Module], None],
    patch_embedding: str,
) -> torch.nn.Module:
    """Turn a base transformer (a diffusers transformer with peft support) into VIVID's, in place: widen the patch
    embedding (the base's `widen`) and add the LoRA. Trainable afterwards: the LoRA (B starts at zero) and the patch
    embedding (module path `patch_embedding`); everything else is frozen. The specifications call this with their
    recipe (`spec.make_vivid`)."""
    widen(transformer)
    transformer.requires_grad_(False)
    if not getattr(transformer, "_hf_peft_config_loaded", False):
        transformer.add_adapter(lora_config(rank, alpha, targets))
    for name, param in transformer.named_parameters():
        param.requires_grad_("lora_" in name or name.startswith(patch_embedding + "."))
    return transformer


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The bare model under DDP / DeepSpeed wrappers (`.module`)."""
    while hasattr(model, "module"):
        model = model.module
    return model


def _dtype_setting_parameters(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """The floating-point weights of `model` but those of the modules a diffusers model keeps in fp32 whatever its
    dtype (`_keep_in_fp32_modules`, matched by name as diffusers matches them: Wan's time embedding and norms)."""
    kept = getattr(model, "_keep_in_fp32_modules", None) or ()
    return [p for name, p in model.named_parameters() if p.is_floating_point() and not any(m in name for m in kept)]


def compute_dtype(transformer: torch.nn.Module) -> torch.dtype:
    """The dtype a (possibly wrapped) transformer computes in: that of its frozen weights (training keeps the
    trainable ones, LoRA and patch embedding, in fp32); with every weight trainable, that of the first. Weights of
    the modules kept in fp32 by diffusers do not count."""
    params = _dtype_setting_parameters(unwrap(transformer))
    return next((p.dtype for p in params if not p.requires_grad), params[0].dtype)


def has_mixed_dtypes(transformer: torch.nn.Module) -> bool:
    """Whether some weights of a (possibly wrapped) transformer are in another dtype than `compute_dtype` (fp32
    trainable weights beside frozen bf16 ones), those diffusers keeps in fp32 by design not counted: such a model
    runs under autocast."""
    dtype = compute_dtype(transformer)
    return any(p.dtype != dtype for p in _dtype_setting_parameters(unwrap(transformer)))


def parameter_report(model: torch.nn.Module) -> dict[str, float]:
    """Trainable and total parameter counts (works on the meta device)."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"trainable": trainable, "total": total, "trainable_fraction": trainable / max(total, 1)}


def format_parameter_report(report: dict[str, float]) -> str:
    return (
        f"trainable {report['trainable']:,} / total {report['total']:,} parameters "
        f"({100 * report['trainable_fraction']:.2f}%)"
    )
