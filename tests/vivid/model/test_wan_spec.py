"""The Wan2.1 specification: step-0 equivalence with plain Wan (transformer and whole sampler), WanPipeline's text
encoding and latent normalisation, mask packing for the Wan VAE, full-size parameter counts on the meta device,
LoRA targets and counts, weights round trip (and diffusers' Wan LoRA loader reading the file), flow-matching
training on the tiny Wan, a tiny denoising loop."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from diffusers import WanPipeline, WanTransformer3DModel

from vivid.constants import LORA_WEIGHTS_NAME, PATCH_EMBED_WEIGHTS_NAME, VIVID_CONFIG_NAME
from vivid.io.edit_inputs import load_edit_inputs
from vivid.model.configs import TINY_WAN_TRANSFORMER, WAN21_1_3B_TRANSFORMER, WAN21_14B_TRANSFORMER
from vivid.model.registry import spec_for
from vivid.model.spec import SamplingSettings, StepHooks
from vivid.model.transformer import compute_dtype
from vivid.model.tiny import build_tiny_components
from vivid.model.tiny_wan import build_tiny_wan_components
from vivid.model.wan_spec import WanSpec
from vivid.model.weights import VIVIDWeightsConfig, load_vivid_weights, save_vivid_weights

SPEC = WanSpec()
FRAMES, HEIGHT, WIDTH = 5, 32, 48  # 2 latent frames of 4 x 6 cells


@pytest.fixture(scope="module")
def wan(tiny_wan_model_dir):
    """The tiny Wan folder's five components, loaded as a user would."""
    components = SPEC.load_components(tiny_wan_model_dir)
    for name in ("text_encoder", "vae", "transformer"):
        components[name].eval()
    return components


def _tiny_transformer(seed: int = 0) -> WanTransformer3DModel:
    torch.manual_seed(seed)
    return WanTransformer3DModel(**TINY_WAN_TRANSFORMER).eval()


def _random_inputs(batch=1, seed=1):
    g = torch.Generator().manual_seed(seed)
    t, h, w = SPEC.latent_frames(FRAMES), HEIGHT // 8, WIDTH // 8
    noisy = torch.randn(batch, t, 16, h, w, generator=g)
    conditions = torch.randn(batch, t, 20, h, w, generator=g)
    text = torch.randn(batch, 16, TINY_WAN_TRANSFORMER["text_dim"], generator=g)
    return noisy, conditions, text


def test_spec_basics(wan):
    assert spec_for(wan["transformer"]).name == "wan" and SPEC.in_channels == 36
    assert SPEC.patch_size(wan["transformer"]) == (1, 2, 2) and SPEC.size_multiple(wan["transformer"]) == 16
    assert SPEC.vae_compression(wan["vae"]) == (4, 8)
    assert SPEC.latent_frames(81) == 21 and SPEC.padded_frame_count(14) == 17
    with pytest.raises(ValueError, match="4k\\+1"):
        SPEC.latent_frames(80)
    assert SPEC.max_text_length(wan["tokenizer"], wan["transformer"]) == 16
    assert SPEC.text_embedding_dim(wan["transformer"]) == TINY_WAN_TRANSFORMER["text_dim"]
    assert SPEC.stock_pipeline_class is WanPipeline
    assert SPEC.native_size(wan["transformer"]) == (64, 96)
    with torch.device("meta"):
        assert SPEC.native_size(WanTransformer3DModel(**WAN21_1_3B_TRANSFORMER)) == (480, 832)
    assert (SPEC.native_frames, SPEC.native_fps) == (81, 16)
    assert wan["vae"].dtype == torch.float32  # kept in float32, as Wan's examples load it


def test_widened_wan_equals_plain_wan_at_initialisation():
    plain = _tiny_transformer()
    vivid = SPEC.make_vivid(_tiny_transformer())
    noisy, conditions, text = _random_inputs()
    t = torch.tensor([500])
    with torch.no_grad():
        expected = plain(noisy.permute(0, 2, 1, 3, 4), t, text, return_dict=False)[0].permute(0, 2, 1, 3, 4)
        got = SPEC.predict(vivid, noisy, conditions, text, t)
    assert vivid.patch_embedding.in_channels == 36 and vivid.config.in_channels == 36
    assert vivid.config.out_channels == 16
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    with torch.no_grad():  # the conditions matter once the new channels are trained
        vivid.patch_embedding.weight[:, 16:].normal_()
        changed = SPEC.predict(vivid, noisy, conditions, text, t)
    assert (changed - expected).abs().max() > 1e-3


