"""The CogVideoX specification (CogVideoX 1.0: THUDM/CogVideoX-5b and the tiny family of `vivid/model/tiny.py`).

VAE encoding and decoding (latents times the VAE's scaling factor), the widened patch embedding and LoRA
(`vivid/model/transformer.py`), CogVideoX 1.0's 3D rotary embeddings as its pipeline computes them, and the
training objective of diffusers' CogVideoX LoRA example: a timestep drawn uniformly from [0, num_train_timesteps), noise added by the
scheduler, the v-prediction turned into an x0 prediction with `scheduler.get_velocity`, the squared error to the
clean latents weighted by 1 / (1 - alphas_cumprod[t]). The sampler is the folder's (CogVideoX's DDIM or DPM
scheduler), with classifier-free guidance on a batch of [unconditional, conditional] as CogVideoXPipeline does it.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from diffusers import CogVideoXDPMScheduler, CogVideoXTransformer3DModel
from diffusers.models.embeddings import get_3d_rotary_pos_embed
from diffusers.pipelines.cogvideo.pipeline_cogvideox import get_resize_crop_region_for_grid, retrieve_timesteps
from diffusers.utils.torch_utils import randn_tensor

from vivid.constants import clip_frames_at_most
from vivid.model.configs import COGVIDEOX_5B_TRANSFORMER, COGVIDEOX_5B_VAE, T5_XXL, TINY_T5, TINY_TRANSFORMER, TINY_VAE
from vivid.model.spec import ModelSpecification, SamplingLoop
from vivid.model.transformer import compute_dtype, unwrap, widen_patch_embed


def extra_step_kwargs(scheduler: Any, generator: Any, eta: float) -> dict[str, Any]:
    """The `eta` / `generator` arguments `scheduler.step` takes (diffusers' pipelines pass only those it has)."""
    params = set(inspect.signature(scheduler.step).parameters)
    kwargs: dict[str, Any] = {}
    if "eta" in params:
        kwargs["eta"] = eta
    if "generator" in params:
        kwargs["generator"] = generator
    return kwargs


def rotary_embeddings(
    transformer: CogVideoXTransformer3DModel, height: int, width: int, latent_frames: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """CogVideoX 1.0's 3D rotary embeddings for a pixel size, as its pipeline computes them (None where the model
    has none)."""
    cfg = transformer.config
    if not cfg.use_rotary_positional_embeddings:
        return None
    p = cfg.patch_size
    spatial = CogVideoXSpec.vae_spatial
    grid_h, grid_w = height // (spatial * p), width // (spatial * p)
    crops = get_resize_crop_region_for_grid((grid_h, grid_w), cfg.sample_width // p, cfg.sample_height // p)
    return get_3d_rotary_pos_embed(
        embed_dim=cfg.attention_head_dim,
        crops_coords=crops,
        grid_size=(grid_h, grid_w),
        temporal_size=latent_frames,
        device=device,
    )


def vae_tiling_settings(vae) -> dict[str, float]:
    """`enable_tiling` arguments for `vae`: tiles of half its sample size (diffusers' default) with overlaps of
    whole latent cells. diffusers' fractional overlaps (1/6, 1/5) line up only for CogVideoX-5B's 240x360 tiles
    (for which these settings are the same); at other sizes, e.g. the tiny model's 32x48, its tiles misalign
    (wrong output size) and the encoder fails on thin edge tiles."""
    scale = 2 ** (len(vae.config.block_out_channels) - 1)
    settings: dict[str, float] = {}
    for axis, sample in (("height", vae.config.sample_height), ("width", vae.config.sample_width)):
        latent = max(2, int(sample // 2 / scale))
        tile = latent * scale
        target = latent * (1 / 6 if axis == "height" else 1 / 5)  # diffusers' AutoencoderKLCogVideoX defaults
        factor = _whole_cell_overlap(latent, tile, sorted(range(1, latent), key=lambda c: (abs(c - target), c)))
        settings[f"tile_sample_min_{axis}"] = tile
        settings[f"tile_overlap_factor_{axis}"] = factor
    return settings


def _whole_cell_overlap(latent: int, tile: int, cells_by_preference: list[int]) -> float:
    """An overlap factor from which diffusers' int() arithmetic derives strides and blend widths of whole
    latent cells, in pixels and in latents alike (cells / latent itself can miss by a rounding error)."""
    scale = tile // latent
    for cells in cells_by_preference:
        factor = cells / latent
        for f in (factor, math.nextafter(factor, 1.0), math.nextafter(factor, 0.0)):
            if (int(latent * (1 - f)) == latent - cells and int(latent * f) == cells
                    and int(tile * (1 - f)) == (latent - cells) * scale and int(tile * f) == cells * scale):
                return f
    raise ValueError(f"no VAE tile overlap of whole latent cells for tiles of {latent} latent cells")


class CogVideoXSpec(ModelSpecification):
    name = "cogvideox"
    display_name = "CogVideoX"
    default_architecture = "5b"
    transformer_class_names = ("CogVideoXTransformer3DModel",)
    pipeline_class_name = "CogVideoXPipeline"
    default_model_id = "THUDM/CogVideoX-5b"
    native_frames = 49  # CogVideoX-5B's training length: 4 * 12 + 1
    native_fps = 8
    patch_embedding_name = "patch_embed.proj"
    default_guidance_scale = 6.0
    sampler_options = ("eta", "use_dynamic_cfg")
    objective = "CogVideoX's v-prediction with the loss weighting of diffusers' CogVideoX LoRA example."
    architectures = {
        "5b": dict(model_id="THUDM/CogVideoX-5b", transformer=COGVIDEOX_5B_TRANSFORMER, vae=COGVIDEOX_5B_VAE,
                   text_encoder=T5_XXL),
        "tiny": dict(model_id=None, transformer=TINY_TRANSFORMER, vae=TINY_VAE, text_encoder=TINY_T5),
    }

    # ---------------------------------------------------------------- sizes
    def patch_size(self, transformer: torch.nn.Module) -> tuple[int, int, int]:
        cfg = unwrap(transformer).config
        if getattr(cfg, "patch_size_t", None) is not None:
            raise ValueError("only CogVideoX 1.0 transformers (patch_size_t=None) are supported")
        return (1, cfg.patch_size, cfg.patch_size)

    def native_size(self, transformer: torch.nn.Module | Mapping[str, Any]) -> tuple[int, int]:
        cfg = self.transformer_config(transformer)
        return int(cfg["sample_height"]) * self.vae_spatial, int(cfg["sample_width"]) * self.vae_spatial

    def clip_frames(self, transformer: torch.nn.Module | Mapping[str, Any]) -> int:
        """The transformer config's `sample_frames` (49 for CogVideoX-5B, 9 for the tiny family), as 4k+1."""
        config = self.transformer_config(transformer)
        return clip_frames_at_most(int(config.get("sample_frames", self.native_frames)), self.vae_temporal)

    def vae_compression(self, vae: torch.nn.Module) -> tuple[int, int]:
        cfg = vae.config
        return int(cfg.temporal_compression_ratio), 2 ** (len(cfg.block_out_channels) - 1)

    def enable_vae_tiling(self, vae: torch.nn.Module) -> None:
        """Tiles that line up at any VAE size (`vae_tiling_settings`); for CogVideoX-5B diffusers' own."""
        vae.enable_tiling(**vae_tiling_settings(vae))

    # ---------------------------------------------------------------- VAE
    def encode_video(
        self, vae: torch.nn.Module, video: torch.Tensor, generator: torch.Generator | None = None,
        sample: bool = False,
    ) -> torch.Tensor:
        """`video` stays on its device, which must be the one the VAE runs on: a pipeline's `_execution_device`,
        not `vae.device`, which under model CPU offload is the CPU (until the VAE's hook moves it) and under
        sequential offload `meta`. Only the dtype follows the VAE."""
        dist = vae.encode(video.to(dtype=vae.dtype).permute(0, 2, 1, 3, 4)).latent_dist  # B, C, F, H, W
        latents = dist.sample(generator) if sample else dist.mode()
        return (latents * vae.config.scaling_factor).permute(0, 2, 1, 3, 4)

    def decode_latents(self, vae: torch.nn.Module, latents: torch.Tensor) -> torch.Tensor:
        """Like `encode_video`, the latents stay on their device (the execution device)."""
        x = (latents / vae.config.scaling_factor).permute(0, 2, 1, 3, 4).to(vae.dtype)
        return vae.decode(x).sample.permute(0, 2, 1, 3, 4)

    def normalize_latents(self, vae: torch.nn.Module, latents: torch.Tensor) -> torch.Tensor:
        return latents * vae.config.scaling_factor

    # ---------------------------------------------------------------- text (T5)
    def max_text_length(self, tokenizer: Any, transformer: torch.nn.Module | Mapping[str, Any]) -> int:
        return int(self.transformer_config(transformer)["max_text_seq_length"])

    def text_embedding_dim(self, transformer: torch.nn.Module) -> int:
        return int(unwrap(transformer).config.text_embed_dim)

    @torch.no_grad()
    def encode_prompts(
        self,
        tokenizer: Any,
        text_encoder: torch.nn.Module,
        prompts: Sequence[str],
        max_length: int,
        device: torch.device | str | None = None,
    ) -> torch.Tensor:
        ids = tokenizer(
            list(prompts), padding="max_length", max_length=max_length, truncation=True,
            add_special_tokens=True, return_tensors="pt",
        ).input_ids
        device = device or text_encoder.device  # under offload hooks the encoder's own device can be `meta`
        return text_encoder(ids.to(device))[0].to(device)

    # ---------------------------------------------------------------- transformer
    def widen(self, transformer: torch.nn.Module) -> None:
        widen_patch_embed(unwrap(transformer), self.in_channels, self.latent_channels)

    def rotary_embeddings(
        self, transformer: torch.nn.Module, height: int, width: int, latent_frames: int, device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """CogVideoX 1.0's 3D rotary embeddings for a pixel size (None where the model has none)."""
        return rotary_embeddings(unwrap(transformer), height, width, latent_frames, device)

    def predict(
        self,
        transformer: torch.nn.Module,
        noisy_latents: torch.Tensor,
        conditions: torch.Tensor,
        prompt_embeds: torch.Tensor,
        timesteps: torch.Tensor,
        attention_kwargs: dict | None = None,
    ) -> torch.Tensor:
        _, t, _, h, w = noisy_latents.shape
        rotary = self.rotary_embeddings(
            transformer, h * self.vae_spatial, w * self.vae_spatial, t, noisy_latents.device
        )
        dtype = compute_dtype(transformer)
        return transformer(
            hidden_states=self.transformer_input(noisy_latents, conditions).to(dtype),
            encoder_hidden_states=prompt_embeds.to(dtype),
            timestep=timesteps,
            image_rotary_emb=rotary,
            attention_kwargs=attention_kwargs,
            return_dict=False,
        )[0]

    # ---------------------------------------------------------------- training objective (v-prediction)
    def noise_for_training(
        self, scheduler: Any, latents: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """DDPM: integer timesteps, which are also the noise levels the loss weighting reads."""
        b, device = latents.shape[0], latents.device
        num_train_timesteps = scheduler.config.num_train_timesteps
        timesteps = torch.randint(0, num_train_timesteps, (b,), device=device, generator=generator).long()
        noise = torch.randn(latents.shape, device=device, dtype=latents.dtype, generator=generator)
        return scheduler.add_noise(latents, noise, timesteps), noise, timesteps, timesteps

    def prediction_and_target(
        self,
        scheduler: Any,
        output: torch.Tensor,
        noisy: torch.Tensor,
        latents: torch.Tensor,
        noise: torch.Tensor,
        timesteps: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        # v-prediction -> x0 prediction, compared with the clean latents
        return scheduler.get_velocity(output.float(), noisy.float(), timesteps), latents.float()

    def loss_weights(self, scheduler: Any, levels: torch.Tensor) -> torch.Tensor:
        alphas_cumprod = scheduler.alphas_cumprod.to(device=levels.device, dtype=torch.float32)[levels]
        return 1.0 / (1.0 - alphas_cumprod)

    # ---------------------------------------------------------------- sampling
    def prepare_latents(
        self, scheduler: Any, shape: tuple[int, ...], device: torch.device, dtype: torch.dtype,
        generator: torch.Generator | list[torch.Generator] | None = None, latents: torch.Tensor | None = None,
    ) -> torch.Tensor:
        shape = tuple(shape)
        if latents is None:
            latents = randn_tensor(shape, generator=generator, device=device, dtype=dtype)
        elif tuple(latents.shape) != shape:
            raise ValueError(f"latents must have shape {shape}, got {tuple(latents.shape)}")
        return latents.to(device, dtype) * scheduler.init_noise_sigma

    def sampler_timesteps(self, scheduler: Any, num_inference_steps: int, device: torch.device) -> torch.Tensor:
        return retrieve_timesteps(scheduler, num_inference_steps, device)[0]

    def start_loop(self, loop: SamplingLoop) -> None:
        """The rotary embeddings of the loop's size and the scheduler's `eta` / `generator` arguments, once."""
        _, t, _, h, w = loop.conditions.shape
        loop.state["rotary"] = self.rotary_embeddings(
            loop.transformer, h * self.vae_spatial, w * self.vae_spatial, t, loop.device
        )
        loop.state["step_kwargs"] = extra_step_kwargs(loop.scheduler, loop.settings.generator, loop.settings.eta)
        loop.state["old_pred_original_sample"] = None  # the DPM scheduler's second-order memory

    def model_output(
        self, loop: SamplingLoop, step: int, latents: torch.Tensor, prompt_embeds: torch.Tensor,
        conditions: torch.Tensor, cache_name: str,
    ) -> torch.Tensor:
        """CogVideoXPipeline's forward: the scheduler-scaled latents | conditions, the v-prediction in float32."""
        step_t = loop.timesteps[step]
        model_input = self.transformer_input(loop.scheduler.scale_model_input(latents, step_t), conditions)
        with loop.transformer.cache_context(cache_name):
            return loop.transformer(
                hidden_states=model_input,
                encoder_hidden_states=prompt_embeds,
                timestep=step_t.expand(model_input.shape[0]),
                image_rotary_emb=loop.state["rotary"],
                attention_kwargs=loop.settings.attention_kwargs,
                return_dict=False,
            )[0].float()

    def scheduler_step(
        self, loop: SamplingLoop, step: int, noise_pred: torch.Tensor, latents: torch.Tensor
    ) -> torch.Tensor:
        """DDIM, or CogVideoX's DPM with its previous x0 prediction and timestep; latents back in the compute
        dtype."""
        step_t, scheduler, kwargs = loop.timesteps[step], loop.scheduler, loop.state["step_kwargs"]
        if isinstance(scheduler, CogVideoXDPMScheduler):
            previous_t = loop.timesteps[step - 1] if step > 0 else None
            latents, loop.state["old_pred_original_sample"] = scheduler.step(
                noise_pred, loop.state["old_pred_original_sample"], step_t, previous_t, latents, **kwargs,
                return_dict=False,
            )
        else:
            latents = scheduler.step(noise_pred, step_t, latents, **kwargs, return_dict=False)[0]
        return latents.to(loop.dtype)

