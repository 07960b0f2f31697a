"""Wan2.1-VACE as an inference-only base (issue 36): chosen by its transformer class, its conditions made by
diffusers' own VACE preprocessing (grey fill, mask polarity), its sampling equal to the stock WanVACEPipeline's,
and everything of VIVID's recipe refused in one line."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch
from diffusers import WanVACEPipeline

from vivid.model.registry import FAMILIES, spec_by_name, spec_for
from vivid.model.vace_spec import VACESpec
from vivid.model.wan_spec import WanSpec

F, H, W = 9, 32, 48


def _inputs(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 256, (F, H, W, 3), dtype=np.uint8)
    mask = np.zeros((F, H, W), np.float32)
    mask[:, 8:24, 16:32] = 1
    return frames, mask


def test_the_registry_picks_vace_by_its_transformer_class(tiny_vace_model_dir, tiny_vace_pipe):
    assert "vace" in FAMILIES and type(spec_by_name("vace")) is VACESpec
    assert type(spec_for(tiny_vace_model_dir)) is VACESpec
    assert type(spec_for(str(tiny_vace_model_dir / "transformer"))) is VACESpec
    assert type(tiny_vace_pipe.spec) is VACESpec
    assert type(spec_for({"transformer": ["diffusers", "WanTransformer3DModel"]})) is WanSpec  # Wan stays Wan
    # nothing widened: the published transformer as it is
    assert tiny_vace_pipe.transformer.config.in_channels == 16
    assert tiny_vace_pipe.transformer.patch_embedding.in_channels == 16


@pytest.mark.parametrize("scale", [1.0, 0.5])
def test_an_edit_samples_exactly_as_the_stock_wan_vace_pipeline(tiny_vace_model_dir, tiny_vace_pipe, monkeypatch,
                                                                 scale):
    """The stock pipeline given VACE's inpainting input (the edit region grey, white mask = generate) and
    `conditioning_scale`: the same latents, bit for bit, as vivid's edit of the frames inside the mask."""
    pipe = tiny_vace_pipe
    monkeypatch.setattr(pipe.spec, "conditioning_scale", scale)
    frames, mask = _inputs()
    common = dict(height=H, width=W, num_inference_steps=2, guidance_scale=5.0, output_type="latent")
    ours = pipe(video=frames, mask=mask, prompt="a red ball", task="add",
                generator=torch.Generator().manual_seed(0), **common).frames
    stock = WanVACEPipeline.from_pretrained(tiny_vace_model_dir)
    prompt_embeds, negative = pipe.encode_prompt("a red ball", "", True)
    grey = frames.astype(np.float32) / 255 * (1 - mask[..., None]) + 0.5 * mask[..., None]
    theirs = stock(
        video=torch.from_numpy(grey).permute(0, 3, 1, 2)[None],
        mask=torch.from_numpy(mask)[None, :, None].expand(1, F, 3, H, W), conditioning_scale=scale,
        prompt_embeds=prompt_embeds, negative_prompt_embeds=negative, num_frames=F,
        generator=torch.Generator().manual_seed(0), max_sequence_length=16, **common,
    ).frames
    assert torch.equal(theirs.permute(0, 2, 1, 3, 4), ours)


def _reference(seed: int, height: int, width: int):
    """A reference image of another size and aspect than the video (diffusers fits it on a white canvas)."""
    from PIL import Image

    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))


@pytest.mark.parametrize("sizes", [[(20, 36)], [(40, 24), (16, 16)]])
def test_reference_images_sample_exactly_as_the_stock_wan_vace_pipeline(tiny_vace_model_dir, tiny_vace_pipe, sizes):
    """vivid's edit with VACE reference images (prepared by diffusers' own `preprocess_conditions`, their latent
    frames before the video's) has the latents of the stock pipeline given the same references, bit for bit, once
    the stock's reference frames are dropped (as its decoding drops them); without them the edit differs."""
    pipe = tiny_vace_pipe
    frames, mask = _inputs()
    references = [_reference(i, h, w) for i, (h, w) in enumerate(sizes)]
    common = dict(height=H, width=W, num_inference_steps=2, guidance_scale=5.0, output_type="latent")
    ours = pipe(video=frames, mask=mask, prompt="a red ball", task="add", reference_images=references,
                generator=torch.Generator().manual_seed(0), **common).frames
    stock = WanVACEPipeline.from_pretrained(tiny_vace_model_dir)
    prompt_embeds, negative = pipe.encode_prompt("a red ball", "", True)
    grey = frames.astype(np.float32) / 255 * (1 - mask[..., None]) + 0.5 * mask[..., None]
    theirs = stock(
        video=torch.from_numpy(grey).permute(0, 3, 1, 2)[None], reference_images=references,
        mask=torch.from_numpy(mask)[None, :, None].expand(1, F, 3, H, W), prompt_embeds=prompt_embeds,
        negative_prompt_embeds=negative, num_frames=F, generator=torch.Generator().manual_seed(0),
        max_sequence_length=16, **common,
    ).frames
    assert theirs.shape[2] == ours.shape[1] + len(references)  # the stock's latent output keeps the references'
    assert torch.equal(theirs[:, :, len(references):].permute(0, 2, 1, 3, 4), ours)
    plain = pipe(video=frames, mask=mask, prompt="a red ball", task="add",
                 generator=torch.Generator().manual_seed(0), **common).frames
    assert plain.shape == ours.shape and not torch.allclose(plain, ours)