def test_widening_keeps_weights_zeroes_new_channels_and_is_idempotent():
    t = _tiny_transformer()
    old = t.patch_embedding.weight.detach().clone()
    SPEC.widen(t)
    new = t.patch_embedding.weight
    assert tuple(new.shape) == (old.shape[0], 36, 1, 2, 2)
    assert torch.equal(new[:, :16], old) and torch.count_nonzero(new[:, 16:]) == 0
    SPEC.widen(t)
    assert t.patch_embedding.weight.shape[1] == 36


def test_vivid_sampler_at_initialisation_is_stock_wan(wan):
    """spec.sample on the widened model with arbitrary conditions = WanPipeline on the plain model (guidance 5,
    UniPC), and spec.decode_latents = WanPipeline's decoding, with non-trivial latent statistics."""
    g = torch.Generator().manual_seed(3)
    vae = copy.deepcopy(wan["vae"])
    vae.register_to_config(
        latents_mean=torch.randn(16, generator=g).tolist(), latents_std=(torch.rand(16, generator=g) + 0.5).tolist()
    )
    plain = copy.deepcopy(wan["transformer"])
    stock = WanPipeline(tokenizer=wan["tokenizer"], text_encoder=wan["text_encoder"], vae=vae, transformer=plain,
                        scheduler=copy.deepcopy(wan["scheduler"]))
    stock.set_progress_bar_config(disable=True)
    vivid = SPEC.make_vivid(copy.deepcopy(wan["transformer"]))
    _, conditions, text = _random_inputs(seed=4)
    negative = torch.randn(text.shape, generator=g)
    latents = torch.randn(SPEC.latent_shape(1, FRAMES, HEIGHT, WIDTH), generator=g)
    kwargs = dict(num_inference_steps=3, guidance_scale=5.0)
    expected = stock(prompt_embeds=text, negative_prompt_embeds=negative, latents=latents.permute(0, 2, 1, 3, 4),
                     height=HEIGHT, width=WIDTH, num_frames=FRAMES, output_type="latent", **kwargs).frames
    got = SPEC.sample(vivid, copy.deepcopy(wan["scheduler"]), conditions, text, negative,
                      SamplingSettings(latents=latents, **kwargs))
    torch.testing.assert_close(got, expected.permute(0, 2, 1, 3, 4), rtol=0, atol=1e-5)
    video = stock(prompt_embeds=text, negative_prompt_embeds=negative, latents=latents.permute(0, 2, 1, 3, 4),
                  height=HEIGHT, width=WIDTH, num_frames=FRAMES, output_type="pt", **kwargs).frames  # [0, 1]
    with torch.no_grad():
        decoded = SPEC.decode_latents(vae, expected.permute(0, 2, 1, 3, 4))
    torch.testing.assert_close((decoded / 2 + 0.5).clamp(0, 1), video, rtol=0, atol=1e-6)
    # and encoding normalises as WanPipeline's video-to-video does: (mode - mean) * (1 / std)
    clip = torch.rand(1, FRAMES, 3, HEIGHT, WIDTH, generator=g) * 2 - 1
    with torch.no_grad():
        raw = vae.encode(clip.permute(0, 2, 1, 3, 4)).latent_dist.mode().permute(0, 2, 1, 3, 4)
        normalised = SPEC.encode_video(vae, clip)
    mean = torch.tensor(vae.config.latents_mean).view(1, 1, 16, 1, 1)
    std = torch.tensor(vae.config.latents_std).view(1, 1, 16, 1, 1)
    torch.testing.assert_close(normalised, (raw - mean) / std, rtol=1e-5, atol=1e-6)


def test_prompt_encoding_is_wan_pipelines(wan):
    stock = WanPipeline(**{k: wan[k] for k in ("tokenizer", "text_encoder", "vae", "transformer", "scheduler")})
    prompts = ["a red   ball", "a small blue cube on a table that is much longer than sixteen tokens allow"]
    with torch.no_grad():
        expected, _ = stock.encode_prompt(prompts, do_classifier_free_guidance=False, max_sequence_length=16,
                                          device=torch.device("cpu"))
    got = SPEC.encode_prompts(wan["tokenizer"], wan["text_encoder"], prompts, 16)
    assert torch.equal(got, expected)
    length = len(wan["tokenizer"]("a red ball").input_ids)  # the cleaned caption's tokens, with </s>
    assert 1 < length < 16
    assert torch.count_nonzero(got[0, length:]) == 0 and bool(got[0, :length].abs().sum(-1).gt(0).all())


