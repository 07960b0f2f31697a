"""The model specification: everything VIVID needs to know about a base video model, behind one object.

In the manner of finetrainers' `ModelSpecification`: the pipeline, the trainer, the FLOPs counter and the CLI ask
the specification, never the base model's classes, for the things that differ between bases. One subclass per
base (`vivid/model/cogvideox_spec.py`, `vivid/model/wan_spec.py`); `vivid/model/registry.py` picks one by the
transformer class of a model folder, config or module.

Conventions shared by every base:
- pixel videos are (B, F, 3, H, W) in [-1, 1], masks (B, F, 1, H, W) with 1 = edit, uint8 batches (B, F, 3, H, W);
- latents are (B, T, C, h, w) (frames before channels, as CogVideoX has them); a base whose modules take
  (B, C, T, h, w) (Wan) permutes at its VAE and transformer calls, so that masks, conditions and losses are the
  same code for every base;
- latents are normalised (CogVideoX: times the VAE's scaling factor; Wan: minus the per-channel mean, over the
  per-channel std) before the transformer sees them;
- the transformer input is noise (C) | masked-video latents (C) | packed mask (temporal) on the channel axis, the
  patch embedding widened with the new input channels at zero, so that before training the model computes
  exactly what the base computes.
"""

from __future__ import annotations

import math
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import diffusers
import torch
from diffusers.utils.torch_utils import randn_tensor
from peft import LoraConfig

from vivid.constants import clip_frames_at_most
from vivid.conditioning.mask_tensors import latent_frame_count, pack_mask
from vivid.model.transformer import (
    compute_dtype,
    format_parameter_report,
    lora_config,
    make_vivid_transformer,
    parameter_report,
    unwrap,
)

# The five components every base has, in the names diffusers' pipelines give them.
COMPONENT_NAMES = ("tokenizer", "text_encoder", "vae", "transformer", "scheduler")

# `on_step(i, t, tensors)` is called after each denoising step with the loop's `latents` (B, T, C, h, w),
# `prompt_embeds` and `negative_prompt_embeds`; it may return replacements for any of them (what diffusers'
# `callback_on_step_end` may replace).
StepCallback = Callable[[int, torch.Tensor, dict[str, Any]], "Mapping[str, Any] | None"]
# `before_step(i, t, guidance_scale)` is called before each denoising step with the step's guidance scale.
StepStart = Callable[[int, torch.Tensor, float], None]


@dataclass(frozen=True)
class SamplingSettings:
    """What a sampler run is asked for. Steps and guidance scale default to the base's; `latents` (B, T, C, h, w)
    replace the noise drawn from `generator`; `eta` (DDIM/DPM) and `use_dynamic_cfg` (a cosine ramp of the
    guidance scale, `dynamic_guidance_scale`) only where the base's `sampler_options` name them."""

    num_inference_steps: int | None = None
    guidance_scale: float | None = None
    generator: torch.Generator | list[torch.Generator] | None = None
    latents: torch.Tensor | None = None
    attention_kwargs: dict | None = None
    eta: float = 0.0
    use_dynamic_cfg: bool = False


@dataclass(frozen=True)
class StepHooks:
    """The caller's part in a sampler run: `before_step` and `on_step` (see StepStart / StepCallback), a
    progress bar (`update()` once per step), and `interrupted()`, asked before each step: True skips the rest."""

    before_step: StepStart | None = None
    on_step: StepCallback | None = None
    progress: Any = None
    interrupted: Callable[[], bool] | None = None


@dataclass
class SamplingLoop:
    """One run of a sampler, as the base's steps see it: conditions in the compute dtype (doubled where guidance is
    batched), the scheduler's timesteps, and `state` for what the base keeps between steps."""

    transformer: torch.nn.Module
    scheduler: Any
    timesteps: torch.Tensor
    conditions: torch.Tensor
    guidance_scale: float
    do_cfg: bool
    device: torch.device
    dtype: torch.dtype
    settings: SamplingSettings
    state: dict[str, Any] = field(default_factory=dict)


def vivid_in_channels(latent_channels: int, vae_temporal: int) -> int:
    """A VIVID transformer's input channels: noise (latent_channels) | masked-video latents (latent_channels) | the
    mask packed one channel per frame of a latent frame's group (vae_temporal)."""
    return 2 * latent_channels + vae_temporal


