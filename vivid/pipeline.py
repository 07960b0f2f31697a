"""VIVIDPipeline: add, modify or delete an entity inside a mask of a video or an image.

A diffusers pipeline over a base video model's five components (tokenizer, text encoder, VAE, transformer,
scheduler), for any base with a model specification (`vivid/model/registry.py`: CogVideoX, Wan2.1): the spec, chosen
by the transformer's class, encodes the text and the masked video, runs the base's sampler and decodes; the
pipeline reads the inputs, picks the working size, and pastes the edit back into the source. The transformer's patch
embedding is widened on construction (new channels at zero), so a plain base folder loads as an untrained VIVID;
`load_vivid_weights` then adds the trained LoRA and patch embedding.

    pipe = VIVIDPipeline.from_pretrained("THUDM/CogVideoX-5b", torch_dtype=torch.bfloat16)
    pipe.load_vivid_weights("path/to/vivid-weights")
    frames = pipe(video="in.mp4", mask="mask.mp4", prompt="a red car", task="modify").frames[0]
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import PIL.Image
import torch
from diffusers import DiffusionPipeline
from diffusers.utils import BaseOutput
from diffusers.video_processor import VideoProcessor

from vivid.io.edit_inputs import EditInputs, check_sampling, load_edit_inputs
from vivid.io.resize import resize_frames, resize_mask
from vivid.conditioning.mask_tensors import erase, kive_substitute
from vivid.model.frame_conv import use_frame_convs
from vivid.model.registry import spec_for
from vivid.model.spec import ModelSpecification, SamplingSettings, StepHooks
from vivid.model.transformer import compute_dtype, has_mixed_dtypes
from vivid.model.weights import (
    VIVIDWeightsConfig,
    load_vivid_weights,
    resolve_weights_folder,
    save_vivid_weights,
)
from vivid.conditioning.preprocess import (
    default_paste_dilation,
    model_size,
    pad_frames,
    paste_back,
)

logger = logging.getLogger(__name__)


@dataclass
class VIVIDPipelineOutput(BaseOutput):
    """`frames`: per video, a list of PIL images (output_type="pil"), an array (F, H, W, 3) in [0, 1] ("np"),
    an array (F, H, W, 3) of uint8 ("uint8": the decoded frames as they are, ready to write), a tensor
    (F, 3, H, W) in [0, 1] ("pt"), or the latents ("latent"). Batch first."""

    frames: Any


class VIVIDPipeline(DiffusionPipeline):
    """A base video model's pipeline turned into a local editor. Offloading, the progress bar and `from_pretrained` /
    `save_pretrained` are diffusers' (`DiffusionPipeline`); the model-specific steps are the spec's (`self.spec`)."""

    model_cpu_offload_seq = "text_encoder->transformer->vae"
    _optional_components = ["tokenizer", "text_encoder"]
    _callback_tensor_inputs = ["latents", "prompt_embeds", "negative_prompt_embeds"]

    def __init__(self, tokenizer, text_encoder, vae, transformer, scheduler):
        super().__init__()
        self.spec: ModelSpecification = spec_for(transformer)
        self.spec.widen(transformer)
        use_frame_convs(vae)  # torch's CPU conv3d is slow at batch size 1, which is how an edit runs the VAE
        self.register_modules(
            tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, transformer=transformer, scheduler=scheduler
        )
        self.vivid_config: VIVIDWeightsConfig | None = None
        self._guidance_scale = self.spec.default_guidance_scale
        self._attention_kwargs = None
        self._current_timestep = None
        self._num_timesteps = 0
        self._interrupt = False

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
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs: Any) -> "VIVIDPipeline":
        """diffusers' `from_pretrained`, with the base's VAE dtype rule (`spec.loading_dtype`: Wan keeps its VAE in
        float32 whatever `torch_dtype`), as training loads the components."""
        torch_dtype = kwargs.pop("torch_dtype", None)
        dtype = kwargs.pop("dtype", None) if torch_dtype is None else torch_dtype
        if kwargs.get("vae") is not None:  # a VAE given is used as given
            return super().from_pretrained(pretrained_model_name_or_path, dtype=dtype, **kwargs)
        spec = spec_for(kwargs.get("transformer") or pretrained_model_name_or_path)
        single = isinstance(dtype, torch.dtype)  # else None, or diffusers' per-component dict, used as given
        pipe = super().from_pretrained(pretrained_model_name_or_path,
                                       dtype=spec.loading_dtype(dtype) if single else dtype, **kwargs)
        if single or dtype is None:
            spec.keep_vae_dtype(pipe.vae, dtype)
        return pipe

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
        (the spec's; for CogVideoX-5B the same as `pipe.vae.enable_tiling()`)."""
        self.spec.enable_vae_tiling(self.vae)

    # ---------------------------------------------------------------- state, as diffusers' pipelines expose it
    @property
    def guidance_scale(self) -> float:
        return self._guidance_scale

    @property
    def do_classifier_free_guidance(self) -> bool:
        return self._guidance_scale > 1

    @property
    def num_timesteps(self) -> int:
        return self._num_timesteps

    @property
    def attention_kwargs(self) -> dict | None:
        return self._attention_kwargs

    @property
    def current_timestep(self) -> torch.Tensor | None:
        return self._current_timestep

    @property
    def interrupt(self) -> bool:
        return self._interrupt

    # ---------------------------------------------------------------- helpers
    @property
    def max_sequence_length(self) -> int:
        return self.spec.max_text_length(self.tokenizer, self.transformer)

    @property
    def native_area(self) -> int:
        height, width = self.spec.native_size(self.transformer)
        return height * width

    def encode_prompt(
        self,
        prompt: str | list[str] | None,
        negative_prompt: str | list[str] | None = None,
        do_classifier_free_guidance: bool = True,
        num_videos_per_prompt: int = 1,
        prompt_embeds: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
        max_sequence_length: int | None = None,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(prompt embeddings, negative ones) as diffusers' pipelines return them: computed by the spec's text
        encoding (each repeated `num_videos_per_prompt` times) where not given; the negative ones (the empty caption
        by default) only under guidance."""
        device = device or self._execution_device
        max_length = max_sequence_length or self.max_sequence_length

        def embed(texts: list[str]) -> torch.Tensor:
            embeds = self.spec.encode_prompts(self.tokenizer, self.text_encoder, texts, max_length, device)
            embeds = embeds.to(dtype=dtype or self.text_encoder.dtype, device=device)
            b, n, d = embeds.shape
            return embeds.repeat(1, num_videos_per_prompt, 1).view(b * num_videos_per_prompt, n, d)

        prompts = [prompt] if isinstance(prompt, str) else prompt
        batch = len(prompts) if prompts is not None else prompt_embeds.shape[0]
        if prompt_embeds is None:
            prompt_embeds = embed(prompts)
        if do_classifier_free_guidance and negative_prompt_embeds is None:
            negative = negative_prompt or ""
            negative = batch * [negative] if isinstance(negative, str) else list(negative)
            if len(negative) != batch:
                raise ValueError(f"{len(negative)} negative prompts for {batch} prompts")
            negative_prompt_embeds = embed(negative)
        return prompt_embeds, negative_prompt_embeds

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
        target = self.spec.padded_frame_count(n)
        frames = pad_frames(resize_frames(inputs.frames, size), target)
        mask = pad_frames(resize_mask(inputs.mask, size), target)
        video = torch.from_numpy(frames).permute(0, 3, 1, 2)[None].float().div(127.5).sub(1.0)
        mask_t = torch.from_numpy(mask)[None, :, None].float()
        masked = erase(video, mask_t)
        # the last keyframe at the clip's last frame and the padding frames (which repeat the last frame)
        for key, frames_at in ((inputs.keyframe, [0]), (inputs.last_keyframe, range(n - 1, target))):
            if key is None:
                continue
            key = resize_frames(key[None], size)[0]
            key_t = torch.from_numpy(key).permute(2, 0, 1).float().div(127.5).sub(1.0)
            for frame in frames_at:
                masked, mask_t = kive_substitute(masked, mask_t, key_t, frame)
        return masked.to(device), mask_t.to(device)

    def _encode_conditions(
        self, inputs: EditInputs, size: tuple[int, int], device: torch.device, copies: int
    ) -> tuple[torch.Tensor, int]:
        """The spec's conditions of the inputs at the working `size` (`copies` times along the batch), and how many
        latent frames of them (the first) are the reference images'."""
        masked, mask_t = self._to_model_tensors(inputs, size, device)
        images = [PIL.Image.fromarray(image) for image in inputs.reference_images]
        references = self.spec.prepare_reference_images(self.vae, images, size, device) if images else []
        conditions = self.spec.encode_conditions(self.vae, masked, mask_t, references)
        return conditions.repeat(copies, 1, 1, 1, 1), len(references)

    # ---------------------------------------------------------------- call
    def check_inputs(
        self,
        height: int | None,
        width: int | None,
        num_inference_steps: int,
        guidance_scale: float,
        num_videos_per_prompt: int,
        output_type: str,
        callback_on_step_end: Callable | None,
        callback_on_step_end_tensor_inputs: list[str],
        eta: float = 0.0,
        use_dynamic_cfg: bool = False,
        reference_images: Any | None = None,
    ) -> None:
        """Reject bad arguments before any model work (bad media are `load_edit_inputs`' to reject)."""
        self.spec.refuse_sampler_options(eta, use_dynamic_cfg)
        if reference_images is not None:
            self.spec.refuse_reference_images()
        unknown = set(callback_on_step_end_tensor_inputs) - set(self._callback_tensor_inputs)
        if callback_on_step_end is not None and unknown:
            raise ValueError(f"callback tensor inputs {sorted(unknown)} not in {self._callback_tensor_inputs}")
        if output_type not in ("pil", "np", "uint8", "pt", "latent"):
            raise ValueError(f"output_type must be 'pil', 'np', 'uint8', 'pt' or 'latent', got {output_type!r}")
        check_sampling(num_inference_steps, guidance_scale)
        if num_videos_per_prompt < 1:
            raise ValueError(f"num_videos_per_prompt must be >= 1, got {num_videos_per_prompt}")
        if (height is None) != (width is None):
            raise ValueError("give both height and width, or neither")
        multiple = self.spec.size_multiple(self.transformer)
        if height is not None and (height % multiple or width % multiple):
            raise ValueError(f"height and width must be multiples of {multiple}, got {height}x{width}")

    @torch.no_grad()
    def __call__(
        self,
        video: Any = None,
        mask: Any = None,
        prompt: str | None = None,
        task: str = "add",
        keyframe: Any | None = None,
        last_keyframe: Any | None = None,
        reference_images: Any | None = None,
        negative_prompt: str | None = None,
        height: int | None = None,
        width: int | None = None,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
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
            last_keyframe: an edited last frame (vivid's last-frame KIVE, for weights trained with
                `kive_last_frame_prob` > 0): the clip's last frame of the masked video becomes this frame, its mask
                empty; with `keyframe` the clip is generated between two edited frames. The output's last frame is
                this frame itself.
            reference_images: images of what to generate (path, PIL image or array (H, W, 3), or a list; any size),
                for Wan2.1-VACE, as WanVACEPipeline takes them (other bases refuse them); the output is the video's.
            num_inference_steps, guidance_scale: default to the base's (CogVideoX: 50 and 6; Wan: 50 and 5).
            use_dynamic_cfg, eta: CogVideoX's sampler options: ramp the guidance scale from 1 at the first step to
                `guidance_scale` at the last (`dynamic_guidance_scale`); DDIM/DPM's eta.
            height, width: working size (multiples of 16); by default the training bucket nearest the source's
                aspect when the VIVID weights list buckets, else the source's aspect at most the model's native
                area. The output is resized back to the source size.
            paste_back_source: keep the source bit for bit outside the mask dilated by `paste_back_dilation`
                pixels (default: one latent cell at the source's scale), feathered in the band between.
        """
        spec = self.spec
        num_inference_steps = spec.default_num_inference_steps if num_inference_steps is None else num_inference_steps
        guidance_scale = spec.default_guidance_scale if guidance_scale is None else guidance_scale
        self.check_inputs(height, width, num_inference_steps, guidance_scale, num_videos_per_prompt, output_type,
                          callback_on_step_end, callback_on_step_end_tensor_inputs, eta, use_dynamic_cfg,
                          reference_images)
        inputs = load_edit_inputs(video, mask, prompt, task, keyframe, prompt_required=prompt_embeds is None,
                                  last_keyframe=last_keyframe, reference_images=reference_images)
        src_h, src_w = inputs.frames.shape[1:3]
        if height is None:
            buckets = self.vivid_config.buckets if self.vivid_config is not None else None
            height, width = model_size(src_h, src_w, self.native_area, buckets)
        max_len = max_sequence_length or self.max_sequence_length
        if prompt_embeds is None:
            self._warn_if_truncated(inputs.prompt, max_len)

        self._guidance_scale = guidance_scale
        self._attention_kwargs = attention_kwargs
        self._current_timestep = None
        self._interrupt = False
        self._num_timesteps = num_inference_steps
        device = self._execution_device
        do_cfg = guidance_scale > 1.0

        prompt_embeds, negative_prompt_embeds = self.encode_prompt(
            inputs.prompt if prompt_embeds is None else None, negative_prompt if negative_prompt is not None else "",
            do_cfg, num_videos_per_prompt=num_videos_per_prompt, prompt_embeds=prompt_embeds,
            negative_prompt_embeds=negative_prompt_embeds, max_sequence_length=max_len, device=device,
        )
        conditions, references = self._encode_conditions(inputs, (height, width), device, num_videos_per_prompt)
        settings = SamplingSettings(num_inference_steps, guidance_scale, generator, latents, attention_kwargs, eta,
                                    use_dynamic_cfg)
        latents = self._sample(conditions, prompt_embeds, negative_prompt_embeds, settings,
                               callback_on_step_end, callback_on_step_end_tensor_inputs)
        latents = latents[:, references:]  # the reference images' latent frames come first: not the video's
        self._current_timestep = None

        if output_type == "latent":
            self.maybe_free_model_hooks()
            return VIVIDPipelineOutput(frames=latents) if return_dict else (latents,)

        frames = self._decode(latents, inputs, (height, width), paste_back_source, paste_back_dilation, output_type)
        return VIVIDPipelineOutput(frames=frames) if return_dict else (frames,)

    def _sample(
        self,
        conditions: torch.Tensor,
        prompt_embeds: torch.Tensor,
        negative_prompt_embeds: torch.Tensor | None,
        settings: SamplingSettings,
        callback_on_step_end: Callable[[Any, int, torch.Tensor, dict], dict] | None,
        callback_tensor_inputs: list[str],
    ) -> torch.Tensor:
        """The spec's sampler with the pipeline's state, progress bar, interruption and step callback (which may
        replace the latents and either prompt embedding, as in diffusers' pipelines)."""

        def before_step(i: int, t: torch.Tensor, guidance_scale: float) -> None:
            self._current_timestep = t
            self._guidance_scale = guidance_scale

        def on_step(i: int, t: torch.Tensor, tensors: dict[str, Any]) -> dict[str, Any] | None:
            if callback_on_step_end is None:
                return None
            outputs = callback_on_step_end(self, i, t, {k: tensors[k] for k in callback_tensor_inputs})
            return {k: outputs[k] for k in self._callback_tensor_inputs if k in outputs}

        dtype = compute_dtype(self.transformer)
        # fp32 trainable weights beside frozen bf16 ones (validation during training): autocast, as training runs
        mixed = has_mixed_dtypes(self.transformer)
        with self.progress_bar(total=self._num_timesteps) as progress_bar:
            hooks = StepHooks(before_step, on_step, progress_bar, lambda: self.interrupt)
            with torch.autocast(self._execution_device.type, dtype, enabled=mixed):
                return self.spec.sample(self.transformer, self.scheduler, conditions, prompt_embeds,
                                        negative_prompt_embeds, settings, hooks)

    def _decode(
        self,
        latents: torch.Tensor,
        inputs: EditInputs,
        size: tuple[int, int],
        paste_back_source: bool,
        paste_back_dilation: int | None,
        output_type: str,
    ) -> Any:
        """Decoded frames at the source's size and frame count, pasted into the source, as `output_type`."""
        decoded = self.spec.decode_latents(self.vae, latents).float()
        self.maybe_free_model_hooks()
        decoded = decoded[:, : inputs.frames.shape[0]]  # drop the 4k+1 padding frames
        decoded = ((decoded.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 1, 3, 4, 2).cpu().numpy()
        src_h, src_w = inputs.frames.shape[1:3]
        dilation = paste_back_dilation if paste_back_dilation is not None else default_paste_dilation(
            (src_h, src_w), size
        )
        videos = []
        for video_out in decoded:
            video_out = resize_frames(video_out, (src_h, src_w))
            if paste_back_source:
                video_out = paste_back(inputs.frames, video_out, inputs.mask, dilation)
            if inputs.keyframe is not None:
                video_out[0] = inputs.keyframe  # KIVE: the keyframe is the edit of frame 0, exactly
            if inputs.last_keyframe is not None:
                video_out[-1] = inputs.last_keyframe  # and the last keyframe that of the last frame
            videos.append(video_out)
        return _format_frames(videos, output_type)


def _format_frames(videos: list[np.ndarray], output_type: str) -> Any:
    """uint8 videos (F, H, W, 3) -> a stacked uint8 array, or diffusers' VideoProcessor output ("np", "pt", "pil")
    of the frames in [0, 1]."""
    if output_type == "uint8":
        return np.stack(videos)
    video = torch.from_numpy(np.stack(videos)).permute(0, 4, 1, 2, 3).float() / 255.0  # (B, 3, F, H, W)
    return VideoProcessor(do_normalize=False).postprocess_video(video, output_type)