def test_mask_packing_for_the_wan_vae(wan):
    """Hand-built masks: frame 0 alone, then groups of 4 frames as the 4 channels; 8x8 cells max-pooled; the packed
    mask has the Wan VAE's own latent grid."""
    mask = torch.zeros(1, 9, 1, 32, 48)
    mask[0, 0, 0, 0, 0] = 1  # frame 0, pixel (0, 0): cell (0, 0), all 4 channels of latent frame 0
    mask[0, 2, 0, 9, 17] = 1  # frame 2: latent frame 1, channel 1, cell (1, 2)
    mask[0, 8, 0, 31, 47] = 1  # frame 8: latent frame 2, channel 3, cell (3, 5)
    packed = SPEC.pack_mask(mask)
    expected = torch.zeros(1, 3, 4, 4, 6)
    expected[0, 0, :, 0, 0] = 1
    expected[0, 1, 1, 1, 2] = 1
    expected[0, 2, 3, 3, 5] = 1
    assert torch.equal(packed, expected)
    with torch.no_grad():
        latents = SPEC.encode_video(wan["vae"], torch.zeros(1, 9, 3, 32, 48))
    assert latents.shape[:2] == packed.shape[:2] and latents.shape[3:] == packed.shape[3:]
    with torch.no_grad():
        conditions = SPEC.encode_conditions(wan["vae"], torch.zeros(1, 9, 3, 32, 48), mask)
    assert conditions.shape == (1, 3, 20, 4, 6) and torch.equal(conditions[:, :, 16:], expected)


WAN21_1_3B_PARAMS = 1_418_996_800
WAN21_14B_PARAMS = 14_288_491_584
UMT5_XXL_ENCODER_PARAMS = 5_680_910_336
WAN21_VAE_PARAMS = 126_892_531


def test_wan21_vae_and_umt5_build_on_meta_with_their_parameter_counts():
    from diffusers import AutoencoderKLWan
    from transformers import UMT5Config, UMT5EncoderModel

    arch = SPEC.architectures["1.3b"]
    with torch.device("meta"):
        vae = AutoencoderKLWan(**arch["vae"])
        text_encoder = UMT5EncoderModel(UMT5Config(**arch["text_encoder"]))
    assert SPEC.parameter_report(vae)["total"] == WAN21_VAE_PARAMS
    assert SPEC.parameter_report(text_encoder)["total"] == UMT5_XXL_ENCODER_PARAMS
    assert SPEC.vae_compression(vae) == (4, 8)


@pytest.mark.parametrize("size, params", [("1.3b", WAN21_1_3B_PARAMS), ("14b", WAN21_14B_PARAMS)])
def test_full_size_wan_builds_on_meta_with_published_parameter_counts(size, params):
    config = SPEC.architectures[size]["transformer"]
    assert config == {"1.3b": WAN21_1_3B_TRANSFORMER, "14b": WAN21_14B_TRANSFORMER}[size]
    with torch.device("meta"):
        base = WanTransformer3DModel(**config)
    assert SPEC.parameter_report(base)["total"] == params
    hidden, blocks, rank = config["num_attention_heads"] * config["attention_head_dim"], config["num_layers"], 32
    lora = blocks * 2 * 4 * rank * (hidden + hidden)  # attn1 + attn2, each to_q/k/v/out.0: A (r x d) + B (d x r)
    assert SPEC.lora_parameter_count(base) == lora
    with torch.device("meta"):
        vivid = SPEC.make_vivid(WanTransformer3DModel(**config))
    report = SPEC.parameter_report(vivid)
    patch = 1 * 2 * 2
    assert report["total"] == params + hidden * 20 * patch + lora
    assert report["trainable"] == hidden * 36 * patch + hidden + lora


