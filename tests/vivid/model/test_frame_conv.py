"""Frame-wise conv3d (vivid.model.frame_conv): the same results and gradients as torch's conv3d."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from vivid.model.frame_conv import FrameConv3d, FrameSafeConv3d, use_frame_convs

CASES = [
    # (kernel, stride, padding, dilation, groups, frames)
    ((3, 3, 3), 1, (0, 1, 1), 1, 1, 5),  # CogVideoX's causal convs (time padded by the caller)
    ((3, 3, 3), 1, (1, 1, 1), 1, 1, 1),  # time padding here; a single frame
    ((1, 1, 1), 1, 0, 1, 1, 4),  # 1x1x1 shortcuts
    ((3, 1, 1), (2, 1, 1), 0, 1, 1, 7),  # time-only kernel, time stride
    ((3, 3, 3), (1, 2, 2), (0, 1, 1), (2, 1, 1), 2, 6),  # space stride, time dilation, groups
]


def _pair(kernel, stride, padding, dilation, groups):
    torch.manual_seed(0)
    ref = nn.Conv3d(4, 6, kernel, stride=stride, padding=padding, dilation=dilation, groups=groups)
    fast = nn.Conv3d(4, 6, kernel, stride=stride, padding=padding, dilation=dilation, groups=groups)
    fast.load_state_dict(ref.state_dict())
    assert use_frame_convs(fast) == 1 and type(fast) is FrameConv3d
    return ref, fast


@pytest.mark.parametrize("kernel,stride,padding,dilation,groups,frames", CASES)
@pytest.mark.parametrize("batch", [1, 2])
def test_frame_conv_matches_conv3d_forward_and_backward(kernel, stride, padding, dilation, groups, frames, batch):
    ref, fast = _pair(kernel, stride, padding, dilation, groups)
    x = torch.randn(batch, 4, frames, 9, 11)
    xr, xf = x.clone().requires_grad_(), x.clone().requires_grad_()
    yr, yf = ref(xr), fast(xf)
    assert yf.shape == yr.shape and yf.is_contiguous()
    torch.testing.assert_close(yf, yr, rtol=1e-5, atol=1e-5)
    g = torch.randn_like(yr)
    yr.backward(g)
    yf.backward(g)
    torch.testing.assert_close(xf.grad, xr.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fast.weight.grad, ref.weight.grad, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(fast.bias.grad, ref.bias.grad, rtol=1e-4, atol=1e-4)


def test_frame_conv_too_short_input_raises_torchs_error():
    ref, fast = _pair((3, 3, 3), 1, 0, 1, 1)
    with pytest.raises(RuntimeError):
        ref(torch.randn(1, 4, 2, 9, 11))
    with pytest.raises(RuntimeError):
        fast(torch.randn(1, 4, 2, 9, 11))


def test_frame_conv_other_devices_use_torchs_conv3d():
    _, fast = _pair((3, 3, 3), 1, (0, 1, 1), 1, 1)
    fast.to("meta")
    out = fast(torch.empty(1, 4, 5, 9, 11, device="meta"))  # the frame-wise path would fail on meta tensors' data
    assert out.shape == (1, 6, 3, 9, 11) and out.device.type == "meta"


def test_use_frame_convs_switches_the_cogvideox_vae_and_keeps_its_outputs():
    from diffusers import AutoencoderKLCogVideoX

    from vivid.model.configs import TINY_VAE

    torch.manual_seed(0)
    ref = AutoencoderKLCogVideoX(**TINY_VAE).eval()
    fast = AutoencoderKLCogVideoX(**TINY_VAE).eval()
    fast.load_state_dict(ref.state_dict())
    n_conv3d = sum(isinstance(m, nn.Conv3d) for m in fast.modules())
    assert use_frame_convs(fast) == n_conv3d > 0
    assert use_frame_convs(fast) == 0  # idempotent: already switched
    assert any(type(m) is FrameSafeConv3d for m in fast.modules())
    assert fast.state_dict().keys() == ref.state_dict().keys()
    video = torch.rand(1, 3, 9, 32, 48) * 2 - 1
    with torch.no_grad():
        zr, zf = ref.encode(video).latent_dist.mean, fast.encode(video).latent_dist.mean
        torch.testing.assert_close(zf, zr, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(fast.decode(zr).sample, ref.decode(zr).sample, rtol=1e-4, atol=1e-4)


def test_pipeline_vae_uses_frame_convs(tiny_pipe):
    from diffusers.models.autoencoders.autoencoder_kl_cogvideox import CogVideoXSafeConv3d

    kinds = {type(m) for m in tiny_pipe.vae.modules()}
    assert FrameSafeConv3d in kinds and not kinds & {nn.Conv3d, CogVideoXSafeConv3d}
