"""VIVIDPipeline: add, modify or delete an entity inside a mask of a video or an image.

A diffusers pipeline over CogVideoX's components (tokenizer, T5, VAE, transformer, scheduler). The
transformer's patch embedding is widened on construction (new channels at zero), so a plain CogVideoX
folder loads as an untrained VIVID; `load_vivid_weights` then adds the trained LoRA and patch embedding.

    pipe = VIVIDPipeline.from_pretrained("THUDM/CogVideoX-5b", torch_dtype=torch.bfloat16)
    pipe.load_vivid_weights("path/to/vivid-weights")
    frames = pipe(video="in.mp4", mask="mask.mp4", prompt="a red car", task="modify").frames[0]
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from diffusers import CogVideoXDPMScheduler, CogVideoXPipeline
from diffusers.pipelines.cogvideo.pipeline_cogvideox import retrieve_timesteps
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor

from vivid.constants import LATENT_CHANNELS, VAE_SPATIAL
from vivid.inputs import EditInputs, check_sampling, load_edit_inputs
from vivid.io.resize import resize_frames, resize_mask
from vivid.masks import erase, kive_substitute
from vivid.model.conditioning import (
    decode_video_latents,
    encode_conditions,
    rotary_embeddings,
    transformer_input,
)
from vivid.model.frame_conv import use_frame_convs
from vivid.model.spec import dynamic_guidance_scale
from vivid.model.transformer import compute_dtype, widen_patch_embed
from vivid.model.weights import (
    VIVIDWeightsConfig,
    load_vivid_weights,
    resolve_weights_folder,
    save_vivid_weights,
)
from vivid.preprocess import (
    default_paste_dilation,
    model_size,
    pad_frames,
    padded_frame_count,
    paste_back,
)

logger = logging.getLogger(__name__)


@dataclass
class VIVIDPipelineOutput(BaseOutput):
    """`frames`: per video, a list of PIL images (output_type="pil"), an array (F, H, W, 3) in [0, 1] ("np"),
    an array (F, H, W, 3) of uint8 ("uint8": the decoded frames as they are, ready to write), a tensor
    (F, 3, H, W) in [0, 1] ("pt"), or the latents ("latent"). Batch first."""

    frames: Any


class VIVIDPipeline(CogVideoXPipeline):
    """CogVideoX's pipeline turned into a local editor. Inherits prompt encoding, offloading and the
    progress bar from diffusers' CogVideoXPipeline; replaces the denoising inputs with VIVID's 36 channels."""

    def __init__(self, tokenizer, text_encoder, vae, transformer, scheduler):
        widen_patch_embed(transformer)
        use_frame_convs(vae)  # torch's CPU conv3d is slow at batch size 1, which is how an edit runs the VAE
        super().__init__(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, transformer=transformer, scheduler=scheduler)
        self.vivid_config: VIVIDWeightsConfig | None = None

    # ---------------------------------------------------------------- weights
    def load_vivid_weights(self, folder: str | os.PathLike) -> VIVIDWeightsConfig:
        """Add the LoRA and load the trained patch embedding from a VIVID weights folder or hub repo id."""
        self.vivid_config = load_vivid_weights(self.transformer, folder)
        return self.vivid_config

    def save_vivid_weights(self, folder: str | os.PathLike, base_model: str | None = None) -> None:
        config = self.vivid_config or VIVIDWeightsConfig()
        if base_model is not None:
            config.base_model = base_model
        save_vivid_weights(self.transformer, folder, config)

    @classmethod
    def from_vivid(cls, weights: str | os.PathLike, base_model: str | None = None, **kwargs) -> "VIVIDPipeline":
        """Load the base model named in the weights' config (or `base_model`) and the VIVID weights. `weights` is
        a local folder or a hub repo id, whose three weight files are downloaded (the cache only if HF_HUB_OFFLINE)."""
        weights = resolve_weights_folder(weights)
        config = VIVIDWeightsConfig.load(weights)
        pipe = cls.from_pretrained(base_model or config.base_model, **kwargs)
        pipe.load_vivid_weights(weights)
        return pipe

    def enable_vae_tiling(self) -> None:
        """Encode and decode with the VAE in tiles (lower peak memory), with tiles that line up at any VAE size
        (see `vae_tiling_settings`); for CogVideoX-5B the same as `pipe.vae.enable_tiling()`."""
        self.vae.enable_tiling(**vae_tiling_settings(self.vae))

    # ---------------------------------------------------------------- helpers
    @property
    def max_sequence_length(self) -> int:
        return int(self.transformer.config.max_text_seq_length)

    @property
    def native_area(self) -> int:
        cfg = self.transformer.config
        return cfg.sample_height * cfg.sample_width * VAE_SPATIAL * VAE_SPATIAL

    def _warn_if_truncated(self, prompt: str, max_length: int) -> None:
        n = len(self.tokenizer(prompt, add_special_tokens=True).input_ids)
        if n > max_length:
            logger.warning(
                "caption has %d tokens; only the first %d are used (the rest is truncated): %r", n, max_length, prompt
            )

    def _to_model_tensors(
        self, inputs: EditInputs, size: tuple[int, int], device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Resized, frame-padded masked video (1, F', 3, h, w) in [-1, 1] and mask (1, F', 1, h, w)."""
        n = inputs.frames.shape[0]
        target = padded_frame_count(n)
        frames = pad_frames(resize_frames(inputs.frames, size), target)
        mask = pad_frames(resize_mask(inputs.mask, size), target)
        video = torch.from_numpy(frames).permute(0, 3, 1, 2)[None].float().div(127.5).sub(1.0)
        mask_t = torch.from_numpy(mask)[None, :, None].float()
        masked = erase(video, mask_t)
        if inputs.keyframe is not None:
            key = resize_frames(inputs.keyframe[None], size)[0]
            key_t = torch.from_numpy(key).permute(2, 0, 1).float().div(127.5).sub(1.0)
            masked, mask_t = kive_substitute(masked, mask_t, key_t)
        return masked.to(device), mask_t.to(device)

    # ---------------------------------------------------------------- call
    @torch.no_grad()
    def __call__(
        self,
        video: Any = None,
        mask: Any = None,
        prompt: str | None = None,
        task: str = "add",
        keyframe: Any | None = None,
        negative_prompt: str | None = None,
        height: int | None = None,
        width: int | None = None,
        num_inference_steps: int = 50,
        guidance_scale: float = 6.0,
        use_dynamic_cfg: bool = False,
        num_videos_per_prompt: int = 1,
        eta: float = 0.0,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        prompt_embeds: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
        paste_back_source: bool = True,
        paste_back_dilation: int | None = None,
        callback_on_step_end: Callable[[Any, int, torch.Tensor, dict], dict] | None = None,
        callback_on_step_end_tensor_inputs: list[str] = ["latents"],
        max_sequence_length: int | None = None,
        attention_kwargs: dict | None = None,
    ) -> VIVIDPipelineOutput | tuple:
        """Edit `video` inside `mask` so that it shows `prompt`.

        Args:
            video: a path (video or image), PIL image(s), array (F, H, W, 3) uint8 or [0, 1], or tensor (F, 3, H, W).
            mask: a path (mask video, folder of PNGs, one image, .npy/.npz), PIL image(s), array or tensor; one
                mask per frame or one for all frames; 1/white = edit; non-binary masks are thresholded at 0.5.
            prompt: the local caption of what should be in the mask; for `task="delete"` the fixed deletion
                caption is used unless one is given.
            task: "add", "modify" or "delete".
            keyframe: an edited first frame (KIVE): frame 0 of the masked video becomes this whole frame, frame 0
                of the mask becomes empty, and the model propagates the edit to the later frames. Frame 0 of
                the output is the keyframe itself (with or without paste-back).
            use_dynamic_cfg: ramp the guidance scale from 1 at the first step to `guidance_scale` at the last
                (`dynamic_guidance_scale`).
            height, width: working size (multiples of 16); by default the training bucket nearest the source's
                aspect when the VIVID weights list buckets, else the source's aspect at most the model's native
                area. The output is resized back to the source size.
            paste_back_source: keep the source bit for bit outside the mask dilated by `paste_back_dilation`
                pixels (default: one latent cell at the source's scale), feathered in the band between.
        """
        unknown = set(callback_on_step_end_tensor_inputs) - set(self._callback_tensor_inputs)
        if callback_on_step_end is not None and unknown:
            raise ValueError(f"callback tensor inputs {sorted(unknown)} not in {self._callback_tensor_inputs}")
        if output_type not in ("pil", "np", "uint8", "pt", "latent"):
            raise ValueError(f"output_type must be 'pil', 'np', 'uint8', 'pt' or 'latent', got {output_type!r}")
        check_sampling(num_inference_steps, guidance_scale)
        if num_videos_per_prompt < 1:
            raise ValueError(f"num_videos_per_prompt must be >= 1, got {num_videos_per_prompt}")
        inputs = load_edit_inputs(video, mask, prompt, task, keyframe, prompt_required=prompt_embeds is None)
        src_h, src_w = inputs.frames.shape[1:3]
        if (height is None) != (width is None):
            raise ValueError("give both height and width, or neither")
        if height is None:
            buckets = self.vivid_config.buckets if self.vivid_config is not None else None
            height, width = model_size(src_h, src_w, self.native_area, buckets)
        elif height % 16 or width % 16:
            raise ValueError(f"height and width must be multiples of 16, got {height}x{width}")
        max_len = max_sequence_length or self.max_sequence_length
        if prompt_embeds is None:
            self._warn_if_truncated(inputs.prompt, max_len)

        self._guidance_scale = guidance_scale
        self._attention_kwargs = attention_kwargs
        self._current_timestep = None
        self._interrupt = False
        device = self._execution_device
        do_cfg = guidance_scale > 1.0

        prompt_embeds, negative_prompt_embeds = self.encode_prompt(
            inputs.prompt if prompt_embeds is None else None,
            negative_prompt if negative_prompt is not None else "",
            do_cfg,
            num_videos_per_prompt=num_videos_per_prompt,
            prompt_embeds=prompt_embeds,
            negative_prompt_embeds=negative_prompt_embeds,
            max_sequence_length=max_len,
            device=device,
        )
        dtype = compute_dtype(self.transformer)  # trainable weights may be fp32 beside bf16 ones
        if do_cfg:
            prompt_embeds = torch.cat([negative_prompt_embeds, prompt_embeds], dim=0)
        prompt_embeds = prompt_embeds.to(dtype)

        masked, mask_t = self._to_model_tensors(inputs, (height, width), device)
        conditions = encode_conditions(self.vae, masked, mask_t).to(dtype)
        conditions = conditions.repeat(num_videos_per_prompt, 1, 1, 1, 1)
        if do_cfg:
            conditions = torch.cat([conditions] * 2)

        timesteps, num_inference_steps = retrieve_timesteps(self.scheduler, num_inference_steps, device)
        self._num_timesteps = len(timesteps)
        latent_frames = conditions.shape[1]
        shape = (num_videos_per_prompt, latent_frames, LATENT_CHANNELS, height // VAE_SPATIAL, width // VAE_SPATIAL)
        if latents is None:
            latents = randn_tensor(shape, generator=generator, device=device, dtype=dtype)
        elif tuple(latents.shape) != shape:
            raise ValueError(f"latents must have shape {shape}, got {tuple(latents.shape)}")
        latents = latents.to(device, dtype) * self.scheduler.init_noise_sigma
        extra_step_kwargs = self.prepare_extra_step_kwargs(generator, eta)
        image_rotary_emb = rotary_embeddings(self.transformer, height, width, latent_frames, device)

        num_warmup_steps = max(len(timesteps) - num_inference_steps * self.scheduler.order, 0)
        # fp32 trainable weights beside frozen bf16 ones (validation during training): autocast, as training runs
        mixed = any(p.dtype != dtype for p in self.transformer.parameters() if p.is_floating_point())
        with self.progress_bar(total=num_inference_steps) as progress_bar:
            old_pred_original_sample = None
            for i, t in enumerate(timesteps):
                if self.interrupt:
                    continue
                self._current_timestep = t
                model_input = torch.cat([latents] * 2) if do_cfg else latents
                model_input = self.scheduler.scale_model_input(model_input, t)
                model_input = transformer_input(model_input, conditions)
                timestep = t.expand(model_input.shape[0])
                with self.transformer.cache_context("cond_uncond"), torch.autocast(device.type, dtype, enabled=mixed):
                    noise_pred = self.transformer(
                        hidden_states=model_input,
                        encoder_hidden_states=prompt_embeds,
                        timestep=timestep,
                        image_rotary_emb=image_rotary_emb,
                        attention_kwargs=attention_kwargs,
                        return_dict=False,
                    )[0].float()
                if use_dynamic_cfg:
                    self._guidance_scale = dynamic_guidance_scale(i, len(timesteps), guidance_scale)
                if do_cfg:
                    uncond, cond = noise_pred.chunk(2)
                    noise_pred = uncond + self.guidance_scale * (cond - uncond)
                if isinstance(self.scheduler, CogVideoXDPMScheduler):
                    latents, old_pred_original_sample = self.scheduler.step(
                        noise_pred, old_pred_original_sample, t, timesteps[i - 1] if i > 0 else None, latents,
                        **extra_step_kwargs, return_dict=False,
                    )
                else:
                    latents = self.scheduler.step(noise_pred, t, latents, **extra_step_kwargs, return_dict=False)[0]
                latents = latents.to(dtype)
                if callback_on_step_end is not None:
                    step_locals = locals()  # outside the comprehension, whose own scope would hide them
                    callback_kwargs = {k: step_locals[k] for k in callback_on_step_end_tensor_inputs}
                    callback_outputs = callback_on_step_end(self, i, t, callback_kwargs)
                    latents = callback_outputs.pop("latents", latents)
                if i == len(timesteps) - 1 or ((i + 1) > num_warmup_steps and (i + 1) % self.scheduler.order == 0):
                    progress_bar.update()
        self._current_timestep = None

        if output_type == "latent":
            self.maybe_free_model_hooks()
            return VIVIDPipelineOutput(frames=latents) if return_dict else (latents,)

        decoded = decode_video_latents(self.vae, latents).float()
        self.maybe_free_model_hooks()
        decoded = decoded[:, : inputs.frames.shape[0]]  # drop the 4k+1 padding frames
        decoded = ((decoded.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 1, 3, 4, 2).cpu().numpy()
        dilation = paste_back_dilation if paste_back_dilation is not None else default_paste_dilation(
            (src_h, src_w), (height, width)
        )
        videos = []
        for video_out in decoded:
            video_out = resize_frames(video_out, (src_h, src_w))
            if paste_back_source:
                video_out = paste_back(inputs.frames, video_out, inputs.mask, dilation)
            if inputs.keyframe is not None:
                video_out[0] = inputs.keyframe  # KIVE: the keyframe is the edit of frame 0, exactly
            videos.append(video_out)
        frames = _format_frames(videos, output_type)
        return VIVIDPipelineOutput(frames=frames) if return_dict else (frames,)


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


def _format_frames(videos: list[np.ndarray], output_type: str) -> Any:
    if output_type == "np":
        return np.stack(videos).astype(np.float32) / 255.0
    if output_type == "uint8":
        return np.stack(videos)
    if output_type == "pt":
        return torch.from_numpy(np.stack(videos)).permute(0, 1, 4, 2, 3).float() / 255.0
    from PIL import Image

    return [[Image.fromarray(f) for f in v] for v in videos]