def test_only_lora_on_self_and_cross_attention_and_the_patch_embedding_train():
    t = SPEC.make_vivid(_tiny_transformer())
    trainable = {n for n, p in t.named_parameters() if p.requires_grad}
    assert {"patch_embedding.weight", "patch_embedding.bias"} <= trainable
    assert all("lora_" in n or n.startswith("patch_embedding.") for n in trainable)
    layers = {n.split(".lora_")[0] for n in trainable if "lora_" in n}
    expected = {f"blocks.{b}.{a}.{p}" for b in range(TINY_WAN_TRANSFORMER["num_layers"])
                for a in ("attn1", "attn2") for p in ("to_q", "to_k", "to_v", "to_out.0")}
    assert layers == expected
    assert all(torch.count_nonzero(p) == 0 for n, p in t.named_parameters() if "lora_B" in n)
    lora = sum(p.numel() for n, p in t.named_parameters() if "lora_" in n)
    assert lora == SPEC.lora_parameter_count(_tiny_transformer())
    assert "trainable" in SPEC.format_parameter_report(t)


def test_wan_weights_round_trip_and_stock_lora_loader(tmp_path, wan):
    src = SPEC.make_vivid(_tiny_transformer(0))
    with torch.no_grad():
        for name, p in src.named_parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.01)
    folder = save_vivid_weights(src, tmp_path / "w", VIVIDWeightsConfig(base_model="tiny-wan"))
    config = json.loads((folder / VIVID_CONFIG_NAME).read_text())
    assert config["family"] == "wan" and spec_for(folder).name == "wan"
    from safetensors.torch import load_file

    assert set(load_file(folder / PATCH_EMBED_WEIGHTS_NAME)) == {"patch_embedding.weight", "patch_embedding.bias"}
    dst = _tiny_transformer(0)
    load_vivid_weights(dst, folder)
    a, b = src.state_dict(), dst.state_dict()
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ValueError, match="wan base"):  # onto a CogVideoX model: one clear line
        load_vivid_weights(build_tiny_components()["transformer"], folder)
    # diffusers' own Wan LoRA loader reads the LoRA file (the patch embedding is VIVID's, beside it)
    stock = WanPipeline(**{k: copy.deepcopy(wan[k]) if k == "transformer" else wan[k]
                           for k in ("tokenizer", "text_encoder", "vae", "transformer", "scheduler")})
    stock.load_lora_weights(folder, weight_name=LORA_WEIGHTS_NAME, adapter_name="vivid")
    loaded = {k: v for k, v in stock.transformer.state_dict().items() if "lora_A" in k}
    ours = {k: v for k, v in src.state_dict().items() if "lora_A" in k}
    assert len(loaded) == len(ours) > 0
    for k, v in ours.items():
        assert torch.equal(loaded[k.replace(".default.", ".vivid.")], v), k


def test_flow_matching_objective():
    latents = torch.randn(64, 2, 16, 4, 6)
    scheduler = build_tiny_wan_components()["scheduler"]
    assert SPEC.shift(scheduler) == 3.0  # the sampler's own
    noisy, noise, t, levels = SPEC.noise_for_training(scheduler, latents, torch.Generator().manual_seed(0))
    sigmas = SPEC.training_sigmas(scheduler, 64, torch.device("cpu"), torch.Generator().manual_seed(0))  # same draw
    assert t.dtype == torch.long and torch.equal(t, (sigmas * 1000).long()) and torch.equal(levels, sigmas)
    s = sigmas.view(-1, 1, 1, 1, 1)
    torch.testing.assert_close(noisy, (1 - s) * latents + s * noise, rtol=0, atol=1e-6)
    assert 0.6 < sigmas.median() < 0.9  # shift 3 moves logit-normal sigmas (median 0.5) up, to a median of 0.75
    pred, target = SPEC.prediction_and_target(None, noise - latents, noisy, latents, noise, t)
    assert torch.equal(target, noise - latents) and torch.equal(pred, target)
    assert WanSpec(flow_shift=1.0).shift(None) == 1.0
    with pytest.raises(ValueError, match="timestep_sampling"):
        WanSpec(timestep_sampling="bogus")


