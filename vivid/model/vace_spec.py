"""The Wan2.1-VACE specification (Wan-AI/Wan2.1-VACE-1.3B-diffusers, -14B-diffusers, Apache-2.0; the tiny family of
`vivid/model/tiny_vace.py`): public weights that edit inside a mask today, behind the same specification, for
inference only.

VACE is Wan2.1 (same VAE, UMT5 text encoder, flow-matching sampler: all of `WanSpec`) with context blocks beside the
DiT blocks; the edit's conditions go to those blocks (`control_hidden_states`), not into the patch embedding. So:

- Conditions are VACE's own, made by diffusers' `WanVACEPipeline.prepare_video_latents` and `prepare_masks`: the
  video with the edit region filled grey (VACE's fill: 0 in [-1, 1], 127.5 in pixels), split by the mask into the
  inactive part F(1 - M) and the reactive part FM, each VAE-encoded and normalised (16 + 16 channels), then the
  mask folded into 8x8-pixel cells (64 channels) and resampled to the latent frames: 96 channels, (B, T, 96, h, w).
  The mask polarity is VIVID's: 1 (white) = the region to generate.
- Reference images (what to generate, e.g. the new object or character) are VACE's: prepared by diffusers'
  `WanVACEPipeline.preprocess_conditions` (each scaled to fit the working size, centred on a white canvas),
  VAE-encoded as one frame each and put before the video's latent frames (their reactive half and mask cells zero);
  the sampler denoises those frames too, and the pipeline drops them from its output, as WanVACEPipeline does.
- A keyframe edit gives the edited keyframe as a kept frame: its pixels in frame 0 of the video and the mask 0 there
  (`kive_substitute`, as for the other bases); VACE keeps frames its mask leaves out.
- Sampling is the shared loop of `ModelSpecification.sample` with WanVACEPipeline's forward: a conditional and an
  unconditional pass per step, the conditions given to both with `conditioning_scale` on every VACE layer.
- Nothing of VIVID's recipe applies: no widened patch embedding, no LoRA, no VIVID weights, no training
  (`refuse_training` says so in one line wherever one is asked for).
"""

from __future__ import annotations

from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any, ClassVar

import torch
from diffusers import WanVACEPipeline
from diffusers.video_processor import VideoProcessor
from peft import LoraConfig

from vivid.model.configs import TINY_VACE_TRANSFORMER, WAN21_VACE_1_3B_TRANSFORMER, WAN21_VACE_14B_TRANSFORMER
from vivid.model.spec import SamplingLoop
from vivid.model.transformer import unwrap
from vivid.model.wan_spec import WanSpec, _cache_context_of, wan_architectures

VACE_1_3B_MODEL_ID = "Wan-AI/Wan2.1-VACE-1.3B-diffusers"
VACE_14B_MODEL_ID = "Wan-AI/Wan2.1-VACE-14B-diffusers"


def _channels_first(x: torch.Tensor) -> torch.Tensor:
    """(B, T, C, h, w) <-> (B, C, T, h, w)."""
    return x.permute(0, 2, 1, 3, 4)


