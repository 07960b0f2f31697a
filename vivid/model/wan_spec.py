"""The Wan2.1 specification (Wan-AI/Wan2.1-T2V-1.3B-Diffusers, -14B-Diffusers, the tiny family of
`vivid/model/tiny_wan.py`): diffusers' `WanTransformer3DModel`, `AutoencoderKLWan`, the UMT5 encoder and Wan's
flow-matching sampler, with VIVID's recipe on top.

- Input: noise (16) | masked-video latents (16) | mask latents (4) on the channel axis of the (1, 2, 2)-patch
  Conv3d `patch_embedding`, widened with the 20 new input channels at zero (before training the model computes
  exactly what Wan computes). The Wan VAE compresses 4x in time (causally: frame 0 alone, then groups of 4) and 8x
  in space, as CogVideoX's does, so the mask is packed by the same rule: latent frame 0 <- frame 0 repeated 4
  times, latent frame j <- frames 4j-3 .. 4j as its 4 channels, space max-pooled 8x. (Wan's own image-to-video
  model packs its frame mask the same way.)
- Latents: the VAE's posterior normalised per channel with the VAE config's `latents_mean` / `latents_std`, as
  WanPipeline does ((x - mean) * (1 / std); decoding x / (1 / std) + mean).
- Text: UMT5, up to 512 tokens; each caption's embeddings past its own length are zeros (WanPipeline's rule).
- LoRA: rank 32 on the self- and cross-attention projections of every block (attn1 / attn2: to_q, to_k, to_v,
  to_out.0), the patch embedding trained in full, everything else frozen.
- Training objective: flow matching as finetrainers trains Wan. sigma drawn from a logit-normal (mean 0, std 1;
  `timestep_sampling="uniform"` for uniform), shifted by sigma' = s sigma / (1 + (s - 1) sigma) with s the
  sampler's own shift (the folder scheduler's `flow_shift` / `shift`, 3.0 for Wan2.1 T2V; or `flow_shift`),
  x_t = (1 - sigma') x0 + sigma' noise, timestep = int(1000 sigma'), the transformer predicting the velocity
  noise - x0, squared error with SD3's loss weighting (`loss_weighting`, default "none": uniform).
- Sampler: the folder's scheduler (UniPC on flow sigmas for the published folders) stepped on the velocity in
  float32, classifier-free guidance as Wan does it: a conditional and an unconditional forward each step,
  uncond + scale (cond - uncond), scale 5 by default.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from diffusers.pipelines.wan.pipeline_wan import prompt_clean
from diffusers.training_utils import compute_density_for_timestep_sampling, compute_loss_weighting_for_sd3
from diffusers.utils.torch_utils import randn_tensor

from vivid.model.configs import (
    TINY_UMT5,
    TINY_WAN_TRANSFORMER,
    TINY_WAN_VAE,
    UMT5_XXL,
    WAN21_1_3B_TRANSFORMER,
    WAN21_14B_TRANSFORMER,
    WAN21_VAE,
)
from vivid.model.spec import ModelSpecification, SamplingLoop
from vivid.model.transformer import compute_dtype, unwrap, widened_conv

WAN21_1_3B_MODEL_ID = "Wan-AI/Wan2.1-T2V-1.3B-Diffusers"
WAN21_14B_MODEL_ID = "Wan-AI/Wan2.1-T2V-14B-Diffusers"
WAN_MAX_TEXT_LENGTH = 512  # WanPipeline's max_sequence_length

# Native working sizes by transformer width: 1.3B is a 480p model, 14B is trained at 480p and 720p. Any other width
# (the tiny family) works at TINY_NATIVE_SIZE.
NATIVE_SIZES = {1536: (480, 832), 5120: (720, 1280)}
TINY_NATIVE_SIZE = (64, 96)
# Clip length: Wan2.1's 81 frames for the published widths; the tiny family's clips are short (tests chain a video
# of 14 frames) and, unlike the tiny CogVideoX's 9, say which base's rule a long edit followed.
TINY_CLIP_FRAMES = 13

TIMESTEP_SAMPLINGS = ("logit_normal", "uniform", "mode")
LOSS_WEIGHTINGS = ("none", "sigma_sqrt", "cosmap")


def _channels_first(x: torch.Tensor) -> torch.Tensor:
    """(B, T, C, h, w) <-> (B, C, T, h, w): VIVID's latent layout and Wan's."""
    return x.permute(0, 2, 1, 3, 4)


def wan_architectures(model_ids: dict[str, str], transformers: dict[str, dict]) -> dict[str, dict]:
    """`ModelSpecification.architectures` of a Wan2.1 family: per size ("1.3b", "14b", "tiny") its hub id and
    transformer config, beside what every Wan2.1 shares (the VAE, UMT5-XXL, 512 text tokens; the tiny family's
    VAE, UMT5 and its tokenizer's 16 tokens, vivid/model/tiny_wan.py)."""
    full = dict(vae=WAN21_VAE, text_encoder=UMT5_XXL, text_tokens=WAN_MAX_TEXT_LENGTH)
    tiny = dict(vae=TINY_WAN_VAE, text_encoder=TINY_UMT5, text_tokens=16)
    return {size: dict(model_id=model_ids.get(size), transformer=transformer, **(tiny if size == "tiny" else full))
            for size, transformer in transformers.items()}


class WanSpec(ModelSpecification):
    name = "wan"
    display_name = "Wan2.1"
    default_architecture = "1.3b"
    transformer_class_names = ("WanTransformer3DModel",)
    pipeline_class_name = "WanPipeline"
    default_model_id = WAN21_1_3B_MODEL_ID
    native_frames = 81
    native_fps = 16
    patch_embedding_name = "patch_embedding"
    default_guidance_scale = 5.0
    batched_guidance = False  # WanPipeline: a conditional and an unconditional forward per step
    objective = ("Wan2.1's flow matching as finetrainers trains Wan: the velocity noise - x0 at noise levels "
                 "shifted by the sampler's shift.")
    architectures = wan_architectures(
        {"1.3b": WAN21_1_3B_MODEL_ID, "14b": WAN21_14B_MODEL_ID},
        {"1.3b": WAN21_1_3B_TRANSFORMER, "14b": WAN21_14B_TRANSFORMER, "tiny": TINY_WAN_TRANSFORMER})

    def __init__(
        self,
        flow_shift: float | None = None,
        timestep_sampling: str = "logit_normal",
        logit_mean: float = 0.0,
        logit_std: float = 1.0,
        mode_scale: float = 1.29,
        loss_weighting: str = "none",
    ) -> None:
        """Training options (see the module docstring); `flow_shift` None takes the scheduler's own shift."""
        if timestep_sampling not in TIMESTEP_SAMPLINGS:
            raise ValueError(f"timestep_sampling must be one of {TIMESTEP_SAMPLINGS}, got {timestep_sampling!r}")
        if loss_weighting not in LOSS_WEIGHTINGS:
            raise ValueError(f"loss_weighting must be one of {LOSS_WEIGHTINGS}, got {loss_weighting!r}")
        if flow_shift is not None and flow_shift <= 0:
            raise ValueError(f"flow_shift must be > 0, got {flow_shift}")
        self.flow_shift = flow_shift
        self.timestep_sampling = timestep_sampling
        self.logit_mean = logit_mean
        self.logit_std = logit_std
        self.mode_scale = mode_scale
        self.loss_weighting = loss_weighting

    def __repr__(self) -> str:
        return (
            f"WanSpec(flow_shift={self.flow_shift}, timestep_sampling={self.timestep_sampling!r}, "
            f"loss_weighting={self.loss_weighting!r})"
        )

    # ---------------------------------------------------------------- sizes
    def patch_size(self, transformer: torch.nn.Module) -> tuple[int, int, int]:
        return tuple(int(p) for p in unwrap(transformer).config.patch_size)

    @staticmethod
    def _width(transformer: torch.nn.Module | Mapping[str, Any]) -> int:
        cfg = ModelSpecification.transformer_config(transformer)
        return int(cfg["num_attention_heads"]) * int(cfg["attention_head_dim"])

    def native_size(self, transformer: torch.nn.Module | Mapping[str, Any]) -> tuple[int, int]:
        return NATIVE_SIZES.get(self._width(transformer), TINY_NATIVE_SIZE)

    def clip_frames(self, transformer: torch.nn.Module | Mapping[str, Any]) -> int:
        """81 (Wan2.1's native clip, 4k+1) for the published models, TINY_CLIP_FRAMES for the tiny family (the
        transformer's config has no frame count)."""
        return self.native_frames if self._width(transformer) in NATIVE_SIZES else TINY_CLIP_FRAMES

    def vae_compression(self, vae: torch.nn.Module) -> tuple[int, int]:
        return int(vae.config.scale_factor_temporal), int(vae.config.scale_factor_spatial)

    def vae_dtype(self, dtype: torch.dtype | None) -> torch.dtype | None:
        """Wan's examples keep the VAE in float32 whatever the other components' dtype."""
        return torch.float32

    # ---------------------------------------------------------------- VAE
    @staticmethod
    def _latent_stats(vae: torch.nn.Module, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, 1 / std) of the VAE's latents, shaped (1, 1, C, 1, 1), on `like`'s device and dtype."""
        cfg = vae.config
        mean = torch.tensor(cfg.latents_mean).view(1, 1, cfg.z_dim, 1, 1).to(like.device, like.dtype)
        inv_std = 1.0 / torch.tensor(cfg.latents_std).view(1, 1, cfg.z_dim, 1, 1).to(like.device, like.dtype)
        return mean, inv_std

    def normalize_latents(self, vae: torch.nn.Module, latents: torch.Tensor) -> torch.Tensor:
        mean, inv_std = self._latent_stats(vae, latents)
        return (latents - mean) * inv_std

    def encode_video(
        self, vae: torch.nn.Module, video: torch.Tensor, generator: torch.Generator | None = None,
        sample: bool = False,
    ) -> torch.Tensor:
        """`video` stays on its device, the one the VAE runs on (a pipeline's `_execution_device`; `vae.device` is
        the CPU under model offload until the VAE's hook moves it, and `meta` under sequential offload); only the
        dtype follows the VAE."""
        dist = vae.encode(_channels_first(video.to(dtype=vae.dtype))).latent_dist
        latents = dist.sample(generator) if sample else dist.mode()
        return self.normalize_latents(vae, _channels_first(latents))

    def decode_latents(self, vae: torch.nn.Module, latents: torch.Tensor) -> torch.Tensor:
        """Like `encode_video`, the latents stay on their device (the execution device)."""
        latents = latents.to(dtype=vae.dtype)
        mean, inv_std = self._latent_stats(vae, latents)
        return _channels_first(vae.decode(_channels_first(latents / inv_std + mean)).sample)

    # ---------------------------------------------------------------- text (UMT5)
    def max_text_length(self, tokenizer: Any, transformer: torch.nn.Module | Mapping[str, Any]) -> int:
        """512 tokens, or fewer where the tokenizer says so (the tiny family's)."""
        return min(WAN_MAX_TEXT_LENGTH, int(getattr(tokenizer, "model_max_length", WAN_MAX_TEXT_LENGTH)))

    def text_embedding_dim(self, transformer: torch.nn.Module) -> int:
        return int(unwrap(transformer).config.text_dim)

    @torch.no_grad()
    def encode_prompts(
        self,
        tokenizer: Any,
        text_encoder: torch.nn.Module,
        prompts: Sequence[str],
        max_length: int,
        device: torch.device | str | None = None,
    ) -> torch.Tensor:
        inputs = tokenizer(
            [prompt_clean(p) for p in prompts], padding="max_length", max_length=max_length, truncation=True,
            add_special_tokens=True, return_attention_mask=True, return_tensors="pt",
        )
        mask = inputs.attention_mask
        lengths = mask.gt(0).sum(dim=1)
        device = device or text_encoder.device  # under offload hooks the encoder's own device can be `meta`
        embeds = text_encoder(inputs.input_ids.to(device), mask.to(device)).last_hidden_state
        embeds = embeds.to(dtype=text_encoder.dtype, device=device)
        past = torch.arange(max_length, device=embeds.device)[None, :] >= lengths.to(embeds.device)[:, None]
        return embeds.masked_fill(past[:, :, None], 0.0)  # zeros past each caption's own tokens

    # ---------------------------------------------------------------- transformer
    def widen(self, transformer: torch.nn.Module) -> None:
        model = unwrap(transformer)
        proj = model.patch_embedding
        if not isinstance(proj, torch.nn.Conv3d):
            raise TypeError(f"Wan's patch embedding is a Conv3d, got {type(proj).__name__}")
        if proj.in_channels == self.in_channels:
            return
        model.patch_embedding = widened_conv(proj, self.in_channels, self.latent_channels)
        model.register_to_config(in_channels=self.in_channels, out_channels=self.latent_channels)

    def predict(
        self,
        transformer: torch.nn.Module,
        noisy_latents: torch.Tensor,
        conditions: torch.Tensor,
        prompt_embeds: torch.Tensor,
        timesteps: torch.Tensor,
        attention_kwargs: dict | None = None,
    ) -> torch.Tensor:
        """Wan computes its 3D RoPE inside the transformer, from the input's shape."""
        dtype = compute_dtype(transformer)
        output = transformer(
            hidden_states=_channels_first(self.transformer_input(noisy_latents, conditions).to(dtype)),
            timestep=timesteps,
            encoder_hidden_states=prompt_embeds.to(dtype),
            attention_kwargs=attention_kwargs,
            return_dict=False,
        )[0]
        return _channels_first(output)

    # ---------------------------------------------------------------- training objective (flow matching)
    def shift(self, scheduler: Any) -> float:
        """The timestep shift training uses: `flow_shift` if given, else the scheduler's own."""
        if self.flow_shift is not None:
            return float(self.flow_shift)
        cfg = scheduler.config
        return float(cfg.get("flow_shift", None) or cfg.get("shift", None) or 1.0)

    def training_sigmas(
        self, scheduler: Any, batch: int, device: torch.device, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Noise levels sigma in [0, 1] (B,) for a training batch: drawn by `timestep_sampling`, then shifted."""
        u = compute_density_for_timestep_sampling(
            weighting_scheme=self.timestep_sampling, batch_size=batch, logit_mean=self.logit_mean,
            logit_std=self.logit_std, mode_scale=self.mode_scale, device=device, generator=generator,
        )
        s = self.shift(scheduler)
        return s * u / (1 + (s - 1) * u)

    def noise_for_training(
        self, scheduler: Any, latents: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Flow matching: the transformer takes the integer timestep sigma * 1000 (truncated, as diffusers' Wan
        training does); the loss is weighted by the exact sigma drawn (a sigma below 1/1000 truncates to 0, whose
        sigma_sqrt weight would be infinite)."""
        b = latents.shape[0]
        sigmas = self.training_sigmas(scheduler, b, latents.device, generator)
        noise = torch.randn(latents.shape, device=latents.device, dtype=latents.dtype, generator=generator)
        s = sigmas.view(b, 1, 1, 1, 1).to(latents.dtype)
        noisy = (1.0 - s) * latents + s * noise
        timesteps = (sigmas * scheduler.config.num_train_timesteps).long()
        return noisy, noise, timesteps, sigmas

    def prediction_and_target(
        self,
        scheduler: Any,
        output: torch.Tensor,
        noisy: torch.Tensor,
        latents: torch.Tensor,
        noise: torch.Tensor,
        timesteps: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return output.float(), (noise - latents).float()  # the velocity

    def loss_weights(self, scheduler: Any, levels: torch.Tensor) -> torch.Tensor:
        """SD3's weighting (`loss_weighting`) of the sigmas drawn."""
        return compute_loss_weighting_for_sd3(self.loss_weighting, levels).float()

    # ---------------------------------------------------------------- sampling
    def prepare_latents(
        self, scheduler: Any, shape: tuple[int, ...], device: torch.device, dtype: torch.dtype,
        generator: torch.Generator | list[torch.Generator] | None = None, latents: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Float32 whatever `dtype` (WanPipeline's), drawn in Wan's (B, C, T, h, w) layout as WanPipeline draws it."""
        b, t, c, h, w = shape
        if latents is None:
            return _channels_first(randn_tensor((b, c, t, h, w), generator=generator, device=device,
                                                dtype=torch.float32))
        if tuple(latents.shape) != tuple(shape):
            raise ValueError(f"latents must have shape {tuple(shape)}, got {tuple(latents.shape)}")
        return latents.to(device, torch.float32)

    def to_loop_layout(self, latents: torch.Tensor) -> torch.Tensor:
        """Wan's scheduler steps latents in its own (B, C, T, h, w) layout."""
        return _channels_first(latents)

    def from_loop_layout(self, latents: torch.Tensor) -> torch.Tensor:
        return _channels_first(latents)

    def sampler_timesteps(self, scheduler: Any, num_inference_steps: int, device: torch.device) -> torch.Tensor:
        scheduler.set_timesteps(num_inference_steps, device=device)
        scheduler.set_begin_index(0)
        return scheduler.timesteps

    def start_loop(self, loop: SamplingLoop) -> None:
        loop.state["cache_context"] = _cache_context_of(loop.transformer)

    def model_output(
        self, loop: SamplingLoop, step: int, latents: torch.Tensor, prompt_embeds: torch.Tensor,
        conditions: torch.Tensor, cache_name: str,
    ) -> torch.Tensor:
        """WanPipeline's forward on latents | conditions, in the transformer's dtype (Wan computes its 3D RoPE inside
        the transformer); the cache hooks are told the step and its sigma."""
        model_input = _channels_first(self.transformer_input(_channels_first(latents), conditions).to(loop.dtype))
        context = dict(step_index=step, sigma=float(loop.scheduler.sigmas[step]),
                       num_inference_steps=len(loop.timesteps))
        with loop.state["cache_context"](cache_name, context):
            return loop.transformer(
                hidden_states=model_input, timestep=loop.timesteps[step].expand(latents.shape[0]),
                encoder_hidden_states=prompt_embeds, attention_kwargs=loop.settings.attention_kwargs,
                return_dict=False,
            )[0]

    def scheduler_step(
        self, loop: SamplingLoop, step: int, noise_pred: torch.Tensor, latents: torch.Tensor
    ) -> torch.Tensor:
        """The scheduler's step on float32 latents (WanPipeline's)."""
        return loop.scheduler.step(noise_pred, loop.timesteps[step], latents, return_dict=False)[0]


def _cache_context_of(transformer: torch.nn.Module):
    """`(name, context) -> transformer.cache_context(...)`: newer diffusers tell their cache hooks where the
    denoising loop is (step index, sigma); the releases down to the floor (0.40) take the name alone."""
    takes_context = any(p.kind is inspect.Parameter.VAR_KEYWORD
                        for p in inspect.signature(transformer.cache_context).parameters.values())
    if takes_context:
        return lambda name, context: transformer.cache_context(name, **context)
    return lambda name, context: transformer.cache_context(name)