def test_other_bases_refuse_reference_images_in_one_line():
    from vivid.model.cogvideox_spec import CogVideoXSpec

    for spec in (WanSpec(), CogVideoXSpec()):
        with pytest.raises(ValueError, match=f"--reference-image: {spec.display_name} takes no reference images") as err:
            spec.refuse_reference_images("--reference-image")
        assert "\n" not in str(err.value)
        with pytest.raises(ValueError, match="reference_images: .* takes no reference images"):
            spec.encode_conditions(None, torch.zeros(1, 1, 3, 8, 8), torch.zeros(1, 1, 1, 8, 8), [torch.zeros(3, 8, 8)])
    VACESpec().refuse_reference_images("--reference-image")  # VACE takes them


def test_conditions_never_see_the_pixels_under_the_mask(tiny_vace_pipe):
    """VACE's grey fill: whatever the masked video holds inside the mask (vivid erases to -1), the conditions are
    those of grey there; the mask cells are the mask itself, 1 = generate."""
    spec, vae = tiny_vace_pipe.spec, tiny_vace_pipe.vae
    frames, mask = _inputs()
    video = torch.from_numpy(frames).permute(0, 3, 1, 2)[None].float() / 127.5 - 1
    mask_t = torch.from_numpy(mask)[None, :, None]
    noisy = torch.where(mask_t > 0.5, torch.rand_like(video) * 2 - 1, video)
    grey = torch.where(mask_t > 0.5, torch.zeros_like(video), video)
    a, b = spec.encode_conditions(vae, noisy, mask_t), spec.encode_conditions(vae, grey, mask_t)
    assert a.shape == (1, 3, spec.condition_channels, H // 8, W // 8) and torch.equal(a, b)
    cells = a[:, :, 32:]
    assert torch.equal(cells[0, 0, :, 1:3, 2:4], torch.ones(64, 2, 2))  # inside the mask: generate
    assert cells[0, :, :, 0].abs().max() == 0  # outside: keep


def test_vivid_weights_lora_and_training_are_refused_in_one_line(tiny_vace_pipe, tmp_path):
    spec = tiny_vace_pipe.spec
    for call in (lambda: tiny_vace_pipe.load_vivid_weights(tmp_path / "no-such-weights"),
                 lambda: spec.make_vivid(tiny_vace_pipe.transformer), spec.lora_config,
                 lambda: spec.compute_loss(None, None, None, None, None)):
        with pytest.raises(ValueError, match="inference-only base") as err:
            call()
        assert "\n" not in str(err.value)
    assert not hasattr(tiny_vace_pipe.transformer, "peft_config")
    WanSpec().refuse_training("vivid train")  # the bases VIVID trains on refuse nothing


# the transformer configs diffusers' scripts/convert_wan_to_diffusers.py writes for "Wan-VACE-1.3B" and "Wan-VACE-14B"
CONVERTED_VACE_CONFIGS = {
    "1.3b": dict(added_kv_proj_dim=None, attention_head_dim=128, cross_attn_norm=True, eps=1e-06, ffn_dim=8960,
                 freq_dim=256, in_channels=16, num_attention_heads=12, num_layers=30, out_channels=16,
                 patch_size=[1, 2, 2], qk_norm="rms_norm_across_heads", text_dim=4096,
                 vace_layers=[0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28], vace_in_channels=96),
    "14b": dict(added_kv_proj_dim=None, attention_head_dim=128, cross_attn_norm=True, eps=1e-06, ffn_dim=13824,
                freq_dim=256, in_channels=16, num_attention_heads=40, num_layers=40, out_channels=16,
                patch_size=[1, 2, 2], qk_norm="rms_norm_across_heads", text_dim=4096,
                vace_layers=[0, 5, 10, 15, 20, 25, 30, 35], vace_in_channels=96),
}


@pytest.mark.parametrize("size", ["1.3b", "14b"])
def test_full_size_vace_configs_are_the_converted_checkpoints(size):
    """vivid's VACE 1.3B / 14B transformers are configured as diffusers converted the published checkpoints (the
    keys the script leaves out at WanVACETransformer3DModel's defaults), and build with one context block per
    listed layer."""
    from diffusers import WanVACETransformer3DModel

    config = dict(VACESpec.architectures[size]["transformer"])
    converted = CONVERTED_VACE_CONFIGS[size]
    assert {k: (list(v) if isinstance(v, tuple) else v) for k, v in config.items() if k in converted} == converted
    signature = inspect.signature(WanVACETransformer3DModel.__init__).parameters
    for key in set(config) - set(converted):
        assert config[key] == signature[key].default, key
    with torch.device("meta"):
        model = WanVACETransformer3DModel(**config)
    assert len(model.vace_blocks) == len(converted["vace_layers"]) and len(model.blocks) == converted["num_layers"]
