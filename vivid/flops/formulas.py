"""FLOPs formulas every base shares (one multiply-add = 2 FLOPs, matrix products and convolutions only; see
vivid/flops/counter.py): the clip-size check, a convolution, a T5-style text encoder (T5, UMT5), and `BaseFlops`,
what each base's formulas implement."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from vivid.model.spec import ModelSpecification


def check_clip_size(frames: int, height: int, width: int, patch: int, temporal: int, spatial: int) -> None:
    """ValueError unless `frames` is temporal * k + 1 (4k+1) and height, width are positive multiples of
    spatial x `patch` (the VAE's compression times the patch size)."""
    if frames < 1 or (frames - 1) % temporal:
        raise ValueError(f"frames must be {temporal}k+1 (1, {temporal + 1}, ..., 49), got {frames}")
    step = spatial * patch
    if height < step or width < step or height % step or width % step:
        raise ValueError(f"height and width must be positive multiples of {step}, got {height}x{width}")


def conv_flops(c_in: int, c_out: int, kernel_volume: int, positions: int) -> int:
    return 2 * c_in * c_out * kernel_volume * positions


def t5_flops(t5: dict, tokens: int, gated: bool, batch: int = 1) -> float:
    """A T5-style encoder (T5, UMT5) forward over `tokens` tokens (both bases pad every prompt to their length)."""
    d, inner = t5["d_model"], t5["num_heads"] * t5["d_kv"]
    ff_mats = 3 if gated else 2
    per_layer = 2 * tokens * d * inner * 4 + 2 * 2 * tokens * tokens * inner + ff_mats * 2 * tokens * d * t5["d_ff"]
    return float(per_layer * t5["num_layers"] * batch)


class BaseFlops(ABC):
    """One base's FLOPs, for one of its specification's `architectures` configs: video and text tokens, a
    transformer forward, the VAE and the text encoder. `spec` gives VIVID's input channels and LoRA."""

    def __init__(self, spec: ModelSpecification) -> None:
        self.spec = spec

    def text_tokens(self, architecture: dict[str, Any]) -> int:
        """Caption tokens the text encoder and the transformer see (the base pads every caption to this)."""
        return int(architecture["text_tokens"])

    @abstractmethod
    def video_tokens(self, transformer: dict[str, Any], frames: int, height: int, width: int) -> int:
        """Video tokens the transformer (config `transformer`) sees for a frames x height x width clip (4k+1)."""

    @abstractmethod
    def transformer_forward(
        self, transformer: dict[str, Any], frames: int, height: int, width: int, text_tokens: int, batch: int = 1,
        in_channels: int | None = None, lora_rank: int | None = None,
    ) -> dict[str, float]:
        """One transformer forward of `batch` clips, split into `linear`, `attention` and `lora`; `in_channels` and
        `lora_rank` default to VIVID's (stock base: latent_channels and 0)."""

    @abstractmethod
    def vae(self, vae: dict[str, Any], frames: int, height: int, width: int) -> tuple[float, float]:
        """(encode, decode) FLOPs of the VAE (config `vae`) on one frames x height x width clip."""

    def text_encoder(self, text_encoder: dict[str, Any], tokens: int, batch: int = 1) -> float:
        """A text-encoder forward over `tokens` tokens for `batch` captions: a T5-style encoder (T5, UMT5)."""
        gated = str(text_encoder.get("feed_forward_proj", "relu")).startswith("gated")
        return t5_flops(text_encoder, tokens, gated, batch)
