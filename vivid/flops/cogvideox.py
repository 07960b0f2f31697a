"""FLOPs of CogVideoX's transformer (`CogVideoXTransformer3DModel`) and VAE (`AutoencoderKLCogVideoX`), from their
architecture configs (counted for `CogVideoXSpec` by `CogVideoXFlops`; conventions in vivid/flops/counter.py).

The VAE count follows diffusers' `AutoencoderKLCogVideoX` exactly, including its frame batching (8 frames per
encoder call, 2 latent frames per decoder call) which decides how many frames each causal stage sees.
"""

from __future__ import annotations

from typing import Any

from vivid.flops.formulas import BaseFlops, check_clip_size, conv_flops
from vivid.model.cogvideox_spec import CogVideoXSpec

# CogVideoX's numbers, as its specification states them: VAE compression, VIVID's input channels, LoRA recipe
SPEC = CogVideoXSpec()
TEMPORAL, SPATIAL = SPEC.vae_temporal, SPEC.vae_spatial
VIVID_IN_CHANNELS = SPEC.in_channels


def token_counts(transformer: dict, frames: int, height: int, width: int, text_tokens: int | None = None):
    """(video tokens, text tokens) the transformer sees for a pixel-space clip of `frames` (4k+1) frames."""
    check_clip_size(frames, height, width, transformer["patch_size"], TEMPORAL, SPATIAL)
    p = transformer["patch_size"]
    latent_t = (frames - 1) // TEMPORAL + 1
    video = latent_t * (height // (SPATIAL * p)) * (width // (SPATIAL * p))
    text = transformer["max_text_seq_length"] if text_tokens is None else text_tokens
    return video, text


def transformer_forward_flops(
    transformer: dict,
    frames: int,
    height: int,
    width: int,
    batch: int = 1,
    in_channels: int = VIVID_IN_CHANNELS,
    lora_rank: int = SPEC.lora_rank,
    lora_targets: int = len(SPEC.lora_targets),
    text_tokens: int | None = None,
) -> dict[str, float]:
    """One forward of a CogVideoX transformer, split into `linear` (every dense layer and the patch conv),
    `attention` (QK^T and AV) and `lora` (the adapters' two small matrices per target).

    VIVID: in_channels=36, lora_rank=32; stock CogVideoX: in_channels=16, lora_rank=0.
    """
    n_video, n_text = token_counts(transformer, frames, height, width, text_tokens)
    s = n_video + n_text
    d = transformer["num_attention_heads"] * transformer["attention_head_dim"]
    t_dim = transformer["time_embed_dim"]
    p = transformer["patch_size"]
    layers = transformer["num_layers"]
    out_ch = transformer["out_channels"]
    ff = 4 * d  # diffusers' FeedForward default inner dim

    per_block_tokens = 2 * s * d * (4 * d) + 2 * 2 * s * d * ff  # q, k, v, out + ff up and down
    per_block_modulation = 2 * 2 * t_dim * 6 * d  # norm1 and norm2 (LayerNormZero): temb -> 6 D, per sample
    linear = layers * (per_block_tokens + per_block_modulation)
    linear += 2 * n_video * in_channels * p * p * d  # patch embedding conv
    linear += 2 * n_text * transformer["text_embed_dim"] * d  # text projection
    linear += 2 * (d * t_dim + t_dim * t_dim)  # timestep embedding MLP
    linear += 2 * t_dim * 2 * d  # norm_out (AdaLayerNorm): temb -> 2 D
    linear += 2 * n_video * d * p * p * out_ch  # proj_out (computed on video tokens only)
    attention = layers * 2 * (2 * s * s * d)  # QK^T and AV, all heads
    lora = layers * lora_targets * 2 * s * (d * lora_rank + lora_rank * d)
    return {k: float(v * batch) for k, v in dict(linear=linear, attention=attention, lora=lora).items()}


def transformer_train_flops(
    transformer: dict,
    frames: int,
    height: int,
    width: int,
    batch: int = 1,
    in_channels: int = VIVID_IN_CHANNELS,
    lora_rank: int = SPEC.lora_rank,
    lora_targets: int = len(SPEC.lora_targets),
    text_tokens: int | None = None,
) -> dict[str, float]:
    """Model FLOPs of one LoRA training step of the transformer: forward + backward (no recomputation).

    Backward: the input gradient through every matmul on the path from the patch embedding to the loss
    (1x forward), plus the weight gradients of the trainable parameters only (LoRA, patch embedding: 1x their
    forward); attention backward is 2x its forward (dQ, dK, dV, dP). Layers whose inputs need no gradient
    (text projection, timestep MLP, the adaLN modulation of temb) have no backward at all.
    """
    n_video, n_text = token_counts(transformer, frames, height, width, text_tokens)
    d = transformer["num_attention_heads"] * transformer["attention_head_dim"]
    t_dim = transformer["time_embed_dim"]
    p = transformer["patch_size"]
    fwd = transformer_forward_flops(
        transformer, frames, height, width, 1, in_channels, lora_rank, lora_targets, text_tokens
    )
    layers = transformer["num_layers"]
    no_backward = (
        layers * 2 * 2 * t_dim * 6 * d
        + 2 * n_text * transformer["text_embed_dim"] * d
        + 2 * (d * t_dim + t_dim * t_dim)
        + 2 * t_dim * 2 * d
    )
    patch = 2 * n_video * in_channels * p * p * d
    # input grads through the token path (the patch conv's input is data: no input grad there)
    bwd_linear = fwd["linear"] - no_backward - patch
    bwd_attention = 2 * fwd["attention"]
    bwd_lora = 2 * fwd["lora"]  # input grads and LoRA weight grads
    bwd_patch = patch  # weight grad of the trainable patch embedding
    out = {
        "forward": sum(fwd.values()),
        "backward": bwd_linear + bwd_attention + bwd_lora + bwd_patch,
    }
    out["total"] = out["forward"] + out["backward"]
    return {k: float(v * batch) for k, v in out.items()}



def _time_down(n: int) -> int:
    """CogVideoXDownsample3D with compress_time: odd counts keep frame 0 and pool the rest by 2."""
    if n % 2 == 1:
        return 1 + (n - 1) // 2
    return n // 2


def _time_up(n: int) -> int:
    """CogVideoXUpsample3D with compress_time: odd counts > 1 keep frame 0 and double the rest."""
    if n == 1:
        return 1
    return 2 * n - 1 if n % 2 == 1 else 2 * n


def _frame_batches(num_frames: int, batch: int) -> list[int]:
    """The slices diffusers' AutoencoderKLCogVideoX._encode/_decode feed to the encoder/decoder."""
    num_batches = max(num_frames // batch, 1)
    remaining = num_frames % batch
    sizes = []
    for i in range(num_batches):
        start = batch * i + (0 if i == 0 else remaining)
        end = min(batch * (i + 1) + remaining, num_frames)
        sizes.append(end - start)
    return sizes


def _resnet(c_in: int, c_out: int, positions: int, zq: int = 0) -> int:
    """CogVideoXResnetBlock3D: two 3x3x3 convs, a 1x1x1 shortcut when widths differ, and (decoder) two
    SpatialNorm3D, each with two 1x1x1 convs from the latent (zq channels)."""
    flops = conv_flops(c_in, c_out, 27, positions) + conv_flops(c_out, c_out, 27, positions)
    if c_in != c_out:
        flops += conv_flops(c_in, c_out, 1, positions)
    if zq:
        flops += 2 * conv_flops(zq, c_in, 1, positions) + 2 * conv_flops(zq, c_out, 1, positions)
    return flops


def vae_encode_flops(vae: dict, frames: int, height: int, width: int, batch: int = 1) -> float:
    """AutoencoderKLCogVideoX.encode of (batch, 3, frames, height, width) without tiling."""
    check_clip_size(frames, height, width, 1, TEMPORAL, SPATIAL)
    ch = list(vae["block_out_channels"])
    layers = vae["layers_per_block"]
    levels = len(ch)
    time_levels = {4: 2, 2: 1, 1: 0}[int(vae["temporal_compression_ratio"])]
    total = 0
    for n in _frame_batches(frames, 8):
        h, w = height, width
        total += conv_flops(vae["in_channels"], ch[0], 27, n * h * w)
        c = ch[0]
        for i in range(levels):
            for j in range(layers):
                total += _resnet(c if j == 0 else ch[i], ch[i], n * h * w)
            c = ch[i]
            if i < levels - 1:
                if i < time_levels:
                    n = _time_down(n)
                h, w = h // 2, w // 2
                total += conv_flops(c, c, 9, n * h * w)  # 3x3 stride-2 Conv2d, per frame
        total += 2 * _resnet(c, c, n * h * w)  # mid block
        total += conv_flops(c, 2 * vae["latent_channels"], 27, n * h * w)
    return float(total * batch)


def vae_decode_flops(vae: dict, frames: int, height: int, width: int, batch: int = 1) -> float:
    """AutoencoderKLCogVideoX.decode of the latents of a (frames, height, width) clip, without tiling."""
    check_clip_size(frames, height, width, 1, TEMPORAL, SPATIAL)
    ch = list(reversed(vae["block_out_channels"]))
    layers = vae["layers_per_block"] + 1
    levels = len(ch)
    zq = vae["latent_channels"]
    time_levels = {4: 2, 2: 1, 1: 0}[int(vae["temporal_compression_ratio"])]
    latent_frames = (frames - 1) // TEMPORAL + 1
    total = 0
    for n in _frame_batches(latent_frames, 2):
        h, w = height // SPATIAL, width // SPATIAL
        total += conv_flops(zq, ch[0], 27, n * h * w)
        total += 2 * _resnet(ch[0], ch[0], n * h * w, zq)  # mid block
        c = ch[0]
        for i in range(levels):
            for j in range(layers):
                total += _resnet(c if j == 0 else ch[i], ch[i], n * h * w, zq)
            c = ch[i]
            if i < levels - 1:
                if i < time_levels:
                    n = _time_up(n)
                h, w = 2 * h, 2 * w
                total += conv_flops(c, c, 9, n * h * w)  # 3x3 Conv2d after nearest upsampling
        total += 2 * conv_flops(zq, c, 1, n * h * w)  # norm_out (SpatialNorm3D)
        total += conv_flops(c, vae["out_channels"], 27, n * h * w)
    return float(total * batch)


class CogVideoXFlops(BaseFlops):
    """`CogVideoXSpec`'s architectures counted by the formulas above."""

    def text_tokens(self, architecture: dict[str, Any]) -> int:
        return int(architecture["transformer"]["max_text_seq_length"])

    def video_tokens(self, transformer: dict[str, Any], frames: int, height: int, width: int) -> int:
        return token_counts(transformer, frames, height, width)[0]

    def transformer_forward(
        self, transformer: dict[str, Any], frames: int, height: int, width: int, text_tokens: int, batch: int = 1,
        in_channels: int | None = None, lora_rank: int | None = None,
    ) -> dict[str, float]:
        spec = self.spec
        return transformer_forward_flops(
            transformer, frames, height, width, batch, spec.in_channels if in_channels is None else in_channels,
            spec.lora_rank if lora_rank is None else lora_rank, len(spec.lora_targets), text_tokens,
        )

    def vae(self, vae: dict[str, Any], frames: int, height: int, width: int) -> tuple[float, float]:
        return vae_encode_flops(vae, frames, height, width), vae_decode_flops(vae, frames, height, width)