class VACESpec(WanSpec):
    name = "vace"
    display_name = "Wan2.1-VACE"
    inference_only = True
    takes_reference_images = True
    transformer_class_names = ("WanVACETransformer3DModel",)
    pipeline_class_name = "WanVACEPipeline"
    default_model_id = VACE_1_3B_MODEL_ID
    mask_patch: ClassVar[int] = 2  # the transformer's spatial patch, which `prepare_masks` rounds sizes down to
    objective = "none: Wan2.1-VACE's published weights, used as they are (inference only)"
    architectures = wan_architectures(
        {"1.3b": VACE_1_3B_MODEL_ID, "14b": VACE_14B_MODEL_ID},
        {"1.3b": WAN21_VACE_1_3B_TRANSFORMER, "14b": WAN21_VACE_14B_TRANSFORMER, "tiny": TINY_VACE_TRANSFORMER})

    def __init__(self, conditioning_scale: float = 1.0) -> None:
        """`conditioning_scale`: WanVACEPipeline's weight of the context blocks' hints, on every VACE layer."""
        super().__init__()
        self.conditioning_scale = float(conditioning_scale)

    def __repr__(self) -> str:
        return f"VACESpec(conditioning_scale={self.conditioning_scale})"

    # ---------------------------------------------------------------- what does not apply
    def refuse_training(self, what: str) -> None:
        raise ValueError(f"{what}: {self.display_name} is an inference-only base in vivid (its published weights "
                         f"edit as they are; VIVID's LoRA, patch embedding and training recipe do not apply)")

    @property
    def in_channels(self) -> int:
        """The transformer's own input: the noise latents alone (the conditions go to the context blocks)."""
        return self.latent_channels

    @property
    def condition_channels(self) -> int:
        """inactive | reactive latents | the mask's 8x8-pixel cells."""
        return 2 * self.latent_channels + self.vae_spatial**2

    def widen(self, transformer: torch.nn.Module) -> None:
        """Nothing is widened; checks that `prepare_masks` packs masks for this transformer's patch."""
        patch = unwrap(transformer).config.patch_size
        if int(patch[1]) != self.mask_patch or int(patch[2]) != self.mask_patch:
            raise ValueError(f"{self.display_name}: spatial patch {tuple(patch)}, expected {self.mask_patch}")

    def make_vivid(self, transformer: torch.nn.Module, rank: int | None = None, alpha: int | None = None,
                   targets: Sequence[str] | None = None) -> torch.nn.Module:
        self.refuse_training("a VIVID LoRA and patch embedding")

    def lora_config(self, rank: int | None = None, alpha: int | None = None) -> LoraConfig:
        self.refuse_training("a VIVID LoRA")

    def compute_loss(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        self.refuse_training("a training loss")

    def encode_batch(self, *args: Any, **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        self.refuse_training("a training batch")

    # ---------------------------------------------------------------- conditions (diffusers' VACE preprocessing)
    def _vace_helper(self, vae: torch.nn.Module) -> SimpleNamespace:
        """What WanVACEPipeline's `preprocess_conditions`, `prepare_video_latents` and `prepare_masks` read of their
        pipeline."""
        patch = (1, self.mask_patch, self.mask_patch)
        return SimpleNamespace(vae=vae, transformer=SimpleNamespace(config=SimpleNamespace(patch_size=patch)),
                               transformer_2=None, vae_scale_factor_temporal=self.vae_temporal,
                               vae_scale_factor_spatial=self.vae_spatial,
                               video_processor=VideoProcessor(vae_scale_factor=self.vae_spatial))

    def prepare_reference_images(
        self, vae: torch.nn.Module, images: Sequence[Any], size: tuple[int, int], device: torch.device
    ) -> list[torch.Tensor]:
        """WanVACEPipeline's preparation of reference images (PIL) for a video of `size` (height, width): each
        scaled to fit, centred on a white canvas, (3, H, W) in [-1, 1]. (No video is given to
        `preprocess_conditions`: the working size is vivid's, as the video was already resized to it.)"""
        if not images:
            return []
        height, width = size
        _, _, references = WanVACEPipeline.preprocess_conditions(
            self._vace_helper(vae), None, None, list(images), 1, height, width, 1, torch.float32, device)
        return references[0]

    @torch.no_grad()
    def encode_conditions(
        self, vae: torch.nn.Module, masked_video: torch.Tensor, mask: torch.Tensor,
        reference_images: Sequence[torch.Tensor] = (),
    ) -> torch.Tensor:
        """VACE's conditions (B, R + T, 96, h, w) of a masked video (B, F, 3, H, W) in [-1, 1] and its mask
        (B, F, 1, H, W), 1 = generate (frame 0 kept where a keyframe was substituted), after the R latent frames of
        the `reference_images` (of `prepare_reference_images`), the same for every video of the batch."""
        helper = self._vace_helper(vae)
        references = [list(reference_images)]
        out = []
        # one video at a time, as WanVACEPipeline encodes
        for video_i, mask_i in zip(masked_video, mask):
            mask_cf = _channels_first(mask_i[None].float())  # (1, 1, F, H, W)
            grey = _channels_first(video_i[None].float()) * (1 - (mask_cf > 0.5).float())  # edit region at 0
            latents = WanVACEPipeline.prepare_video_latents(helper, grey, mask_cf, references, None,
                                                            masked_video.device)
            cells = WanVACEPipeline.prepare_masks(helper, mask_cf.to(latents.dtype), references, None)
            out.append(torch.cat([latents, cells.to(latents.dtype)], dim=1))
        return _channels_first(torch.cat(out))

    # ---------------------------------------------------------------- sampling (WanVACEPipeline's forward)
    def start_loop(self, loop: SamplingLoop) -> None:
        loop.state["cache_context"] = _cache_context_of(loop.transformer)
        layers = len(unwrap(loop.transformer).config.vace_layers)
        loop.state["conditioning_scale"] = torch.full((layers,), self.conditioning_scale, device=loop.device,
                                                      dtype=loop.dtype)

    def model_output(
        self, loop: SamplingLoop, step: int, latents: torch.Tensor, prompt_embeds: torch.Tensor,
        conditions: torch.Tensor, cache_name: str,
    ) -> torch.Tensor:
        """WanVACEPipeline's forward: the noise latents in, the conditions to the context blocks."""
        context = dict(step_index=step, sigma=float(loop.scheduler.sigmas[step]),
                       num_inference_steps=len(loop.timesteps))
        with loop.state["cache_context"](cache_name, context):
            return loop.transformer(
                hidden_states=latents.to(loop.dtype), timestep=loop.timesteps[step].expand(latents.shape[0]),
                encoder_hidden_states=prompt_embeds, control_hidden_states=_channels_first(conditions),
                control_hidden_states_scale=loop.state["conditioning_scale"],
                attention_kwargs=loop.settings.attention_kwargs, return_dict=False,
            )[0]
