"""Analytic FLOPs of a VIVID edit (and of a training step), per component, from the architecture configs.

Convention: one multiply-add = 2 FLOPs, and only matrix products and convolutions are counted (what
`torch.utils.flop_counter.FlopCounterMode` counts); norms, activations, softmax, rotary embeddings and
interpolation are left out (well under 1% of the total). Attention is QK^T and AV over video + text tokens.

Components of one edit: T5 (once per prompt; twice with classifier-free guidance), VAE encode of the
masked video (VIVID's condition), the transformer (`steps` forwards, batch 2 with guidance), VAE decode.
The VAE count follows diffusers' `AutoencoderKLCogVideoX` exactly, including its frame batching (8 frames per
encoder call, 2 latent frames per decoder call) which decides how many frames each causal stage sees.

The architectures are the model specifications' (`spec.architectures`: CogVideoX "5b" and "tiny", Wan "1.3b",
"14b" and "tiny"). Wan2.1's transformer is counted analytically (`wan_transformer_forward_flops`); its causal VAE
(`AutoencoderKLWan`, frame by frame with cached convolution state) is counted by running it on the meta device
under torch's FlopCounterMode, which needs no weights and no memory.

The published KIVE costs (17.1 PFLOPs per video edit, 1.5 per keyframe edit) are reproduced, to the rounding,
by counting the transformer's linear layers only, at 2 FLOPs per multiply-add, with guidance (batch 2) and 50
steps: a module-hook counter (thop/fvcore style) that does not see `F.scaled_dot_product_attention`. See
`kive_comparison` and docs/performance.md.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass, field

import torch
from diffusers import AutoencoderKLWan
from torch.utils.flop_counter import FlopCounterMode

from vivid.constants import LORA_RANK, LORA_TARGETS, VAE_SPATIAL, VAE_TEMPORAL, VIVID_IN_CHANNELS
from vivid.model.registry import spec_by_name
from vivid.model.spec import ModelSpecification

# Published on the VIVID project page (KIVE section), in PFLOPs.
PUBLISHED_PFLOPS = {
    "video_edit": 17.1,  # one 49x480x720 edit
    "keyframe_edit": 1.5,  # one 1-frame 480x720 edit
    "naive_two_rounds": 34.2,  # two rounds of video editing
    "kive_two_rounds": 20.1,  # two keyframe edits + one propagation
}

PETA = 1e15


def architecture(size: str, family: str = "cogvideox") -> tuple[ModelSpecification, dict]:
    """The specification of `family` and its published (or tiny) architecture `size`: {"transformer", "vae",
    "text_encoder"} configs (the classes' constructor arguments)."""
    spec = spec_by_name(family)
    if size not in spec.architectures:
        raise ValueError(f"model size must be one of {sorted(spec.architectures)} for {family}, got {size!r}")
    return spec, spec.architectures[size]


def model_name(family: str, size: str) -> str:
    return "tiny" if size == "tiny" else {"cogvideox": "CogVideoX", "wan": "Wan2.1"}.get(family, family) + "-" + size.upper()


# ----------------------------------------------------------------------------- transformer
def token_counts(transformer: dict, frames: int, height: int, width: int, text_tokens: int | None = None):
    """(video tokens, text tokens) the transformer sees for a pixel-space clip of `frames` (4k+1) frames."""
    _check_size(frames, height, width, transformer["patch_size"])
    p = transformer["patch_size"]
    latent_t = (frames - 1) // VAE_TEMPORAL + 1
    video = latent_t * (height // (VAE_SPATIAL * p)) * (width // (VAE_SPATIAL * p))
    text = transformer["max_text_seq_length"] if text_tokens is None else text_tokens
    return video, text


def transformer_forward_flops(
    transformer: dict,
    frames: int,
    height: int,
    width: int,
    batch: int = 1,
    in_channels: int = VIVID_IN_CHANNELS,
    lora_rank: int = LORA_RANK,
    lora_targets: int = len(LORA_TARGETS),
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
    lora_rank: int = LORA_RANK,
    lora_targets: int = len(LORA_TARGETS),
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


def wan_token_counts(transformer: dict, frames: int, height: int, width: int) -> int:
    """Video tokens a Wan transformer sees for a pixel-space clip of `frames` (4k+1) frames."""
    pt, ph, pw = transformer["patch_size"]
    _check_size(frames, height, width, ph)
    latent_t = (frames - 1) // VAE_TEMPORAL + 1
    return (latent_t // pt) * (height // (VAE_SPATIAL * ph)) * (width // (VAE_SPATIAL * pw))


def wan_transformer_forward_flops(
    transformer: dict,
    frames: int,
    height: int,
    width: int,
    text_tokens: int,
    batch: int = 1,
    in_channels: int = VIVID_IN_CHANNELS,
    lora_rank: int = LORA_RANK,
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


# ----------------------------------------------------------------------------- VAE
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
    _check_size(frames, height, width, 1)
    config = tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in vae.items()))
    return _meta_counted_wan_vae(config, frames, height, width)


def _conv(c_in: int, c_out: int, kernel_volume: int, positions: int) -> int:
    return 2 * c_in * c_out * kernel_volume * positions


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
    flops = _conv(c_in, c_out, 27, positions) + _conv(c_out, c_out, 27, positions)
    if c_in != c_out:
        flops += _conv(c_in, c_out, 1, positions)
    if zq:
        flops += 2 * _conv(zq, c_in, 1, positions) + 2 * _conv(zq, c_out, 1, positions)
    return flops


def vae_encode_flops(vae: dict, frames: int, height: int, width: int, batch: int = 1) -> float:
    """AutoencoderKLCogVideoX.encode of (batch, 3, frames, height, width) without tiling."""
    _check_size(frames, height, width, 1)
    ch = list(vae["block_out_channels"])
    layers = vae["layers_per_block"]
    levels = len(ch)
    time_levels = {4: 2, 2: 1, 1: 0}[int(vae["temporal_compression_ratio"])]
    total = 0
    for n in _frame_batches(frames, 8):
        h, w = height, width
        total += _conv(vae["in_channels"], ch[0], 27, n * h * w)
        c = ch[0]
        for i in range(levels):
            for j in range(layers):
                total += _resnet(c if j == 0 else ch[i], ch[i], n * h * w)
            c = ch[i]
            if i < levels - 1:
                if i < time_levels:
                    n = _time_down(n)
                h, w = h // 2, w // 2
                total += _conv(c, c, 9, n * h * w)  # 3x3 stride-2 Conv2d, per frame
        total += 2 * _resnet(c, c, n * h * w)  # mid block
        total += _conv(c, 2 * vae["latent_channels"], 27, n * h * w)
    return float(total * batch)


def vae_decode_flops(vae: dict, frames: int, height: int, width: int, batch: int = 1) -> float:
    """AutoencoderKLCogVideoX.decode of the latents of a (frames, height, width) clip, without tiling."""
    _check_size(frames, height, width, 1)
    ch = list(reversed(vae["block_out_channels"]))
    layers = vae["layers_per_block"] + 1
    levels = len(ch)
    zq = vae["latent_channels"]
    time_levels = {4: 2, 2: 1, 1: 0}[int(vae["temporal_compression_ratio"])]
    latent_frames = (frames - 1) // VAE_TEMPORAL + 1
    total = 0
    for n in _frame_batches(latent_frames, 2):
        h, w = height // VAE_SPATIAL, width // VAE_SPATIAL
        total += _conv(zq, ch[0], 27, n * h * w)
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
                total += _conv(c, c, 9, n * h * w)  # 3x3 Conv2d after nearest upsampling
        total += 2 * _conv(zq, c, 1, n * h * w)  # norm_out (SpatialNorm3D)
        total += _conv(c, vae["out_channels"], 27, n * h * w)
    return float(total * batch)


# ----------------------------------------------------------------------------- T5
def t5_flops(t5: dict, tokens: int, gated: bool, batch: int = 1) -> float:
    """A T5 encoder forward over `tokens` tokens (CogVideoX pads every prompt to max_text_seq_length)."""
    d, inner = t5["d_model"], t5["num_heads"] * t5["d_kv"]
    ff_mats = 3 if gated else 2
    per_layer = 2 * tokens * d * inner * 4 + 2 * 2 * tokens * tokens * inner + ff_mats * 2 * tokens * d * t5["d_ff"]
    return float(per_layer * t5["num_layers"] * batch)


# ----------------------------------------------------------------------------- an edit
@dataclass
class EditFlops:
    """FLOPs of one edit, per component; `total` sums them."""

    model: str
    frames: int
    height: int
    width: int
    steps: int
    guidance: bool
    video_tokens: int
    text_tokens: int
    components: dict[str, float] = field(default_factory=dict)

    @property
    def total(self) -> float:
        return sum(self.components.values())

    @property
    def transformer_total(self) -> float:
        return sum(v for k, v in self.components.items() if k.startswith("transformer_"))

    def to_dict(self) -> dict:
        out = asdict(self)
        out["total"] = self.total
        out["transformer_total"] = self.transformer_total
        return out


def edit_flops(
    size: str = "5b",
    frames: int = 49,
    height: int = 480,
    width: int = 720,
    steps: int = 50,
    guidance: bool = True,
    vivid: bool = True,
    family: str = "cogvideox",
) -> EditFlops:
    """FLOPs of one edit at a working size. `frames` is padded to 4k+1 as the pipeline does.

    `vivid=False` counts the stock base's text-to-video at the same shape (16 input channels, no LoRA, no VAE
    encode of a condition). `family` "wan" counts Wan2.1 (sizes "1.3b", "14b", "tiny"), whose guidance runs the
    conditional and unconditional forwards apart (the same FLOPs as CogVideoX's batch of 2).
    """
    spec, arch = architecture(size, family)
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    frames = spec.padded_frame_count(frames) if frames >= 1 else frames
    tr, vae, text_encoder = arch["transformer"], arch["vae"], arch["text_encoder"]
    cfg_batch = 2 if guidance else 1
    in_channels, lora_rank = (spec.in_channels, spec.lora_rank) if vivid else (spec.latent_channels, 0)
    if spec.name == "wan":
        n_text = arch["text_tokens"]
        n_video = wan_token_counts(tr, frames, height, width)
        fwd = wan_transformer_forward_flops(tr, frames, height, width, n_text, cfg_batch, in_channels, lora_rank)
        encode, decode = wan_vae_flops(vae, frames, height, width)
    else:
        n_video, n_text = token_counts(tr, frames, height, width)
        fwd = transformer_forward_flops(tr, frames, height, width, cfg_batch, in_channels, lora_rank)
        encode, decode = vae_encode_flops(vae, frames, height, width), vae_decode_flops(vae, frames, height, width)
    gated = str(text_encoder.get("feed_forward_proj", "relu")).startswith("gated")
    comps = {
        "t5": t5_flops(text_encoder, n_text, gated, batch=cfg_batch),
        "vae_encode": encode if vivid else 0.0,
        "transformer_linear": steps * fwd["linear"],
        "transformer_attention": steps * fwd["attention"],
        "transformer_lora": steps * fwd["lora"],
        "vae_decode": decode,
    }
    return EditFlops(model_name(family, size), frames, height, width, steps, guidance, n_video, n_text, comps)


def kive_comparison(size: str = "5b", steps: int = 50) -> dict:
    """Our counts of a 49x480x720 video edit and a 1-frame keyframe edit under several conventions, beside
    the published numbers. The convention that reproduces them: transformer linear layers only, FLOPs = 2 MACs,
    with guidance (which is what a module-hook counter reports for CogVideoX's pipeline)."""
    video = edit_flops(size, 49, 480, 720, steps, guidance=True)
    key = edit_flops(size, 1, 480, 720, steps, guidance=True)
    video_ng = edit_flops(size, 49, 480, 720, steps, guidance=False)
    key_ng = edit_flops(size, 1, 480, 720, steps, guidance=False)

    def conventions(e: EditFlops, e_ng: EditFlops) -> dict[str, float]:
        c = e.components
        return {
            "all components, guidance (this project's count)": e.total / PETA,
            "transformer only, guidance": e.transformer_total / PETA,
            "transformer linear layers only, guidance": (c["transformer_linear"] + c["transformer_lora"]) / PETA,
            "transformer linear only + VAE, guidance": (
                c["transformer_linear"] + c["transformer_lora"] + c["vae_encode"] + c["vae_decode"]
            ) / PETA,
            "all components, no guidance": e_ng.total / PETA,
            "all components, guidance, in MACs": e.total / 2 / PETA,
        }

    v, k = conventions(video, video_ng), conventions(key, key_ng)
    rows = {name: {"video_edit": v[name], "keyframe_edit": k[name],
                   "naive_two_rounds": 2 * v[name], "kive_two_rounds": 2 * k[name] + v[name]} for name in v}
    return {"published": dict(PUBLISHED_PFLOPS), "ours_pflops": rows, "video": video.to_dict(), "keyframe": key.to_dict()}


def _check_size(frames: int, height: int, width: int, patch: int) -> None:
    if frames < 1 or (frames - 1) % VAE_TEMPORAL:
        raise ValueError(f"frames must be 4k+1 (1, 5, ..., 49), got {frames}")
    step = VAE_SPATIAL * patch
    if height < step or width < step or height % step or width % step:
        raise ValueError(f"height and width must be positive multiples of {step}, got {height}x{width}")
