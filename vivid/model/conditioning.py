"""Everything the VIVID transformer needs besides the noise, shared by the pipeline and the trainer.

This is the model-specific part (finetrainers calls it the model specification): VAE encoding of videos,
the condition latents (masked-video latents | packed mask), the 36-channel input, and rotary embeddings.
"""

from __future__ import annotations

import torch
from diffusers import AutoencoderKLCogVideoX, CogVideoXTransformer3DModel
from diffusers.models.embeddings import get_3d_rotary_pos_embed
from diffusers.pipelines.cogvideo.pipeline_cogvideox import get_resize_crop_region_for_grid

from vivid.constants import VAE_SPATIAL
from vivid.masks import erase, pack_mask


def to_unit_range(video_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [-1, 1] (0 maps to -1, the value of erased pixels)."""
    return video_uint8.float() / 127.5 - 1.0


def encode_video_latents(
    vae: AutoencoderKLCogVideoX,
    video: torch.Tensor,
    generator: torch.Generator | None = None,
    sample: bool = False,
) -> torch.Tensor:
    """(B, F, 3, H, W) in [-1, 1] -> scaled latents (B, T, 16, H/8, W/8). `sample` draws from the posterior
    (training targets); otherwise its mode (deterministic conditions).

    `video` stays on its device, which must be the one the VAE runs on: a pipeline's `_execution_device`, not
    `vae.device`, which under model CPU offload is the CPU (until the VAE's hook moves it) and under sequential
    offload `meta`. Only the dtype follows the VAE."""
    x = video.to(dtype=vae.dtype).permute(0, 2, 1, 3, 4)  # B, C, F, H, W
    dist = vae.encode(x).latent_dist
    latents = dist.sample(generator) if sample else dist.mode()
    return (latents * vae.config.scaling_factor).permute(0, 2, 1, 3, 4)


def decode_video_latents(vae: AutoencoderKLCogVideoX, latents: torch.Tensor) -> torch.Tensor:
    """Scaled latents (B, T, 16, h, w) -> video (B, F, 3, H, W) in [-1, 1]. Like `encode_video_latents`, the
    latents stay on their device (the execution device); only the dtype follows the VAE."""
    x = (latents / vae.config.scaling_factor).permute(0, 2, 1, 3, 4).to(vae.dtype)
    return vae.decode(x).sample.permute(0, 2, 1, 3, 4)


def encode_conditions(vae: AutoencoderKLCogVideoX, masked_video: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Condition latents (B, T, 20, h, w): VAE latents of the masked video (16) | packed mask (4).

    `masked_video` (B, F, 3, H, W) in [-1, 1] with erased pixels at -1 (and any KIVE keyframe already in
    frame 0); `mask` (B, F, 1, H, W) with 1 = edit (frame 0 zeroed under KIVE).
    """
    return conditions_from_latents(encode_video_latents(vae, masked_video), mask)


def conditions_from_latents(masked_latents: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Condition latents (B, T, 20, h, w) from the masked video's scaled latents (B, T, 16, h, w) and the pixel
    mask (B, F, 1, H, W): the latents | the packed mask."""
    mask_latents = pack_mask(mask.to(masked_latents.device)).to(masked_latents.dtype)
    if mask_latents.shape[1] != masked_latents.shape[1]:
        raise AssertionError(f"mask packs to {mask_latents.shape[1]} latent frames, video to {masked_latents.shape[1]}")
    return torch.cat([masked_latents, mask_latents], dim=2)


def conditions_from_video(
    vae: AutoencoderKLCogVideoX, video: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Condition latents from a clean video and its mask: the training-time path (the keyframe is the real
    frame 0, so KIVE there is just mask frame 0 := 0, done by the data loader)."""
    return encode_conditions(vae, erase(video, mask), mask)


def transformer_input(noisy_latents: torch.Tensor, conditions: torch.Tensor) -> torch.Tensor:
    """noise (16) | masked-video latents (16) | mask latents (4), on the channel axis (dim 2)."""
    return torch.cat([noisy_latents, conditions.to(noisy_latents.dtype)], dim=2)


def rotary_embeddings(
    transformer: CogVideoXTransformer3DModel, height: int, width: int, latent_frames: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """CogVideoX 1.0's 3D rotary embeddings for a pixel size, as its pipeline computes them."""
    cfg = transformer.config
    if not cfg.use_rotary_positional_embeddings:
        return None
    p = cfg.patch_size
    grid_h, grid_w = height // (VAE_SPATIAL * p), width // (VAE_SPATIAL * p)
    crops = get_resize_crop_region_for_grid((grid_h, grid_w), cfg.sample_width // p, cfg.sample_height // p)
    return get_3d_rotary_pos_embed(
        embed_dim=cfg.attention_head_dim,
        crops_coords=crops,
        grid_size=(grid_h, grid_w),
        temporal_size=latent_frames,
        device=device,
    )