def to_unit_range(video_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [-1, 1] (0 maps to -1, the value of erased pixels)."""
    return video_uint8.float() / 127.5 - 1.0


def transformer_input(noisy_latents: torch.Tensor, conditions: torch.Tensor) -> torch.Tensor:
    """noise | masked-video latents | mask latents on the channel axis (dim 2) of (B, T, C, h, w) latents."""
    return torch.cat([noisy_latents, conditions.to(noisy_latents.dtype)], dim=2)


def weighted_latent_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    weights: torch.Tensor,
    conditions: torch.Tensor,
    latent_channels: int,
    mask_loss_weight: float = 0.0,
    region: torch.Tensor | None = None,
) -> torch.Tensor:
    """The mean over the batch of each sample's weighted squared error (a scalar).

    `weights` (B,) weight whole samples (the objective's timestep weighting); `mask_loss_weight` > 0 weights the
    latent cells of the edit region (`region` (B, T, 1, h, w), 1 = weighted; by default any packed mask channel
    of `conditions` set) 1 + `mask_loss_weight` times the others, the loss staying a weighted mean, so 0 is the
    base's own loss exactly.
    """
    b = pred.shape[0]
    error = weights.view(b, 1, 1, 1, 1) * (pred - target) ** 2
    if mask_loss_weight == 0:
        return error.reshape(b, -1).mean(dim=1).mean()
    if mask_loss_weight < 0:
        raise ValueError(f"mask_loss_weight must be >= 0, got {mask_loss_weight}")
    if region is None:
        region = conditions[:, :, latent_channels:].amax(dim=2, keepdim=True)  # (B, T, 1, h, w), 1 = edit
    cell_weights = (1.0 + mask_loss_weight * region.float().to(error.device)).expand_as(error)
    loss = (cell_weights * error).reshape(b, -1).sum(dim=1) / cell_weights.reshape(b, -1).sum(dim=1)
    return loss.mean()


class ModelSpecification(ABC):
    """What VIVID needs from a base video model. Subclasses fill in the class attributes and the abstract
    methods; the rest is shared.

    Stateless apart from the subclass's own training options: one instance serves any model of its family.
    """

    # ---- identity
    name: ClassVar[str]  # the family: "cogvideox", "wan" (written to vivid_config.json as `family`)
    display_name: ClassVar[str]  # as people write it: "CogVideoX", "Wan2.1"
    transformer_class_names: ClassVar[tuple[str, ...]]  # diffusers classes this spec handles
    pipeline_class_name: ClassVar[str]  # the stock diffusers pipeline ("CogVideoXPipeline", "WanPipeline")
    default_model_id: ClassVar[str]  # the hub id VIVID's recipe starts from
    inference_only: ClassVar[bool] = False  # a base vivid edits with as published (no VIVID weights, no training)
    takes_reference_images: ClassVar[bool] = False  # images of what to generate, beside the video (VACE's)

    # ---- latent space (checked against the VAE's config by `check_vae`)
    latent_channels: ClassVar[int] = 16
    vae_temporal: ClassVar[int] = 4  # frames per latent frame (after the first)
    vae_spatial: ClassVar[int] = 8  # pixels per latent cell side

    # ---- native clip
    native_frames: ClassVar[int]
    native_fps: ClassVar[int]

    # ---- recipe defaults
    lora_rank: ClassVar[int] = 32
    lora_alpha: ClassVar[int] = 32
    lora_targets: ClassVar[tuple[str, ...]] = ("to_q", "to_k", "to_v", "to_out.0")
    patch_embedding_name: ClassVar[str]  # module path of the patch embedding conv, e.g. "patch_embed.proj"
    default_guidance_scale: ClassVar[float]
    default_num_inference_steps: ClassVar[int] = 50
    objective: ClassVar[str]  # the training objective in a sentence (model cards of exported weights)

    # ---- published architectures (and the tiny family), for meta-device builds and the FLOPs counter:
    # size name -> {"model_id", "transformer", "vae", "text_encoder"} (constructor arguments of the classes)
    architectures: ClassVar[dict[str, dict[str, Any]]]
    default_architecture: ClassVar[str]  # the size `vivid flops` counts unless told ("5b", "1.3b")

    def refuse_training(self, what: str) -> None:
        """ValueError (one line) where `what` (VIVID weights, a LoRA, `vivid train`) does not apply to this base:
        never for a base VIVID trains on."""

    # ================================================================ layout and sizes
    @property
    def mask_channels(self) -> int:
        """Channels of the packed mask: one per frame of a latent frame's group."""
        return self.vae_temporal

    @property
    def in_channels(self) -> int:
        """The widened transformer's input channels: noise | masked-video latents | packed mask."""
        return vivid_in_channels(self.latent_channels, self.vae_temporal)

    @property
    def condition_channels(self) -> int:
        """Channels of the condition latents: masked-video latents | packed mask."""
        return self.latent_channels + self.mask_channels

    @abstractmethod
    def patch_size(self, transformer: torch.nn.Module) -> tuple[int, int, int]:
        """The transformer's (t, h, w) patch size in latent cells."""

    def size_multiple(self, transformer: torch.nn.Module) -> int:
        """Pixel heights and widths must be multiples of this (VAE cells times spatial patch)."""
        return self.vae_spatial * self.patch_size(transformer)[1]

    @abstractmethod
    def native_size(self, transformer: torch.nn.Module | Mapping[str, Any]) -> tuple[int, int]:
        """The (height, width) in pixels the base was trained at (its default working area), from the transformer
        or its config alone (as `clip_frames`). With `native_frames`, `native_fps`, `default_num_inference_steps`
        and `default_guidance_scale`: the defaults of an edit where the user gives none."""

    def clip_frames(self, transformer: torch.nn.Module | Mapping[str, Any]) -> int:
        """Frames of one clip of the model (4k+1), what a long edit's clips hold at most by default, from the
        transformer or its config alone (`transformer.config`, a transformer config.json's dict): here the
        base's `native_frames`."""
        return clip_frames_at_most(self.native_frames, self.vae_temporal)

    @staticmethod
    def transformer_config(transformer: torch.nn.Module | Mapping[str, Any]) -> Mapping[str, Any]:
        """The config of a (possibly wrapped) transformer, or the config given."""
        return transformer if isinstance(transformer, Mapping) else unwrap(transformer).config

    def latent_frames(self, num_frames: int) -> int:
        """Latent frames of a `num_frames` clip; ValueError unless `num_frames` is 4k+1 (the VAE's rule)."""
        return latent_frame_count(num_frames, self.vae_temporal)

    def padded_frame_count(self, num_frames: int) -> int:
        """The smallest frame count >= `num_frames` the VAE takes (4k+1)."""
        if num_frames < 1:
            raise ValueError(f"frame count must be >= 1, got {num_frames}")
        return self.vae_temporal * math.ceil((num_frames - 1) / self.vae_temporal) + 1

    def latent_shape(self, batch: int, num_frames: int, height: int, width: int) -> tuple[int, int, int, int, int]:
        """The (B, T, C, h, w) shape of the latents of `batch` clips of num_frames x height x width."""
        if height % self.vae_spatial or width % self.vae_spatial:
            raise ValueError(f"size {height}x{width} must be a multiple of {self.vae_spatial}")
        return (batch, self.latent_frames(num_frames), self.latent_channels,
                height // self.vae_spatial, width // self.vae_spatial)

    # ================================================================ components
    @property
    def stock_pipeline_class(self) -> type:
        """diffusers' own pipeline class for this base (`CogVideoXPipeline`, `WanPipeline`)."""
        return getattr(diffusers, self.pipeline_class_name)

    def load_components(
        self, model: str | os.PathLike, dtype: torch.dtype | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        """The five components (tokenizer, text_encoder, vae, transformer, scheduler) of a diffusers folder or hub
        id, loaded with the stock pipeline class; weights in `dtype` (default: as stored), except where a base
        keeps its VAE in float32 (`vae_dtype`). `kwargs` go to `from_pretrained`."""
        options = dict(kwargs)
        if dtype is not None:
            options["dtype"] = self.loading_dtype(dtype)
        pipe = self.stock_pipeline_class.from_pretrained(model, **options)
        components = {name: getattr(pipe, name) for name in COMPONENT_NAMES}
        self.keep_vae_dtype(components["vae"], dtype)
        self.check_vae(components["vae"])
        return components

    def loading_dtype(self, dtype: torch.dtype) -> torch.dtype | dict[str, torch.dtype]:
        """diffusers' `from_pretrained` dtype argument that loads the components in `dtype` and the VAE in
        `vae_dtype(dtype)`: the one rule of training (`load_components`) and inference (`VIVIDPipeline`)."""
        vae_dtype = self.vae_dtype(dtype)
        return dtype if vae_dtype in (None, dtype) else {"default": dtype, "vae": vae_dtype}

    def keep_vae_dtype(self, vae: torch.nn.Module, dtype: torch.dtype | None) -> None:
        """In place: `vae` in `vae_dtype(dtype)` where the base keeps its VAE in a dtype of its own and the folder
        stores it in another."""
        vae_dtype = self.vae_dtype(dtype)
        if vae_dtype is not None and vae.dtype != vae_dtype:
            vae.to(vae_dtype)

    def load_text_components(
        self, model: str | os.PathLike, dtype: torch.dtype | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        """The tokenizer and text encoder alone of a diffusers folder or hub id (what precomputing caption
        embeddings needs), loaded as `load_components` loads them, the transformer and VAE skipped."""
        options = dict(kwargs, transformer=None, vae=None)
        if dtype is not None:
            options["dtype"] = dtype
        pipe = self.stock_pipeline_class.from_pretrained(model, **options)
        return {"tokenizer": pipe.tokenizer, "text_encoder": pipe.text_encoder}

    def load_transformer_config(self, model: str | os.PathLike, **kwargs: Any) -> dict[str, Any]:
        """The transformer's config (its config.json) of a diffusers folder or hub id, without its weights."""
        cls = getattr(diffusers, self.transformer_class_names[0])
        return dict(cls.load_config(model, subfolder="transformer", **kwargs))

    def vae_dtype(self, dtype: torch.dtype | None) -> torch.dtype | None:
        """The dtype the VAE is kept in when the others are in `dtype` (None: the same)."""
        return None

    @abstractmethod
    def vae_compression(self, vae: torch.nn.Module) -> tuple[int, int]:
        """(temporal, spatial) compression of `vae`, read from its config."""

    def enable_vae_tiling(self, vae: torch.nn.Module) -> None:
        """Encode and decode with the VAE in tiles (lower peak memory)."""
        vae.enable_tiling()

    def check_vae(self, vae: torch.nn.Module) -> None:
        """ValueError unless `vae` compresses as this spec packs masks (4x in time, 8x in space)."""
        temporal, spatial = self.vae_compression(vae)
        if (temporal, spatial) != (self.vae_temporal, self.vae_spatial):
            raise ValueError(
                f"{type(vae).__name__} compresses {temporal}x in time and {spatial}x in space; the {self.name} "
                f"specification packs masks for {self.vae_temporal}x and {self.vae_spatial}x"
            )

    # ================================================================ VAE
    @abstractmethod
    def encode_video(
        self, vae: torch.nn.Module, video: torch.Tensor, generator: torch.Generator | None = None,
        sample: bool = False,
    ) -> torch.Tensor:
        """(B, F, 3, H, W) in [-1, 1] -> normalised latents (B, T, C, h, w): the posterior's mode, or a draw from it
        with `sample` (training targets)."""

    @abstractmethod
    def decode_latents(self, vae: torch.nn.Module, latents: torch.Tensor) -> torch.Tensor:
        """Normalised latents (B, T, C, h, w) -> video (B, F, 3, H, W) in [-1, 1]."""

    @torch.no_grad()
    def posterior(self, vae: torch.nn.Module, videos_uint8: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The VAE posterior's mean and std (B, T, C, h, w), NOT normalised, of uint8 videos (B, F, 3, H, W)
        (what a latent cache stores: the VAE is frozen). Both bases' VAEs take (B, 3, F, H, W)."""
        x = to_unit_range(videos_uint8).to(device=vae.device, dtype=vae.dtype).permute(0, 2, 1, 3, 4)
        dist = vae.encode(x).latent_dist
        return dist.mean.permute(0, 2, 1, 3, 4), dist.std.permute(0, 2, 1, 3, 4)

    @abstractmethod
    def normalize_latents(self, vae: torch.nn.Module, latents: torch.Tensor) -> torch.Tensor:
        """Raw VAE latents (B, T, C, h, w) -> the normalised latents the transformer sees."""

    def pack_mask(self, mask: torch.Tensor) -> torch.Tensor:
        """Pixel mask (B, F, 1, H, W) -> mask latents (B, T, temporal, h, w), packed as the VAE packs time: latent
        frame 0 <- frame 0 repeated, latent frame j <- frames 4j-3 .. 4j as channels; space max-pooled 8x."""
        return pack_mask(mask, self.vae_temporal, self.vae_spatial)

    def conditions_from_latents(self, masked_latents: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Condition latents (B, T, C + temporal, h, w): the masked video's normalised latents (B, T, C, h, w) | the
        pixel mask (B, F, 1, H, W) packed."""
        mask_latents = self.pack_mask(mask.to(masked_latents.device)).to(masked_latents.dtype)
        if mask_latents.shape[1] != masked_latents.shape[1]:
            raise AssertionError(
                f"mask packs to {mask_latents.shape[1]} latent frames, video to {masked_latents.shape[1]}"
            )
        return torch.cat([masked_latents, mask_latents], dim=2)

    def encode_conditions(
        self, vae: torch.nn.Module, masked_video: torch.Tensor, mask: torch.Tensor,
        reference_images: Sequence[torch.Tensor] = (),
    ) -> torch.Tensor:
        """Condition latents of a masked video (B, F, 3, H, W) in [-1, 1] (erased pixels at -1, any KIVE keyframe
        in frame 0) and its mask (B, F, 1, H, W) (frame 0 zeroed under KIVE). `reference_images`: those of
        `prepare_reference_images`, for a base that `takes_reference_images` (their latent frames come first)."""
        if len(reference_images):
            self.refuse_reference_images()
        return self.conditions_from_latents(self.encode_video(vae, masked_video), mask)

    # ================================================================ reference images
    def refuse_reference_images(self, label: str = "reference_images") -> None:
        """ValueError (one line, naming `label` and the base) unless the base `takes_reference_images`."""
        if not self.takes_reference_images:
            raise ValueError(f"{label}: {self.display_name} takes no reference images (only a Wan2.1-VACE model "
                             f"does)")

    def prepare_reference_images(
        self, vae: torch.nn.Module, images: Sequence[Any], size: tuple[int, int], device: torch.device
    ) -> list[torch.Tensor]:
        """Reference images (PIL) as the base's pipeline prepares them for a working `size` (height, width):
        tensors (3, H, W) in [-1, 1] for `encode_conditions`."""
        self.refuse_reference_images()
        return []

    @torch.no_grad()
    def encode_targets(
        self,
        vae: torch.nn.Module,
        video: torch.Tensor,
        generator: torch.Generator | None = None,
        posterior: Callable[[torch.nn.Module, torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None = None,
    ) -> torch.Tensor:
        """Target latents of uint8 videos (B, F, 3, H, W): a sample of the VAE posterior, normalised."""
        mean, std = (posterior or self.posterior)(vae, video)
        # a posterior sample as diffusers' DiagonalGaussianDistribution.sample draws it (same generator use)
        shape = mean.permute(0, 2, 1, 3, 4).shape  # the VAE's (B, C, T, h, w), as its posterior draws
        noise = randn_tensor(shape, generator=generator, device=mean.device, dtype=mean.dtype)
        return self.normalize_latents(vae, mean + std * noise.permute(0, 2, 1, 3, 4))

    def encode_batch(
        self,
        vae: torch.nn.Module,
        batch: dict[str, Any],
        generator: torch.Generator | None = None,
        posterior: Callable[[torch.nn.Module, torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """A loader batch (uint8 `video`, `masked_video` (B, F, 3, H, W), `mask` (B, F, 1, H, W)) -> (target
        latents drawn from the posterior, conditions from its mode). `posterior` replaces `self.posterior`
        (e.g. by a cached one); nothing here keeps a graph."""
        for name in ("video", "masked_video", "mask"):
            if name not in batch:
                raise KeyError(f"batch has no {name!r} (keys: {sorted(batch)})")
        video, masked, mask = batch["video"], batch["masked_video"], batch["mask"]
        if video.dim() != 5 or video.shape[2] != 3 or masked.shape != video.shape:
            raise ValueError(
                f"batch video {tuple(video.shape)} / masked_video {tuple(masked.shape)} must both be (B, F, 3, H, W)"
            )
        if mask.shape != (*video.shape[:2], 1, *video.shape[3:]):
            raise ValueError(f"batch mask {tuple(mask.shape)} must be (B, F, 1, H, W) for video {tuple(video.shape)}")
        posterior = posterior or self.posterior
        latents = self.encode_targets(vae, video, generator, posterior)
        masked_mean, _ = posterior(vae, masked)  # conditions use the posterior's mode (= mean)
        return latents, self.conditions_from_latents(self.normalize_latents(vae, masked_mean), mask.float())

    # ================================================================ text
    @abstractmethod
    def max_text_length(self, tokenizer: Any, transformer: torch.nn.Module | Mapping[str, Any]) -> int:
        """Tokens per caption (longer captions are truncated, shorter ones padded), from the tokenizer and the
        transformer or its config alone."""

    @abstractmethod
    def text_embedding_dim(self, transformer: torch.nn.Module) -> int:
        """The width D of the caption embeddings the transformer takes."""

    @abstractmethod
    def encode_prompts(
        self,
        tokenizer: Any,
        text_encoder: torch.nn.Module,
        prompts: Sequence[str],
        max_length: int,
        device: torch.device | str | None = None,
    ) -> torch.Tensor:
        """Text embeddings (B, max_length, D) of `prompts`, as the base's own pipeline computes them."""

    # ================================================================ transformer
    def transformer_input(self, noisy_latents: torch.Tensor, conditions: torch.Tensor) -> torch.Tensor:
        """noise | masked-video latents | mask latents on the channel axis (B, T, in_channels, h, w)."""
        return transformer_input(noisy_latents, conditions)

    def patch_embedding(self, transformer: torch.nn.Module) -> torch.nn.Module:
        """The patch embedding convolution (the module VIVID widens and trains in full)."""
        return unwrap(transformer).get_submodule(self.patch_embedding_name)

    @abstractmethod
    def widen(self, transformer: torch.nn.Module) -> None:
        """Give the patch embedding `in_channels` inputs, the new ones at zero; a no-op if already widened."""

    def make_vivid(
        self,
        transformer: torch.nn.Module,
        rank: int | None = None,
        alpha: int | None = None,
        targets: Sequence[str] | None = None,
    ) -> torch.nn.Module:
        """In place: widen the patch embedding, add the LoRA (rank/alpha/targets default to the recipe's), freeze
        everything but the LoRA and the patch embedding. Returns `transformer`."""
        return make_vivid_transformer(
            transformer, rank or self.lora_rank, alpha or self.lora_alpha, targets or self.lora_targets,
            widen=self.widen, patch_embedding=self.patch_embedding_name,
        )

    def lora_config(self, rank: int | None = None, alpha: int | None = None) -> LoraConfig:
        """peft's config of the recipe's LoRA (rank and alpha default to the recipe's) on `lora_targets`."""
        return lora_config(rank or self.lora_rank, alpha or self.lora_alpha, self.lora_targets)

    def parameter_report(self, transformer: torch.nn.Module) -> dict[str, float]:
        """Trainable and total parameters (works on the meta device)."""
        return parameter_report(unwrap(transformer))

    def format_parameter_report(self, transformer: torch.nn.Module) -> str:
        return format_parameter_report(self.parameter_report(transformer))

    def lora_parameter_count(
        self, transformer: torch.nn.Module, rank: int | None = None, targets: Sequence[str] | None = None
    ) -> int:
        """Parameters a LoRA of `rank` on `targets` (default: the recipe's) adds to `transformer`, a model without
        LoRA (works on the meta device): rank x (inputs + outputs) per targeted linear layer, the layers matched
        by name as peft matches `target_modules` (the whole name or its last components)."""
        rank = rank or self.lora_rank
        targets = tuple(targets or self.lora_targets)
        total = 0
        for name, module in unwrap(transformer).named_modules():
            if isinstance(module, torch.nn.Linear) and any(name == t or name.endswith("." + t) for t in targets):
                total += rank * (module.in_features + module.out_features)
        return total

    def rotary_embeddings(
        self, transformer: torch.nn.Module, height: int, width: int, latent_frames: int, device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Positional inputs the caller passes the transformer for a pixel size (CogVideoX's 3D rotary embeddings);
        None where the transformer computes its own (Wan)."""
        return None

    @abstractmethod
    def predict(
        self,
        transformer: torch.nn.Module,
        noisy_latents: torch.Tensor,
        conditions: torch.Tensor,
        prompt_embeds: torch.Tensor,
        timesteps: torch.Tensor,
        attention_kwargs: dict | None = None,
    ) -> torch.Tensor:
        """One transformer forward on noise | conditions (B, T, ...), in the compute dtype; the raw model output
        (B, T, C, h, w) (CogVideoX: v-prediction; Wan: flow velocity). Positional inputs (rotary embeddings) are
        the spec's business."""

    # ================================================================ training objective
    @abstractmethod
    def noise_for_training(
        self, scheduler: Any, latents: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Draw timesteps and noise for clean `latents` -> (noisy latents, noise, timesteps (B,) as the transformer
        takes them, noise levels (B,) as `loss_weights` reads them: exactly what was drawn, never recomputed from
        a rounded timestep)."""

    @abstractmethod
    def prediction_and_target(
        self,
        scheduler: Any,
        output: torch.Tensor,
        noisy: torch.Tensor,
        latents: torch.Tensor,
        noise: torch.Tensor,
        timesteps: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(what the loss compares, with what), both float32 (B, T, C, h, w)."""

    @abstractmethod
    def loss_weights(self, scheduler: Any, levels: torch.Tensor) -> torch.Tensor:
        """Per-sample loss weights (B,) float32 for the noise `levels` of `noise_for_training`."""

    def compute_loss(
        self,
        transformer: torch.nn.Module,
        scheduler: Any,
        latents: torch.Tensor,
        conditions: torch.Tensor,
        prompt_embeds: torch.Tensor,
        generator: torch.Generator | None = None,
        mask_loss_weight: float = 0.0,
        region: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The base's training loss (a scalar) for clean normalised `latents` (B, T, C, h, w), their conditions and
        caption embeddings. `transformer` may be wrapped (DDP, DeepSpeed); `generator` draws the timesteps and
        the noise, so a step is reproducible from its seed alone. See `weighted_latent_loss` for the mask weight
        and `region`."""
        noisy, noise, timesteps, levels = self.noise_for_training(scheduler, latents, generator)
        output = self.predict(transformer, noisy, conditions, prompt_embeds, timesteps)
        pred, target = self.prediction_and_target(scheduler, output, noisy, latents, noise, timesteps)
        weights = self.loss_weights(scheduler, levels)
        return weighted_latent_loss(pred, target, weights, conditions, self.latent_channels, mask_loss_weight, region)

    # ================================================================ sampling
    # `sample` is the loop every base shares (timesteps, guidance, the step hooks, interruption, progress); a base
    # supplies its scheduler rules (`sampler_timesteps`, `initial_latents`, `scheduler_step`) and its one
    # denoising forward (`model_output`), in the layout its scheduler steps latents in (`to_loop_layout`).
    sampler_options: ClassVar[tuple[str, ...]] = ()  # SamplingSettings fields only this base's sampler takes
    batched_guidance: ClassVar[bool] = True  # unconditional and conditional in one forward (else two)

    def refuse_sampler_options(self, eta: float = 0.0, use_dynamic_cfg: bool = False) -> None:
        """ValueError (one line, naming the base) for a sampler option this base does not take."""
        given = {"eta": eta != 0.0, "use_dynamic_cfg": bool(use_dynamic_cfg)}
        refused = [name for name, is_given in given.items() if is_given and name not in self.sampler_options]
        if refused:
            raise ValueError(f"{self.display_name}'s sampler takes no {' or '.join(refused)} "
                             f"(options of another base's sampler)")

    @abstractmethod
    def prepare_latents(
        self, scheduler: Any, shape: tuple[int, ...], device: torch.device, dtype: torch.dtype,
        generator: torch.Generator | list[torch.Generator] | None = None, latents: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The initial noise (B, T, C, h, w) = `shape` of the denoising loop, drawn from `generator` as the base's
        pipeline draws it, or `latents` (checked against `shape`), scaled as the base's sampler starts."""

    def to_loop_layout(self, latents: torch.Tensor) -> torch.Tensor:
        """VIVID's (B, T, C, h, w) latents -> the layout the base's scheduler steps them in (default: the same)."""
        return latents

    def from_loop_layout(self, latents: torch.Tensor) -> torch.Tensor:
        """The inverse of `to_loop_layout`."""
        return latents

    @abstractmethod
    def sampler_timesteps(self, scheduler: Any, num_inference_steps: int, device: torch.device) -> torch.Tensor:
        """Set `scheduler` up for `num_inference_steps` steps; its timesteps, in order."""

    def start_loop(self, loop: SamplingLoop) -> None:
        """Anything the base computes once per loop, into `loop.state` (default: nothing)."""

    @abstractmethod
    def model_output(
        self, loop: SamplingLoop, step: int, latents: torch.Tensor, prompt_embeds: torch.Tensor,
        conditions: torch.Tensor, cache_name: str,
    ) -> torch.Tensor:
        """The base's one denoising forward at step `step` on loop-layout `latents` and their `conditions` (batch
        of either), in the layout of `latents`; `cache_name` names the forward for diffusers' cache hooks."""

    @abstractmethod
    def scheduler_step(
        self, loop: SamplingLoop, step: int, noise_pred: torch.Tensor, latents: torch.Tensor
    ) -> torch.Tensor:
        """Loop-layout `latents` after step `step` of the scheduler with the guided `noise_pred`."""

    @torch.no_grad()
    def sample(
        self,
        transformer: torch.nn.Module,
        scheduler: Any,
        conditions: torch.Tensor,
        prompt_embeds: torch.Tensor,
        negative_prompt_embeds: torch.Tensor | None = None,
        settings: SamplingSettings | None = None,
        hooks: StepHooks | None = None,
    ) -> torch.Tensor:
        """The base's denoising loop with its sampler and classifier-free guidance, conditioned on `conditions`
        (B, T, C + temporal, h, w): returns the denoised normalised latents (B, T, C, h, w). Guidance runs when the
        scale is > 1 and needs `negative_prompt_embeds`; see `SamplingSettings` and `StepHooks`."""
        settings, hooks = settings or SamplingSettings(), hooks or StepHooks()
        self.refuse_sampler_options(settings.eta, settings.use_dynamic_cfg)
        loop = self._start_sampling(transformer, scheduler, conditions, settings)
        if loop.do_cfg and negative_prompt_embeds is None:
            raise ValueError("guidance_scale > 1 needs negative_prompt_embeds")
        b, t, _, h, w = conditions.shape
        shape = (b, t, self.latent_channels, h, w)
        latents = self.to_loop_layout(self.prepare_latents(
            scheduler, shape, loop.device, loop.dtype, settings.generator, settings.latents))
        embeds = {"prompt_embeds": prompt_embeds, "negative_prompt_embeds": negative_prompt_embeds}
        self.start_loop(loop)
        for i, step_t in enumerate(loop.timesteps):
            if hooks.interrupted is not None and hooks.interrupted():
                break
            scale = loop.guidance_scale
            if settings.use_dynamic_cfg:
                scale = dynamic_guidance_scale(i, len(loop.timesteps), loop.guidance_scale)
            if hooks.before_step is not None:
                hooks.before_step(i, step_t, scale)
            noise_pred = self._guided_prediction(loop, i, latents, embeds, scale)
            latents = self.scheduler_step(loop, i, noise_pred, latents)
            if hooks.on_step is not None:
                replaced = hooks.on_step(i, step_t, {"latents": self.from_loop_layout(latents), **embeds}) or {}
                if "latents" in replaced:
                    latents = self.to_loop_layout(replaced["latents"])
                embeds.update((k, replaced[k]) for k in embeds if k in replaced)
            if hooks.progress is not None:
                hooks.progress.update()
        return self.from_loop_layout(latents)

    def _start_sampling(
        self, transformer: torch.nn.Module, scheduler: Any, conditions: torch.Tensor, settings: SamplingSettings
    ) -> SamplingLoop:
        steps = settings.num_inference_steps or self.default_num_inference_steps
        guidance = self.default_guidance_scale if settings.guidance_scale is None else settings.guidance_scale
        device, dtype = conditions.device, compute_dtype(transformer)
        do_cfg = guidance > 1.0
        conditions = conditions.to(dtype)
        if do_cfg and self.batched_guidance:
            conditions = torch.cat([conditions] * 2)
        return SamplingLoop(
            transformer=transformer, scheduler=scheduler, timesteps=self.sampler_timesteps(scheduler, steps, device),
            conditions=conditions, guidance_scale=guidance, do_cfg=do_cfg, device=device, dtype=dtype,
            settings=settings,
        )

    def _guided_prediction(
        self, loop: SamplingLoop, step: int, latents: torch.Tensor, embeds: dict[str, torch.Tensor | None],
        scale: float,
    ) -> torch.Tensor:
        """The model output of step `step`, guided by `scale` under classifier-free guidance: unconditional and
        conditional in one batch (`batched_guidance`) or in two forwards."""
        positive, negative = embeds["prompt_embeds"].to(loop.dtype), embeds["negative_prompt_embeds"]
        if not loop.do_cfg:
            name = "cond_uncond" if self.batched_guidance else "cond"  # as the base's diffusers pipeline names it
            return self.model_output(loop, step, latents, positive, loop.conditions, name)
        if self.batched_guidance:
            both = torch.cat([negative, embeds["prompt_embeds"]]).to(loop.dtype)
            pred = self.model_output(loop, step, torch.cat([latents] * 2), both, loop.conditions, "cond_uncond")
            uncond, cond = pred.chunk(2)
        else:
            cond = self.model_output(loop, step, latents, positive, loop.conditions, "cond")
            uncond = self.model_output(loop, step, latents, negative.to(loop.dtype), loop.conditions, "uncond")
        return uncond + scale * (cond - uncond)

    # ================================================================ misc
    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def dynamic_guidance_scale(step: int, num_steps: int, guidance_scale: float, exponent: float = 5.0) -> float:
    """The guidance scale of step `step` (0-based) of `num_steps` under dynamic CFG: a cosine ramp from 1 at the
    first step to `guidance_scale` at the last, 1 + (scale - 1) * (1 - cos(pi * p**exponent)) / 2 with p the
    step's fraction of the way, step / (num_steps - 1); monotone (non-decreasing for scale >= 1). This is the
    ramp of the original CogVideoX sampler (its DynamicCFG, exponent 5), over the step index rather than
    diffusers' mix of the timestep (0-999) with the step count. A single step takes the full scale."""
    if num_steps < 1 or not 0 <= step < num_steps:
        raise ValueError(f"step {step} is not one of {num_steps} steps")
    progress = step / (num_steps - 1) if num_steps > 1 else 1.0
    return 1.0 + (guidance_scale - 1.0) * (1.0 - math.cos(math.pi * progress**exponent)) / 2.0