def test_sigma_sqrt_weights_by_the_exact_sigma_drawn(wan, monkeypatch):
    """A sigma below 1/1000 truncates to timestep 0; weighting by that (sigma 0, weight 1/0) made the loss
    infinite. The weight is the exact sigma's: finite, and the loss is the same whatever the timestep's rounding."""
    spec = WanSpec(loss_weighting="sigma_sqrt")
    drawn = torch.tensor([0.0004, 0.5])
    monkeypatch.setattr(spec, "training_sigmas", lambda *args, **kwargs: drawn.clone())
    transformer = SPEC.make_vivid(copy.deepcopy(wan["transformer"]))
    latents, conditions = torch.randn(2, 2, 16, 4, 6), torch.zeros(2, 2, 20, 4, 6)
    text = torch.zeros(2, 16, TINY_WAN_TRANSFORMER["text_dim"])
    loss = spec.compute_loss(transformer, wan["scheduler"], latents, conditions, text, torch.Generator().manual_seed(0))
    assert torch.isfinite(loss)
    _, _, t, levels = spec.noise_for_training(wan["scheduler"], latents)
    assert t.tolist() == [0, 500] and torch.equal(levels, drawn)
    torch.testing.assert_close(spec.loss_weights(wan["scheduler"], levels), drawn ** -2.0, rtol=0, atol=0)


def _uint8_batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    video = torch.randint(0, 256, (1, FRAMES, 3, HEIGHT, WIDTH), generator=g, dtype=torch.uint8)
    mask = torch.zeros(1, FRAMES, 1, HEIGHT, WIDTH)
    mask[:, :, :, 8:24, 16:40] = 1
    masked = torch.where(mask.bool(), torch.zeros_like(video), video)
    return {"video": video, "masked_video": masked, "mask": mask}


def test_a_few_flow_matching_steps_lower_the_loss_on_a_fixed_batch(wan):
    transformer = SPEC.make_vivid(copy.deepcopy(wan["transformer"])).train()
    scheduler = wan["scheduler"]
    latents, conditions = SPEC.encode_batch(wan["vae"], _uint8_batch(), torch.Generator().manual_seed(0))
    assert latents.shape == (1, 2, 16, 4, 6) and conditions.shape == (1, 2, 20, 4, 6)
    embeds = SPEC.encode_prompts(wan["tokenizer"], wan["text_encoder"], ["a red ball"], 16)
    params = [p for p in transformer.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=3e-3, weight_decay=0.0)

    def loss(seed: int) -> torch.Tensor:
        return SPEC.compute_loss(transformer, scheduler, latents.repeat(2, 1, 1, 1, 1),
                                 conditions.repeat(2, 1, 1, 1, 1), embeds.repeat(2, 1, 1),
                                 torch.Generator().manual_seed(seed), mask_loss_weight=0.5)

    with torch.no_grad():
        before = float(loss(123))
    for step in range(12):
        optimizer.zero_grad()
        value = loss(step % 2)
        value.backward()
        optimizer.step()
        assert torch.isfinite(value)
    with torch.no_grad():
        after = float(loss(123))
    assert after < 0.9 * before, (before, after)


def test_tiny_wan_denoising_loop(wan):
    vivid = SPEC.make_vivid(copy.deepcopy(wan["transformer"]))
    with torch.no_grad():
        conditions = SPEC.encode_conditions(wan["vae"], torch.zeros(1, FRAMES, 3, HEIGHT, WIDTH),
                                            torch.ones(1, FRAMES, 1, HEIGHT, WIDTH))
    embeds = SPEC.encode_prompts(wan["tokenizer"], wan["text_encoder"], ["a red ball", ""], 16)
    seen = []
    latents = SPEC.sample(vivid, copy.deepcopy(wan["scheduler"]), conditions, embeds[:1], embeds[1:],
                          SamplingSettings(num_inference_steps=2, generator=torch.Generator().manual_seed(0)),
                          StepHooks(on_step=lambda i, t, tensors: seen.append(i)))
    assert latents.shape == (1, 2, 16, 4, 6) and seen == [0, 1]
    with torch.no_grad():
        video = SPEC.decode_latents(wan["vae"], latents)
    assert video.shape == (1, FRAMES, 3, HEIGHT, WIDTH) and bool(torch.isfinite(video).all())
    with pytest.raises(ValueError, match="negative_prompt_embeds"):
        SPEC.sample(vivid, wan["scheduler"], conditions, embeds[:1], settings=SamplingSettings(guidance_scale=5.0))


def test_bf16_wan_keeps_its_vae_in_fp32_and_computes_in_bf16(tiny_wan_model_dir):
    """Wan keeps its time embedding and norms in fp32 (`_keep_in_fp32_modules`); they must not make the compute
    dtype fp32 once the patch embedding is trainable (the blocks would get fp32 inputs)."""
    from vivid.model.transformer import compute_dtype

    components = SPEC.load_components(tiny_wan_model_dir, dtype=torch.bfloat16)
    transformer = SPEC.make_vivid(components["transformer"])
    assert components["vae"].dtype == torch.float32
    assert {p.dtype for p in transformer.parameters()} == {torch.bfloat16, torch.float32}
    assert compute_dtype(transformer) == torch.bfloat16
    noisy, conditions, text = _random_inputs()
    with torch.no_grad():
        out = SPEC.predict(transformer, noisy, conditions, text, torch.tensor([300]))
    assert out.dtype == torch.bfloat16 and bool(torch.isfinite(out).all())


