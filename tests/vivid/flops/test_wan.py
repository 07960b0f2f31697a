"""Wan2.1's FLOPs formulas (vivid/flops/wan.py) against FlopCounterMode on the tiny Wan, and the 1.3B's numbers."""

from __future__ import annotations

import pytest
import torch

from vivid.flops.counter import edit_flops
from vivid.flops.wan import wan_transformer_forward_flops

from tests.vivid.flops.test_cogvideox import _measured

H, W = 64, 96


@pytest.mark.parametrize("frames,batch,vivid", [(9, 2, True), (1, 1, True), (9, 1, False)])
def test_wan_transformer_forward_matches_flop_counter(frames, batch, vivid):
    """The analytic Wan2.1 transformer count against FlopCounterMode on the tiny Wan (widened + rank-32 LoRA, and
    stock)."""
    from diffusers import WanTransformer3DModel

    from vivid.model.configs import TINY_WAN_TRANSFORMER
    from vivid.model.wan_spec import WanSpec

    spec = WanSpec()
    torch.manual_seed(0)
    transformer = WanTransformer3DModel(**TINY_WAN_TRANSFORMER).eval()
    t = (frames - 1) // 4 + 1
    channels = 36 if vivid else 16
    if vivid:
        spec.make_vivid(transformer)
    x = torch.randn(batch, channels, t, H // 8, W // 8)
    text = torch.randn(batch, 16, TINY_WAN_TRANSFORMER["text_dim"])
    with torch.no_grad():
        measured = _measured(lambda: transformer(x, torch.full((batch,), 500), text, return_dict=False))
    analytic = wan_transformer_forward_flops(TINY_WAN_TRANSFORMER, frames, H, W, 16, batch, channels,
                                             32 if vivid else 0)
    assert measured > 0 and (analytic["lora"] > 0) == vivid
    assert sum(analytic.values()) == pytest.approx(measured, rel=0.02)


def test_wan21_1_3b_at_81x480x832():
    """Wan2.1-1.3B: 21 x 30 x 52 = 32,760 video tokens and 512 text tokens; a forward's linear FLOPs are about
    2 x 32,760 tokens x the 30 blocks' weights each video token meets (self-attention 4 d^2, cross-attention q and
    out 2 d^2, feed-forward 2 d 8960; 1.25e9 of the model's 1.42e9), its attention 4 n^2 d (self) + 4 n 512 d
    (cross) per block."""
    from vivid.model.configs import WAN21_1_3B_TRANSFORMER

    edit = edit_flops("1.3b", 81, 480, 832, 50, guidance=True, family="wan")
    assert (edit.video_tokens, edit.text_tokens, edit.model) == (32_760, 512, "Wan2.1-1.3B")
    fwd = wan_transformer_forward_flops(WAN21_1_3B_TRANSFORMER, 81, 480, 832, 512, in_channels=16, lora_rank=0)
    d, n = 1536, 32_760
    assert fwd["attention"] == 30 * (4 * n * n * d + 4 * n * 512 * d)
    assert fwd["linear"] == pytest.approx(2 * n * 30 * (6 * d * d + 2 * d * 8960), rel=0.01)
    assert edit.components["transformer_attention"] == 50 * 2 * 30 * (4 * n * n * d + 4 * n * 512 * d)
    assert 25 < edit.total / 1e15 < 32 and edit.components["vae_decode"] > edit.components["vae_encode"] > 0
