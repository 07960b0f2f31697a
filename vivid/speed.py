"""Speed and memory options for a VIVIDPipeline (or a stock CogVideoXPipeline) and its transformer.

    from vivid.speed import SpeedOptions, apply_speed_options
    apply_speed_options(pipe, SpeedOptions(attention_backend="auto", merge_lora=True, fuse_qkv=True,
                                           compile=True, cache="fbc", memory="none"))

Speed: the attention kernel (diffusers' attention dispatcher: cuDNN / flash / FA3 / sage, whichever is installed
and fastest for the device), LoRA merged into the base weights and QKV fused (inference only), regional
`torch.compile` of the repeated transformer blocks, and diffusers' caches (FirstBlockCache, PyramidAttention-
Broadcast, FasterCache, TaylorSeer), which skip work between steps and change the output slightly.
Classifier-free guidance is already batched: VIVIDPipeline runs one transformer call of batch 2 per step.
Memory: model CPU offload, sequential offload, group offload (block level, CUDA streams), VAE tiling/slicing.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch  # annotations only: importing vivid.speed (the CLI's choices) stays light

logger = logging.getLogger(__name__)

CACHES = ("fbc", "pab", "fastercache", "taylorseer")
MEMORY_MODES = ("none", "model_offload", "sequential_offload", "group_offload")
ATTENTION_BACKENDS = ("auto", "native", "_native_cudnn", "_native_flash", "_native_efficient", "flash", "_flash_3",
                      "sage", "xformers")


@dataclass
class SpeedOptions:
    """What `apply_speed_options` does. Defaults change nothing."""

    attention_backend: str | None = None  # None: keep diffusers' CogVideoX processor; "auto": fastest available
    merge_lora: bool = False  # fold the LoRA into the base weights (no adapter matmuls; inference only)
    fuse_qkv: bool = False  # one QKV matmul per block (needs the LoRA merged or absent)
    compile: bool = False  # regional torch.compile of the transformer blocks
    compile_mode: str | None = None  # torch.compile mode, e.g. "max-autotune-no-cudagraphs"
    compile_backend: str = "inductor"  # "eager" only traces (tests the wiring without code generation)
    cache: str | None = None  # one of CACHES
    cache_threshold: float = 0.05  # FirstBlockCache: relative change of the first block's output to skip at
    cache_interval: int = 3  # PAB / TaylorSeer: recompute every N steps
    vae_tiling: bool = False
    vae_tile: tuple[int, int] | None = None  # (height, width) of a pixel tile; default: diffusers' (half the native size)
    vae_tile_overlap: float = 1 / 6  # fraction of a tile shared with its neighbour
    vae_slicing: bool = False
    memory: str = "none"  # one of MEMORY_MODES
    device: str | None = None  # where the pipeline runs (default: cuda if available, else cpu)

    def to_dict(self) -> dict:
        return asdict(self)


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def best_attention_backend(device: str | torch.device) -> str:
    """The fastest attention kernel usable here, as a diffusers AttentionBackendName value.

    FA3 (Hopper, `flash_attn_interface`) > flash-attn 2 > cuDNN SDPA on Hopper (faster than torch's default
    flash kernel there) > torch SDPA's flash kernel; plain torch SDPA on CPU.
    """
    import torch

    device = torch.device(device)
    if device.type != "cuda":
        return "native"
    major, _ = torch.cuda.get_device_capability(device)
    if major == 9 and importlib.util.find_spec("flash_attn_interface") is not None:
        return "_flash_3"
    if importlib.util.find_spec("flash_attn") is not None:
        return "flash"
    if major >= 9:
        return "_native_cudnn"
    return "_native_flash"


class DispatchCogVideoXAttnProcessor:
    """CogVideoX's joint text+video self-attention (QK LayerNorm, 3D RoPE on the video tokens) with the kernel
    picked through diffusers' attention dispatcher. diffusers' own CogVideoXAttnProcessor2_0 calls
    `F.scaled_dot_product_attention` directly, so `set_attention_backend` does not reach it."""

    def __init__(self, backend: str = "native"):
        from diffusers.models.attention_dispatch import AttentionBackendName

        self.backend = AttentionBackendName(backend)

    def __call__(self, attn, hidden_states, encoder_hidden_states, attention_mask=None, image_rotary_emb=None):
        import torch

        from diffusers.models.attention_dispatch import dispatch_attention_fn
        from diffusers.models.embeddings import apply_rotary_emb

        if attention_mask is not None:
            raise ValueError("DispatchCogVideoXAttnProcessor does not take an attention mask (CogVideoX uses none)")
        n_text = encoder_hidden_states.size(1)
        x = torch.cat([encoder_hidden_states, hidden_states], dim=1)
        if getattr(attn, "fused_projections", False):
            q, k, v = attn.to_qkv(x).chunk(3, dim=-1)
        else:
            q, k, v = attn.to_q(x), attn.to_k(x), attn.to_v(x)
        q, k, v = (t.unflatten(-1, (attn.heads, -1)) for t in (q, k, v))  # (B, S, heads, head_dim)
        if attn.norm_q is not None:
            q = attn.norm_q(q)
        if attn.norm_k is not None:
            k = attn.norm_k(k)
        if image_rotary_emb is not None:
            q = torch.cat([q[:, :n_text], apply_rotary_emb(q[:, n_text:], image_rotary_emb, sequence_dim=1)], dim=1)
            k = torch.cat([k[:, :n_text], apply_rotary_emb(k[:, n_text:], image_rotary_emb, sequence_dim=1)], dim=1)
        out = dispatch_attention_fn(q, k, v, backend=self.backend).flatten(2)
        out = attn.to_out[1](attn.to_out[0](out))
        return out[:, n_text:], out[:, :n_text]


def _is_cogvideox(transformer: torch.nn.Module) -> bool:
    """CogVideoX's blocks use diffusers' `Attention` with a processor that bypasses the attention dispatcher; the
    other bases' (Wan2.1's `WanAttention`) go through it already."""
    from diffusers.models.attention_processor import Attention

    return any(isinstance(m, Attention) for m in transformer.modules())


def set_attention_backend(transformer: torch.nn.Module, backend: str) -> str:
    """Route every attention of the transformer through `backend` ("auto" resolves it). Returns it."""
    from diffusers.models.attention_dispatch import _check_attention_backend_requirements, AttentionBackendName
    from diffusers.models.attention_processor import Attention

    if backend == "auto":
        backend = best_attention_backend(transformer.device)
    if backend not in {b.value for b in AttentionBackendName}:
        raise ValueError(f"unknown attention backend {backend!r}; try one of {ATTENTION_BACKENDS}")
    _check_attention_backend_requirements(AttentionBackendName(backend))
    if not _is_cogvideox(transformer):
        transformer.set_attention_backend(backend)  # diffusers' own, for processors that dispatch
        return backend
    for module in transformer.modules():
        if isinstance(module, Attention):
            module.set_processor(DispatchCogVideoXAttnProcessor(backend))
    return backend


def _has_unmerged_lora(transformer: torch.nn.Module) -> bool:
    from peft.tuners.tuners_utils import BaseTunerLayer

    return any(isinstance(m, BaseTunerLayer) and not m.merged for m in transformer.modules())


def fuse_qkv(transformer: torch.nn.Module) -> None:
    """One (3D x D) projection instead of three per block. Keeps the current processor if it handles fusion."""
    from diffusers.models.attention_processor import Attention

    if _has_unmerged_lora(transformer):
        raise ValueError("fuse_qkv needs the LoRA merged first (merge_lora=True): a fused QKV has no adapters")
    if not _is_cogvideox(transformer):
        from diffusers.models.attention import AttentionModuleMixin

        for module in transformer.modules():
            if isinstance(module, AttentionModuleMixin):
                module.fuse_projections()
        return
    for module in transformer.modules():
        if isinstance(module, Attention):
            if not isinstance(module.processor, DispatchCogVideoXAttnProcessor):
                module.set_processor(DispatchCogVideoXAttnProcessor("native"))
            module.fuse_projections()
            module.fused_projections = True


def compile_blocks(
    transformer: torch.nn.Module, mode: str | None = None, backend: str = "inductor", fullgraph: bool = False
) -> None:
    """Regional compilation: each transformer block class is compiled once and the graph reused for every block."""
    if not getattr(transformer, "_repeated_blocks", None) and _is_cogvideox(transformer):
        transformer._repeated_blocks = ["CogVideoXBlock"]  # diffusers 0.42 leaves it empty for CogVideoX
    kwargs = {"mode": mode} if backend == "inductor" else {}
    transformer.compile_repeated_blocks(backend=backend, fullgraph=fullgraph, dynamic=False, **kwargs)


def cache_config(name: str, pipe, threshold: float = 0.05, interval: int = 3):
    """A diffusers cache config for CogVideoX's transformer. The timestep callbacks read the pipeline's
    `current_timestep`, which VIVIDPipeline and CogVideoXPipeline set every step."""
    from diffusers import (
        FasterCacheConfig,
        FirstBlockCacheConfig,
        PyramidAttentionBroadcastConfig,
        TaylorSeerCacheConfig,
    )

    def timestep() -> int:
        t = pipe.current_timestep
        return int(t) if t is not None else 1000

    if name == "fbc":
        return FirstBlockCacheConfig(threshold=threshold)
    if name == "pab":
        return PyramidAttentionBroadcastConfig(
            spatial_attention_block_skip_range=interval,
            spatial_attention_timestep_skip_range=(100, 800),
            current_timestep_callback=timestep,
        )
    if name == "fastercache":
        if not _is_cogvideox(pipe.transformer):
            raise ValueError("FasterCache skips the unconditional half of a batched guidance call; this base runs "
                             "guidance as two transformer calls: choose another cache")
        return FasterCacheConfig(
            spatial_attention_block_skip_range=2,
            spatial_attention_timestep_skip_range=(-1, 681),
            low_frequency_weight_update_timestep_range=(99, 641),
            high_frequency_weight_update_timestep_range=(-1, 301),
            unconditional_batch_skip_range=5,
            unconditional_batch_timestep_skip_range=(-1, 781),
            attention_weight_callback=lambda _: 0.5,
            tensor_format="BFCHW",
            current_timestep_callback=timestep,
        )
    if name == "taylorseer":
        # diffusers' default patterns ("^transformer_blocks.*attn") miss CogVideoX's "attn1" and Wan's blocks
        # ("blocks.N.attn1"): name them.
        return TaylorSeerCacheConfig(
            cache_interval=interval, disable_cache_before_step=3, taylor_factors_dtype=None,
            cache_identifiers=[r"(transformer_blocks|blocks)\.\d+\.attn1"],
        )
    raise ValueError(f"unknown cache {name!r}; choose from {CACHES}")


def apply_speed_options(pipe, options: SpeedOptions | None = None, **overrides) -> SpeedOptions:
    """Apply `options` (or keyword overrides of the defaults) to `pipe` in place, moving it to its device.

    Order matters: merge LoRA -> attention processor -> fuse QKV -> cache hooks -> compile -> placement.
    Returns the options with "auto" resolved.
    """
    options = SpeedOptions(**{**(options.to_dict() if options else {}), **overrides})
    if options.memory not in MEMORY_MODES:
        raise ValueError(f"memory mode must be one of {MEMORY_MODES}, got {options.memory!r}")
    if options.cache is not None and options.cache not in CACHES:
        raise ValueError(f"cache must be one of {CACHES}, got {options.cache!r}")
    device = options.device or default_device()
    options.device = device
    transformer = pipe.transformer

    if options.memory == "none":
        pipe.to(device)  # first, so that "auto" sees the device the transformer will run on
    if options.merge_lora:
        if _has_unmerged_lora(transformer):
            transformer.fuse_lora()
        else:
            logger.info("merge_lora: the transformer has no unmerged LoRA; nothing to merge")
    if options.attention_backend is not None:
        target = device if options.attention_backend == "auto" else None
        backend = best_attention_backend(target) if target is not None else options.attention_backend
        options.attention_backend = set_attention_backend(transformer, backend)
    if options.fuse_qkv:
        fuse_qkv(transformer)
    if options.cache is not None:
        transformer.enable_cache(cache_config(options.cache, pipe, options.cache_threshold, options.cache_interval))
    if options.compile:
        compile_blocks(transformer, options.compile_mode, options.compile_backend)
    if options.vae_tiling:
        tile = {}
        if options.vae_tile is not None:
            tile = dict(tile_sample_min_height=options.vae_tile[0], tile_sample_min_width=options.vae_tile[1],
                        tile_overlap_factor_height=options.vae_tile_overlap,
                        tile_overlap_factor_width=options.vae_tile_overlap)
        pipe.vae.enable_tiling(**tile)
    if options.vae_slicing:
        pipe.vae.enable_slicing()
    _place(pipe, options.memory, device)
    return options


def match_frame_convs(vae: torch.nn.Module, device: str) -> None:
    """The frame-wise VAE convolutions (`vivid.model.frame_conv`) where they help, a VAE run on the CPU; torch's
    conv3d elsewhere (on a GPU they would only be inert subclasses)."""
    import torch

    from vivid.model.frame_conv import use_frame_convs, use_torch_convs

    if torch.device(device).type == "cpu":
        use_frame_convs(vae)
    elif use_torch_convs(vae):
        logger.info("VAE on %s: torch's conv3d (the frame-wise convolutions are a CPU speed-up)", device)


def _place(pipe, memory: str, device: str) -> None:
    import torch

    match_frame_convs(pipe.vae, device)
    if memory == "none":
        return
    if memory in ("model_offload", "sequential_offload"):
        if not device.startswith("cuda"):
            raise ValueError(f"memory mode {memory!r} moves models between CPU and a GPU; device is {device!r}")
        if memory == "model_offload":
            pipe.enable_model_cpu_offload(device=device)
        else:
            pipe.enable_sequential_cpu_offload(device=device)
        return
    # group offload: the transformer streams its blocks from CPU (overlapping copies with compute on CUDA);
    # the T5 is offloaded at leaf level; the small VAE stays on the device.
    onload = torch.device(device)
    stream = onload.type == "cuda"
    pipe.transformer.enable_group_offload(
        onload_device=onload, offload_device=torch.device("cpu"), offload_type="block_level",
        num_blocks_per_group=1, use_stream=stream,
    )
    from diffusers.hooks import apply_group_offloading

    apply_group_offloading(pipe.text_encoder, onload_device=onload, offload_type="leaf_level", use_stream=stream)
    pipe.vae.to(onload)
