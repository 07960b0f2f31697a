"""The saved LoRA carries its rank and alpha as diffusers' adapter metadata, so a plain diffusers CogVideoXPipeline's
`load_lora_weights` builds the same LoRA (scaling alpha / rank) as vivid's own loader."""

from __future__ import annotations

import json

import pytest
import torch
from diffusers import CogVideoXPipeline, CogVideoXTransformer3DModel
from safetensors import safe_open

from vivid.constants import LORA_WEIGHTS_NAME
from vivid.model.cogvideox_spec import CogVideoXSpec, rotary_embeddings
from vivid.model.spec import transformer_input
from vivid.model.weights import VIVIDWeightsConfig, load_vivid_weights, save_vivid_weights

RANK, ALPHA = 4, 12  # alpha != rank: a loader that assumes alpha = rank scales the LoRA by 1 instead of 3


@pytest.fixture(scope="module")
def weights(tiny_model_dir, tmp_path_factory):
    source = CogVideoXSpec().make_vivid(CogVideoXTransformer3DModel.from_pretrained(tiny_model_dir / "transformer"),
                                        RANK, ALPHA)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in source.named_parameters():
            if "lora_" in name:  # a trained-looking LoRA (B != 0); the patch embedding stays the widened base one
                param.copy_(torch.randn(param.shape, generator=gen) * 0.1)
    folder = tmp_path_factory.mktemp("lora") / "w"
    save_vivid_weights(source, folder, VIVIDWeightsConfig(lora_rank=RANK, lora_alpha=ALPHA))
    return folder


def test_the_lora_file_holds_rank_and_alpha_as_diffusers_metadata(weights):
    with safe_open(weights / LORA_WEIGHTS_NAME, "pt") as f:
        metadata = f.metadata()
        keys = list(f.keys())
    assert metadata["format"] == "pt"
    adapter = json.loads(metadata["lora_adapter_metadata"])
    assert adapter["transformer.r"] == RANK and adapter["transformer.lora_alpha"] == ALPHA
    assert sorted(adapter["transformer.target_modules"]) == sorted(CogVideoXSpec.lora_targets)
    assert keys and all(k.startswith("transformer.") and ".lora_" in k for k in keys)


def test_plain_diffusers_load_lora_weights_matches_vivid(tiny_model_dir, weights):
    vivid = CogVideoXTransformer3DModel.from_pretrained(tiny_model_dir / "transformer")
    assert load_vivid_weights(vivid, weights).lora_alpha == ALPHA
    pipe = CogVideoXPipeline.from_pretrained(tiny_model_dir)
    pipe.load_lora_weights(weights, weight_name=LORA_WEIGHTS_NAME)
    plain = pipe.transformer
    q = plain.transformer_blocks[0].attn1.to_q
    assert list(q.scaling.values()) == [ALPHA / RANK]

    cfg = plain.config
    gen = torch.Generator().manual_seed(1)
    noise = torch.randn(1, 3, 16, cfg.sample_height, cfg.sample_width, generator=gen)
    text = torch.randn(1, cfg.max_text_seq_length, cfg.text_embed_dim, generator=gen)
    rope = rotary_embeddings(plain, cfg.sample_height * 8, cfg.sample_width * 8, 3, torch.device("cpu"))
    # the patch embedding differs in width: with empty condition channels (whose weights are the widening's zeros)
    # the 36-channel VIVID transformer computes what the 16-channel base with the same LoRA does
    conditions = torch.zeros(1, 3, 20, cfg.sample_height, cfg.sample_width)
    with torch.no_grad():
        a = plain(noise, text, torch.tensor([500]), image_rotary_emb=rope).sample
        b = vivid(transformer_input(noise, conditions), text, torch.tensor([500]), image_rotary_emb=rope).sample
        base = CogVideoXTransformer3DModel.from_pretrained(tiny_model_dir / "transformer")
        c = base(noise, text, torch.tensor([500]), image_rotary_emb=rope).sample
    assert (a - c).abs().max() > 1e-3, "the LoRA changes nothing: the comparison would prove nothing"
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
