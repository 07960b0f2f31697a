"""FLOPs of Wan2.1's transformer (`WanTransformer3DModel`, analytic) and VAE (`AutoencoderKLWan`: frame by frame
with cached convolution state, counted by running it on the meta device under torch's FlopCounterMode, which needs
no weights and no memory); counted for `WanSpec` by `WanFlops` (conventions in vivid/flops/counter.py)."""

from __future__ import annotations

import functools
from typing import Any

import torch
from diffusers import AutoencoderKLWan
from torch.utils.flop_counter import FlopCounterMode

from vivid.flops.formulas import BaseFlops, check_clip_size
from vivid.model.wan_spec import WanSpec

# Wan's numbers, as its specification states them: VAE compression, VIVID's input channels, LoRA recipe
SPEC = WanSpec()
TEMPORAL, SPATIAL = SPEC.vae_temporal, SPEC.vae_spatial
VIVID_IN_CHANNELS = SPEC.in_channels


def wan_token_counts(transformer: dict, frames: int, height: int, width: int) -> int:
    """Video tokens a Wan transformer sees for a pixel-space clip of `frames` (4k+1) frames."""
    pt, ph, pw = transformer["patch_size"]
    check_clip_size(frames, height, width, ph, TEMPORAL, SPATIAL)
    latent_t = (frames - 1) // TEMPORAL + 1
    return (latent_t // pt) * (height // (SPATIAL * ph)) * (width // (SPATIAL * pw))


def wan_transformer_forward_flops(
    transformer: dict,
    frames: int,
    height: int,
    width: int,
    text_tokens: int,
    batch: int = 1,
    in_channels: int = VIVID_IN_CHANNELS,
    lora_rank: int = SPEC.lora_rank,
) -> dict[str, float]:
    """One forward of a Wan2.1 text-to-video transformer (`WanTransformer3DModel`), split into `linear`, `attention`
    (QK^T and AV of self-attention over the video tokens and of cross-attention to the `text_tokens` caption
    tokens) and `lora` (VIVID's adapters on to_q, to_k, to_v, to_out.0 of both attentions).

    Per block: self-attention q, k, v, out on the video tokens; cross-attention q and out on the video tokens, k and
    v on the text tokens; the feed-forward (dim -> ffn_dim -> dim). Once: the patch embedding (a Conv3d of the
    patch volume), the text embedder (text_dim -> dim -> dim per text token), the time embedder (freq_dim -> dim ->
    dim) and its projection to the 6 modulation vectors (dim -> 6 dim), per sample, and proj_out on the video
    tokens. VIVID: in_channels=36, lora_rank=32; stock Wan: in_channels=16, lora_rank=0.
    """
    n_video, n_text = wan_token_counts(transformer, frames, height, width), text_tokens
    d = transformer["num_attention_heads"] * transformer["attention_head_dim"]
    ffn, layers = transformer["ffn_dim"], transformer["num_layers"]
    patch_volume = 1
    for p in transformer["patch_size"]:
        patch_volume *= p
    per_block = (
        4 * 2 * n_video * d * d  # self-attention projections
        + 2 * 2 * n_video * d * d + 2 * 2 * n_text * d * d  # cross-attention: q, out on video; k, v on text
        + 2 * 2 * n_video * d * ffn  # feed-forward up and down
    )
    linear = layers * per_block
    linear += 2 * n_video * in_channels * patch_volume * d  # patch embedding
    linear += 2 * n_text * (transformer["text_dim"] * d + d * d)  # text embedder
    linear += 2 * (transformer["freq_dim"] * d + d * d) + 2 * d * 6 * d  # time embedder and its projection
    linear += 2 * n_video * d * transformer["out_channels"] * patch_volume  # proj_out
    attention = layers * (2 * 2 * n_video * n_video * d + 2 * 2 * n_video * n_text * d)
    lora_tokens = 4 * n_video + 2 * n_video + 2 * n_text  # the tokens each adapted projection sees, summed
    lora = layers * lora_tokens * 2 * (d * lora_rank + lora_rank * d)
    return {k: float(v * batch) for k, v in dict(linear=linear, attention=attention, lora=lora).items()}


@functools.lru_cache(maxsize=16)
def _meta_counted_wan_vae(config: tuple, frames: int, height: int, width: int) -> tuple[float, float]:
    vae_config = {k: list(v) if isinstance(v, tuple) else v for k, v in config}
    with torch.device("meta"), torch.no_grad():
        vae = AutoencoderKLWan(**vae_config)
        with FlopCounterMode(display=False) as counter:
            latents = vae.encode(torch.zeros(1, 3, frames, height, width)).latent_dist.mode()
        encode = counter.get_total_flops()
        with FlopCounterMode(display=False) as counter:
            vae.decode(latents)
        return float(encode), float(counter.get_total_flops())


def wan_vae_flops(vae: dict, frames: int, height: int, width: int) -> tuple[float, float]:
    """(encode, decode) FLOPs of `AutoencoderKLWan(**vae)` on one (frames, height, width) clip, counted on the
    meta device by FlopCounterMode."""
    check_clip_size(frames, height, width, 1, TEMPORAL, SPATIAL)
    config = tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in vae.items()))
    return _meta_counted_wan_vae(config, frames, height, width)


class WanFlops(BaseFlops):
    """`WanSpec`'s architectures counted by the formulas above."""

    def video_tokens(self, transformer: dict[str, Any], frames: int, height: int, width: int) -> int:
        return wan_token_counts(transformer, frames, height, width)

    def transformer_forward(
        self, transformer: dict[str, Any], frames: int, height: int, width: int, text_tokens: int, batch: int = 1,
        in_channels: int | None = None, lora_rank: int | None = None,
    ) -> dict[str, float]:
        spec = self.spec
        return wan_transformer_forward_flops(
            transformer, frames, height, width, text_tokens, batch,
            spec.in_channels if in_channels is None else in_channels,
            spec.lora_rank if lora_rank is None else lora_rank,
        )

    def vae(self, vae: dict[str, Any], frames: int, height: int, width: int) -> tuple[float, float]:
        return wan_vae_flops(vae, frames, height, width)
