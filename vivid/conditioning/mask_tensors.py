"""Masks as the VIVID transformer sees them: erasing, KIVE substitution and packing to latent channels.

Tensor layout follows diffusers' CogVideoX latents: pixel videos are (B, F, C, H, W) in [-1, 1] and
masks (B, F, 1, H, W) with 1 = the region to edit.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F



def erase(video: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The masked video: pixels inside the mask become -1 (black), the rest is kept."""
    if mask.shape[-2:] != video.shape[-2:] or mask.shape[1] != video.shape[1]:
        raise ValueError(f"mask {tuple(mask.shape)} does not match video {tuple(video.shape)}")
    return torch.where(mask > 0.5, torch.full_like(video, -1.0), video)


def kive_substitute(
    masked_video: torch.Tensor, mask: torch.Tensor, keyframe: torch.Tensor, frame: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """KIVE: masked-video frame `frame` := the (edited or real) keyframe, whole frame; mask frame `frame` := all
    black. Frame 0 is the paper's substitution; the last frame is vivid's (a clip between two keyframes).

    `keyframe` is (B, C, H, W) or (C, H, W) in [-1, 1]. Other frames keep their masks. Returns new tensors.
    """
    if keyframe.dim() == 3:
        keyframe = keyframe.unsqueeze(0).expand(masked_video.shape[0], -1, -1, -1)
    if keyframe.shape != masked_video[:, frame].shape:
        raise ValueError(
            f"keyframe of shape {tuple(keyframe.shape)} does not match a video frame {tuple(masked_video[:, frame].shape)}"
        )
    masked_video = masked_video.clone()
    mask = mask.clone()
    masked_video[:, frame] = keyframe.to(masked_video.dtype)
    mask[:, frame] = 0
    return masked_video, mask


def latent_frame_count(num_frames: int, temporal: int) -> int:
    """Frames after a causal video VAE's temporal compression by `temporal` (CogVideoX's and Wan's: 4, so
    4k+1 frames -> k+1 latent frames)."""
    if num_frames < 1 or (num_frames - 1) % temporal:
        examples = f"1, {temporal + 1}, {2 * temporal + 1}, ..."
        raise ValueError(f"frame count must be {temporal}k+1 ({examples}), got {num_frames}")
    return (num_frames - 1) // temporal + 1


def pack_mask(mask: torch.Tensor, temporal: int, spatial: int) -> torch.Tensor:
    """Pack a pixel mask (B, F, 1, H, W), F = 4k+1, into mask latents (B, k+1, 4, H/8, W/8).

    Time is packed as the VAE packs it: latent frame 0 <- frame 0 repeated 4 times, latent frame j <- frames
    4j-3 .. 4j, the four frames becoming the four channels in order. Space is reduced 8x by max-pooling, so a
    latent cell counts as masked if any of its pixels is. `temporal` and `spatial` are the VAE's compression
    factors (4 and 8 for CogVideoX and Wan2.1); the mask gets `temporal` channels.
    """
    if mask.dim() != 5 or mask.shape[2] != 1:
        raise ValueError(f"mask must be (B, F, 1, H, W), got {tuple(mask.shape)}")
    b, f, _, h, w = mask.shape
    t = latent_frame_count(f, temporal)
    if h % spatial or w % spatial:
        raise ValueError(f"mask size {h}x{w} must be a multiple of {spatial}")
    pooled = F.max_pool2d(mask.reshape(b * f, 1, h, w).float(), spatial).reshape(b, f, h // spatial, w // spatial)
    first = pooled[:, :1].expand(-1, temporal, -1, -1)  # frame 0 repeated
    rest = pooled[:, 1:].reshape(b, t - 1, temporal, h // spatial, w // spatial)
    return torch.cat([first.unsqueeze(1), rest], dim=1).to(mask.dtype)