def test_one_vae_dtype_rule_for_training_and_inference(tiny_wan_model_dir):
    """`vivid edit` loads through VIVIDPipeline.from_pretrained, training through spec.load_components: in bf16 both
    keep Wan's VAE in float32 (its weights loaded in float32, not rounded to bf16 on the way)."""
    from vivid.pipeline import VIVIDPipeline

    pipe = VIVIDPipeline.from_pretrained(tiny_wan_model_dir, torch_dtype=torch.bfloat16)
    training = SPEC.load_components(tiny_wan_model_dir, dtype=torch.bfloat16)
    assert pipe.vae.dtype == training["vae"].dtype == torch.float32
    assert compute_dtype(pipe.transformer) == torch.bfloat16
    stored = VIVIDPipeline.from_pretrained(tiny_wan_model_dir).vae.state_dict()
    assert all(torch.equal(v, stored[k]) for k, v in pipe.vae.state_dict().items())
    assert VIVIDPipeline.from_pretrained(tiny_wan_model_dir, dtype=torch.bfloat16).vae.dtype == torch.float32


def test_vivid_pipeline_edits_with_the_tiny_wan_folder(tiny_wan_model_dir, tmp_path):
    """VIVIDPipeline.from_pretrained(<Wan folder>) is driven by the Wan spec: Wan's sampler on VIVID's input, the
    source kept outside the dilated mask, and VIVID weights saved from it load back into a fresh one."""
    import numpy as np

    from vivid.pipeline import VIVIDPipeline

    pipe = VIVIDPipeline.from_pretrained(tiny_wan_model_dir)
    pipe.set_progress_bar_config(disable=True)
    assert isinstance(pipe.spec, WanSpec) and pipe.transformer.config.in_channels == 36
    assert pipe.native_area == 64 * 96 and pipe.max_sequence_length == 16
    rng = np.random.RandomState(0)
    video = rng.randint(0, 255, (FRAMES, HEIGHT, WIDTH, 3), dtype=np.uint8)
    mask = np.zeros((FRAMES, HEIGHT, WIDTH), bool)
    mask[:, 12:24, 16:36] = True
    kwargs = dict(video=video, mask=mask, prompt="a red ball", num_inference_steps=2)
    latents = pipe(**kwargs, generator=torch.Generator().manual_seed(0), output_type="latent").frames
    with torch.no_grad():  # the pipeline's latents are the spec's sampler's on the same conditions and noise
        masked, mask_t = pipe._to_model_tensors(load_edit_inputs(video, mask, "a red ball", "add"),
                                                (HEIGHT, WIDTH), torch.device("cpu"))
        conditions = SPEC.encode_conditions(pipe.vae, masked, mask_t)
        text, negative = pipe.encode_prompt("a red ball", "", True)
        expected = SPEC.sample(pipe.transformer, pipe.scheduler, conditions, text, negative, SamplingSettings(
            num_inference_steps=2, generator=torch.Generator().manual_seed(0)))
    assert torch.equal(latents, expected)
    frames = pipe(**kwargs, generator=torch.Generator().manual_seed(0), output_type="uint8").frames[0]
    assert frames.shape == video.shape and frames.dtype == np.uint8
    assert np.array_equal(frames[:, :2], video[:, :2])  # far from the mask: the source, bit for bit
    assert not np.array_equal(frames[mask], video[mask])
    pipe.spec.make_vivid(pipe.transformer)  # a "trained" VIVID: LoRA added, condition channels non-zero
    with torch.no_grad():
        pipe.transformer.patch_embedding.weight[:, 16:].normal_(generator=torch.Generator().manual_seed(1))
    pipe.save_vivid_weights(tmp_path / "w", base_model=str(tiny_wan_model_dir))
    again = VIVIDPipeline.from_vivid(tmp_path / "w")
    assert again.vivid_config.family == "wan"
    assert torch.equal(again.transformer.patch_embedding.weight, pipe.transformer.patch_embedding.weight)
