"""CogVideoX's FLOPs formulas (vivid/flops/cogvideox.py) against torch's FlopCounterMode on the tiny model, a
T5-style encoder's (vivid/flops/formulas.py) on the tiny T5, and the 5B's numbers."""

from __future__ import annotations

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from vivid.flops.cogvideox import (
    token_counts,
    transformer_forward_flops,
    transformer_train_flops,
    vae_decode_flops,
    vae_encode_flops,
)
from vivid.flops.formulas import t5_flops
from vivid.model.configs import COGVIDEOX_5B_TRANSFORMER, TINY_T5, TINY_TRANSFORMER, TINY_VAE

H, W = 64, 96


@pytest.fixture(scope="module")
def tiny():
    from vivid.model.tiny import build_tiny_components
    from vivid.model.cogvideox_spec import CogVideoXSpec

    components = build_tiny_components(0)
    components["transformer"] = CogVideoXSpec().make_vivid(components["transformer"])
    return components


def _measured(fn) -> int:
    # CPU SDPA kernels are invisible to the counter; the math backend is the same product, as bmm calls.
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def _transformer_call(transformer, frames: int, batch: int):
    from vivid.model.cogvideox_spec import rotary_embeddings

    t = (frames - 1) // 4 + 1
    x = torch.randn(batch, t, 36, H // 8, W // 8)
    text = torch.randn(batch, TINY_TRANSFORMER["max_text_seq_length"], TINY_TRANSFORMER["text_embed_dim"])
    rot = rotary_embeddings(transformer, H, W, t, torch.device("cpu"))
    return lambda: transformer(
        hidden_states=x, encoder_hidden_states=text, timestep=torch.full((batch,), 500), image_rotary_emb=rot
    )[0]


@pytest.mark.parametrize("frames,batch", [(9, 2), (1, 1)])
def test_transformer_forward_matches_flop_counter(tiny, frames, batch):
    call = _transformer_call(tiny["transformer"], frames, batch)
    with torch.no_grad():
        measured = _measured(call)
    analytic = sum(transformer_forward_flops(TINY_TRANSFORMER, frames, H, W, batch=batch).values())
    assert measured > 0
    assert analytic == pytest.approx(measured, rel=0.05)


def test_stock_transformer_forward_matches_flop_counter():
    from diffusers import CogVideoXTransformer3DModel

    from vivid.model.cogvideox_spec import rotary_embeddings

    torch.manual_seed(0)
    stock = CogVideoXTransformer3DModel(**TINY_TRANSFORMER)
    x = torch.randn(1, 3, 16, H // 8, W // 8)
    text = torch.randn(1, 16, 64)
    rot = rotary_embeddings(stock, H, W, 3, torch.device("cpu"))
    with torch.no_grad():
        measured = _measured(lambda: stock(hidden_states=x, encoder_hidden_states=text, timestep=torch.tensor([1]),
                                           image_rotary_emb=rot))
    analytic = sum(transformer_forward_flops(TINY_TRANSFORMER, 9, H, W, in_channels=16, lora_rank=0).values())
    assert analytic == pytest.approx(measured, rel=0.05)


def test_lora_training_step_matches_flop_counter(tiny):
    call = _transformer_call(tiny["transformer"], 9, 2)
    measured = _measured(lambda: call().float().pow(2).mean().backward())
    tiny["transformer"].zero_grad(set_to_none=True)
    analytic = transformer_train_flops(TINY_TRANSFORMER, 9, H, W, batch=2)
    assert analytic["total"] == pytest.approx(measured, rel=0.05)
    assert 2.0 < analytic["total"] / analytic["forward"] < 3.0


@pytest.mark.parametrize("frames", [1, 17])  # 17: two encoder batches (9 + 8), decoder batches 3 + 2
def test_vae_matches_flop_counter(tiny, frames):
    vae = tiny["vae"]
    video = torch.randn(1, 3, frames, H, W)
    with torch.no_grad():
        latents = vae.encode(video).latent_dist.mode()
        enc = _measured(lambda: vae.encode(video))
        dec = _measured(lambda: vae.decode(latents))
    assert vae_encode_flops(TINY_VAE, frames, H, W) == pytest.approx(enc, rel=0.05)
    assert vae_decode_flops(TINY_VAE, frames, H, W) == pytest.approx(dec, rel=0.05)


def test_t5_matches_flop_counter(tiny):
    encoder = tiny["text_encoder"]
    ids = torch.randint(0, 300, (2, 16))
    with torch.no_grad():
        measured = _measured(lambda: encoder(ids))
    assert t5_flops(TINY_T5, 16, gated=False, batch=2) == pytest.approx(measured, rel=0.05)


def test_5b_tokens_and_per_forward_cost():
    assert token_counts(COGVIDEOX_5B_TRANSFORMER, 49, 480, 720) == (17_550, 226)
    fwd = transformer_forward_flops(COGVIDEOX_5B_TRANSFORMER, 49, 480, 720, in_channels=16, lora_rank=0)
    # reference §6: linear ~2 x 5e9 x 17.8k tokens, attention ~1.6e14, a forward ~3.3-3.5e14
    assert fwd["linear"] == pytest.approx(2 * 4.75e9 * 17_776, rel=0.03)
    assert fwd["attention"] == pytest.approx(4 * 17_776**2 * 3072 * 42)
    assert 3.2e14 < sum(fwd.values()) < 3.5e14
