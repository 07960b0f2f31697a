"""The analytic FLOPs count against torch's FlopCounterMode on the tiny model, and the 5B numbers."""

from __future__ import annotations

import json

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from vivid.flops import (
    PUBLISHED_PFLOPS,
    edit_flops,
    kive_comparison,
    t5_flops,
    token_counts,
    transformer_forward_flops,
    transformer_train_flops,
    vae_decode_flops,
    vae_encode_flops,
    wan_transformer_forward_flops,
)
from vivid.model.wan_spec import WanSpec
from vivid.model.configs import COGVIDEOX_5B_TRANSFORMER, TINY_T5, TINY_TRANSFORMER, TINY_VAE

H, W = 64, 96


@pytest.fixture(scope="module")
def tiny():
    from vivid.model.cogvideox_spec import CogVideoXSpec
    from vivid.model.tiny import build_tiny_components

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


@pytest.mark.parametrize("frames,guidance", [(9, 6.0), (9, 1.0), (1, 6.0), (1, 1.0)])
def test_whole_pipeline_call_matches_edit_flops(tiny_model_dir, frames, guidance):
    """Every matmul and conv of one VIVIDPipeline edit (T5, VAE encode, all transformer steps, VAE decode) as
    FlopCounterMode sees it, against the analytic `edit_flops` of that edit."""
    import numpy as np

    from vivid.pipeline import VIVIDPipeline

    steps = 2
    pipe = VIVIDPipeline.from_pretrained(tiny_model_dir)
    pipe.transformer.add_adapter(pipe.spec.lora_config())  # edit_flops counts VIVID's rank-32 LoRA
    pipe.set_progress_bar_config(disable=True)
    video = np.random.RandomState(0).randint(0, 256, (frames, H, W, 3), dtype=np.uint8)
    mask = np.zeros((frames, H, W), bool)
    mask[:, H // 4 : 3 * H // 4, W // 4 : 3 * W // 4] = True
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        pipe(video=video, mask=mask, prompt="a red ball", task="add", num_inference_steps=steps,
             guidance_scale=guidance, generator=torch.Generator().manual_seed(0), output_type="np")
    analytic = edit_flops("tiny", frames, H, W, steps, guidance=guidance > 1)
    assert analytic.total == pytest.approx(counter.get_total_flops(), rel=0.05)
    # and per component: the counter's top-level modules are the pipeline's models
    by_module = {name: sum(counts.values()) for name, counts in counter.get_flop_counts().items() if "." not in name}
    c = analytic.components
    assert c["t5"] == pytest.approx(by_module["T5EncoderModel"], rel=0.05)
    assert c["vae_encode"] == pytest.approx(by_module["CogVideoXEncoder3D"], rel=0.05)
    assert c["vae_decode"] == pytest.approx(by_module["CogVideoXDecoder3D"], rel=0.05)
    assert c["transformer_lora"] > 0
    assert analytic.transformer_total == pytest.approx(by_module["CogVideoXTransformer3DModel"], rel=0.05)
    # guidance doubles the transformer work: the count follows the pipeline's real batch
    other = edit_flops("tiny", frames, H, W, steps, guidance=guidance <= 1)
    assert other.transformer_total != pytest.approx(by_module["CogVideoXTransformer3DModel"], rel=0.05)


def test_5b_tokens_and_per_forward_cost():
    assert token_counts(COGVIDEOX_5B_TRANSFORMER, 49, 480, 720) == (17_550, 226)
    fwd = transformer_forward_flops(COGVIDEOX_5B_TRANSFORMER, 49, 480, 720, in_channels=16, lora_rank=0)
    # reference §6: linear ~2 x 5e9 x 17.8k tokens, attention ~1.6e14, a forward ~3.3-3.5e14
    assert fwd["linear"] == pytest.approx(2 * 4.75e9 * 17_776, rel=0.03)
    assert fwd["attention"] == pytest.approx(4 * 17_776**2 * 3072 * 42)
    assert 3.2e14 < sum(fwd.values()) < 3.5e14


def test_5b_edit_and_published_kive_numbers():
    edit = edit_flops("5b", 49, 480, 720, 50, guidance=True)
    assert 33e15 < edit.total < 35e15
    assert edit.components["transformer_attention"] / edit.total > 0.45
    no_cfg = edit_flops("5b", 49, 480, 720, 50, guidance=False)
    assert no_cfg.transformer_total == pytest.approx(edit.transformer_total / 2)
    rows = kive_comparison()["ours_pflops"]["transformer linear layers only, guidance"]
    for key, published in PUBLISHED_PFLOPS.items():
        assert rows[key] == pytest.approx(published, rel=0.01), key


def test_frames_padded_and_bad_sizes():
    assert edit_flops("tiny", 7, H, W, 2).frames == 9
    with pytest.raises(ValueError, match="multiples of 16"):
        edit_flops("5b", 49, 470, 720)
    with pytest.raises(ValueError, match="model size"):
        edit_flops("7b")
    with pytest.raises(ValueError, match="steps"):
        edit_flops("tiny", 9, H, W, 0)


def test_cli_flops_json(capsys):
    from vivid.cli import main

    assert main(["flops", "--model-size", "tiny", "--frames", "9", "--height", "64", "--width", "96",
                 "--steps", "4", "--no-guidance", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["edit"]["guidance"] is False and out["edit"]["video_tokens"] == 72
    assert out["edit"]["total"] == pytest.approx(sum(out["edit"]["components"].values()))
    assert main(["flops"]) == 0
    assert "17.1" in capsys.readouterr().out
    assert main(["flops", "--height", "100"]) == 2


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


def test_whole_wan_pipeline_call_matches_edit_flops(tiny_wan_model_dir):
    """One VIVIDPipeline edit on the tiny Wan folder (UMT5, VAE encode, the steps' conditional and unconditional
    forwards, VAE decode) as FlopCounterMode sees it, against `edit_flops(family="wan")`."""
    import numpy as np

    from vivid.pipeline import VIVIDPipeline

    frames, steps = 9, 2
    pipe = VIVIDPipeline.from_pretrained(tiny_wan_model_dir)
    pipe.transformer.add_adapter(pipe.spec.lora_config())
    pipe.set_progress_bar_config(disable=True)
    video = np.random.RandomState(0).randint(0, 256, (frames, H, W, 3), dtype=np.uint8)
    mask = np.zeros((frames, H, W), bool)
    mask[:, H // 4 : 3 * H // 4, W // 4 : 3 * W // 4] = True
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        pipe(video=video, mask=mask, prompt="a red ball", num_inference_steps=steps, guidance_scale=5.0,
             generator=torch.Generator().manual_seed(0), output_type="np")
    analytic = edit_flops("tiny", frames, H, W, steps, guidance=True, family="wan")
    by_module = {name: sum(counts.values()) for name, counts in counter.get_flop_counts().items() if "." not in name}
    c = analytic.components
    assert c["t5"] == pytest.approx(by_module["UMT5EncoderModel"], rel=0.05)
    assert analytic.transformer_total == pytest.approx(by_module["WanTransformer3DModel"], rel=0.05)
    assert analytic.total == pytest.approx(counter.get_total_flops(), rel=0.05)


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


def test_a_new_base_is_counted_through_its_spec_alone(monkeypatch):
    """vivid/flops.py sums an edit from the spec's FLOPs methods only: a base the registry knows (here a stand-in
    registered under a new name) is counted without a line of vivid/flops.py naming it."""
    from vivid.model import registry

    class ThirdSpec(WanSpec):
        name = "third"
        display_name = "Third"

    monkeypatch.setitem(registry.SPECS, "third", ThirdSpec)
    third = edit_flops("1.3b", 81, 480, 832, 50, family="third")
    wan = edit_flops("1.3b", 81, 480, 832, 50, family="wan")
    assert third.model == "Third-1.3B" and third.components == wan.components
    spec, arch = WanSpec(), WanSpec.architectures["1.3b"]
    fwd = spec.flops_transformer_forward(arch["transformer"], 81, 480, 832, spec.flops_text_tokens(arch), batch=2)
    assert wan.components["transformer_linear"] == 50 * fwd["linear"]
    assert wan.video_tokens == spec.flops_video_tokens(arch["transformer"], 81, 480, 832) == 21 * 30 * 52
