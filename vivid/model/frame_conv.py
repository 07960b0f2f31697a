"""3D convolutions of a single video computed as sums of 2D ones on the CPU, where torch's conv3d is slow at batch 1.

A (kt, kh, kw) conv3d over (1, C, T, H, W) is, for each of its kt time taps, a conv2d of the frames under that tap
(all T_out of them as one batch) with that tap's (kh, kw) kernel, summed over the taps. Torch's CPU conv3d is much
slower per output frame at batch size 1 than at larger batches, and batch size 1 is how an edit runs the VAE and how
a training step's latent cache encodes a lone unseen input (measurements: docs/experiments.md, "Frame conv"; the
benchmark: `benchmarks/bench_frame_conv.py`). At batch sizes above 1 torch's conv3d is used.

`use_frame_convs(module)` switches a module's Conv3d layers (nn.Conv3d and diffusers' CogVideoXSafeConv3d) to
subclasses that do this; parameters, state dicts and results stay the same (up to float rounding). On other devices,
and for padding modes other than zeros, the layers run torch's conv3d as before, so a module can be switched once
and moved between devices freely.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.models.autoencoders.autoencoder_kl_cogvideox import CogVideoXSafeConv3d
from torch import nn


class _FrameConvMixin:
    """Overrides nn.Conv3d._conv_forward, which every Conv3d forward (and CogVideoXSafeConv3d's chunks) calls."""

    def _conv_forward(self, input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        if (input.device.type != "cpu" or input.dim() != 5 or input.shape[0] != 1 or self.padding_mode != "zeros"
                or isinstance(self.padding, str)):
            return super()._conv_forward(input, weight, bias)
        kt = weight.shape[2]
        st, sh, sw = self.stride
        pt, ph, pw = self.padding
        dt, dh, dw = self.dilation
        t_out = (input.shape[2] + 2 * pt - dt * (kt - 1) - 1) // st + 1
        if t_out < 1:
            return super()._conv_forward(input, weight, bias)  # torch's own error for a too-short input
        if pt:
            input = F.pad(input, (0, 0, 0, 0, pt, pt))
        frames = input[0].transpose(0, 1).contiguous()  # (T, C, H, W): each tap's frames are one slice
        out = None
        for k in range(kt):
            x = frames[k * dt : k * dt + st * (t_out - 1) + 1 : st]
            y = F.conv2d(x, weight[:, :, k], bias if k == 0 else None, (sh, sw), (ph, pw), (dh, dw), self.groups)
            out = y if out is None else out.add_(y)
        return out.transpose(0, 1).unsqueeze(0).contiguous()


class FrameConv3d(_FrameConvMixin, nn.Conv3d):
    """nn.Conv3d computed frame by frame on the CPU."""


class FrameSafeConv3d(_FrameConvMixin, CogVideoXSafeConv3d):
    """diffusers' CogVideoXSafeConv3d (chunked over time for large inputs) computed frame by frame on the CPU."""


_SWAPS: dict[type, type] = {nn.Conv3d: FrameConv3d, CogVideoXSafeConv3d: FrameSafeConv3d}


def use_frame_convs(module: nn.Module) -> int:
    """Switch `module`'s nn.Conv3d / CogVideoXSafeConv3d layers (exactly those classes) to their frame-wise
    subclasses in place; returns how many were switched. Idempotent."""
    switched = 0
    for m in module.modules():
        swap = _SWAPS.get(type(m))
        if swap is not None:
            m.__class__ = swap
            switched += 1
    return switched


def use_torch_convs(module: nn.Module) -> int:
    """Undo `use_frame_convs`: the layers back to nn.Conv3d / CogVideoXSafeConv3d; returns how many."""
    back = {swap: original for original, swap in _SWAPS.items()}
    switched = 0
    for m in module.modules():
        original = back.get(type(m))
        if original is not None:
            m.__class__ = original
            switched += 1
    return switched
