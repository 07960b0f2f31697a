"""The model specification: the registry picks the spec by transformer class; the CogVideoX spec computes bit for
bit what the existing CogVideoX code computes (VAE, conditions, text, training loss of train/step.py, the sampler
of VIVIDPipeline)."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from diffusers import CogVideoXPipeline, CogVideoXTransformer3DModel, WanTransformer3DModel
from diffusers.utils.torch_utils import randn_tensor

from train.step import TrainStep
from vivid.io.edit_inputs import load_edit_inputs
from vivid.conditioning.mask_tensors import pack_mask
from vivid.model.cogvideox_spec import CogVideoXSpec
from vivid.model.cogvideox_spec import rotary_embeddings
from vivid.model.configs import COGVIDEOX_5B_TRANSFORMER, TINY_TRANSFORMER, TINY_WAN_TRANSFORMER
from vivid.model.registry import spec_by_name, spec_for
from vivid.model.spec import ModelSpecification, SamplingSettings
from vivid.model.wan_spec import WanSpec
from vivid.model.weights import VIVIDWeightsConfig, save_vivid_weights

SPEC = CogVideoXSpec()


def test_registry_picks_the_spec_by_transformer_class(tiny_model_dir, tiny_wan_model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert type(spec_for(tiny_model_dir)) is CogVideoXSpec
    assert type(spec_for(str(tiny_wan_model_dir))) is WanSpec
    assert type(spec_for(tiny_wan_model_dir / "transformer")) is WanSpec  # a transformer folder
    assert type(spec_for(json.loads((tiny_model_dir / "model_index.json").read_text()))) is CogVideoXSpec
    assert type(spec_for({"_class_name": "WanTransformer3DModel"})) is WanSpec
    torch.manual_seed(0)
    assert type(spec_for(CogVideoXTransformer3DModel(**TINY_TRANSFORMER))) is CogVideoXSpec
    assert type(spec_for(WanTransformer3DModel(**TINY_WAN_TRANSFORMER))) is WanSpec
    spec = WanSpec(flow_shift=5.0)
    assert spec_for(spec) is spec and spec_by_name("wan", flow_shift=5.0).flow_shift == 5.0
    assert isinstance(spec_by_name("cogvideox"), ModelSpecification)
    # a VIVID weights folder names its family
    torch.manual_seed(0)
    weights = save_vivid_weights(SPEC.make_vivid(CogVideoXTransformer3DModel(**TINY_TRANSFORMER)), tmp_path / "w",
                                 VIVIDWeightsConfig())
    assert type(spec_for(weights)) is CogVideoXSpec
    with pytest.raises(ValueError, match="no VIVID specification for transformer class 'FluxTransformer2DModel'"):
        spec_for({"transformer": ["diffusers", "FluxTransformer2DModel"]})
    with pytest.raises(ValueError, match="unknown model family"):
        spec_by_name("sora")
    with pytest.raises(FileNotFoundError, match="no model_index.json"):
        spec_for(tmp_path)
    with pytest.raises(FileNotFoundError, match="hub"):
        spec_for("nobody/not-a-cached-model")
    with pytest.raises(FileNotFoundError, match="not a hub repo id"):
        spec_for(str(tmp_path / "missing"))
    (tmp_path / "f.txt").write_text("x")
    with pytest.raises(NotADirectoryError):
        spec_for(tmp_path / "f.txt")


def test_spec_sizes_and_counts(tiny_pipe):
    t = tiny_pipe.transformer
    assert SPEC.in_channels == 36 and SPEC.condition_channels == 20 and SPEC.mask_channels == 4
    assert SPEC.patch_size(t) == (1, 2, 2) and SPEC.size_multiple(t) == 16
    assert SPEC.native_size(t) == (64, 96) and 64 * 96 == tiny_pipe.native_area
    with torch.device("meta"):
        big = CogVideoXTransformer3DModel(**COGVIDEOX_5B_TRANSFORMER)
    assert SPEC.native_size(big) == (480, 720) and (SPEC.native_frames, SPEC.native_fps) == (49, 8)
    assert SPEC.lora_parameter_count(big) == 42 * 4 * 32 * (3072 + 3072)  # test_model's formula
    assert SPEC.latent_shape(2, 49, 480, 720) == (2, 13, 16, 60, 90) and SPEC.padded_frame_count(14) == 17
    assert SPEC.max_text_length(tiny_pipe.tokenizer, t) == 16 and SPEC.text_embedding_dim(t) == 64
    assert SPEC.vae_compression(tiny_pipe.vae) == (4, 8)
    assert SPEC.stock_pipeline_class is CogVideoXPipeline
    # the mask packing rule, for another compression (the spec passes its VAE's)
    mask = torch.zeros(1, 5, 1, 8, 8)
    mask[0, 3, 0, 5, 1] = 1
    packed = pack_mask(mask, temporal=2, spatial=4)
    assert packed.shape == (1, 3, 2, 2, 2) and packed.sum() == 1 and packed[0, 2, 0, 1, 0] == 1


def test_load_components(tiny_model_dir):
    components = SPEC.load_components(tiny_model_dir, dtype=torch.bfloat16)
    assert set(components) == {"tokenizer", "text_encoder", "vae", "transformer", "scheduler"}
    assert all(components[k].dtype == torch.bfloat16 for k in ("text_encoder", "vae", "transformer"))


def _clip(seed=0, frames=5):
    g = torch.Generator().manual_seed(seed)
    video = torch.rand(1, frames, 3, 32, 48, generator=g) * 2 - 1
    mask = torch.zeros(1, frames, 1, 32, 48)
    mask[:, :, :, 8:24, 16:40] = 1
    return video, mask


def test_vae_and_conditions_are_cogvideoxs(tiny_pipe):
    """The VAE as CogVideoX uses it: (B, C, F, H, W), latents times the scaling factor; conditions = the masked
    video's latents | the packed mask."""
    vae = tiny_pipe.vae
    sf = vae.config.scaling_factor
    video, mask = _clip()
    with torch.no_grad():
        dist = vae.encode(video.permute(0, 2, 1, 3, 4)).latent_dist
        latents = (dist.mode() * sf).permute(0, 2, 1, 3, 4)
        assert torch.equal(SPEC.encode_video(vae, video), latents)
        a = SPEC.encode_video(vae, video, torch.Generator().manual_seed(1), sample=True)
        b = (dist.sample(torch.Generator().manual_seed(1)) * sf).permute(0, 2, 1, 3, 4)
        assert torch.equal(a, b)
        decoded = vae.decode((latents / sf).permute(0, 2, 1, 3, 4)).sample.permute(0, 2, 1, 3, 4)
        assert torch.equal(SPEC.decode_latents(vae, latents), decoded)
        assert torch.equal(SPEC.encode_conditions(vae, video, mask), torch.cat([latents, pack_mask(mask, 4, 8)], dim=2))
        mean, _ = SPEC.posterior(vae, ((video + 1) * 127.5).round().to(torch.uint8))
    assert mean.shape == latents.shape


def _uint8_batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    video = torch.randint(0, 256, (2, 5, 3, 32, 48), generator=g, dtype=torch.uint8)
    mask = torch.zeros(2, 5, 1, 32, 48)
    mask[0, :, :, 8:24, 8:32] = 1
    mask[1, 1:, :, 16:32, 24:48] = 1  # KIVE: frame 0 unmasked
    masked = torch.where(mask.bool(), torch.zeros_like(video), video)
    return {"video": video, "masked_video": masked, "mask": mask}


def _reference_encode_batch(vae, batch, generator):
    """The CogVideoX trainer's batch encoding written out: the target latents a posterior sample (diffusers'
    DiagonalGaussianDistribution.sample), the masked video's posterior mode, both times the scaling factor."""
    def posterior(x):
        dist = vae.encode((x.float() / 127.5 - 1.0).permute(0, 2, 1, 3, 4)).latent_dist
        return dist.mean.permute(0, 2, 1, 3, 4), dist.std.permute(0, 2, 1, 3, 4)

    with torch.no_grad():
        mean, std = posterior(batch["video"])
        noise = randn_tensor(mean.permute(0, 2, 1, 3, 4).shape, generator=generator, dtype=mean.dtype)
        latents = (mean + std * noise.permute(0, 2, 1, 3, 4)) * vae.config.scaling_factor
        masked_mean, _ = posterior(batch["masked_video"])
    packed = pack_mask(batch["mask"].float(), 4, 8)
    return latents, torch.cat([masked_mean * vae.config.scaling_factor, packed], dim=2)


def _reference_loss(transformer, scheduler, latents, conditions, embeds, generator, mask_loss_weight):
    """diffusers' CogVideoX LoRA example's objective written out, on VIVID's input (noise | conditions): a uniform
    timestep, scheduler noise, v-prediction -> x0 by `get_velocity`, squared error weighted 1 / (1 - alphas_cumprod),
    the edit region's latent cells weighted 1 + mask_loss_weight."""
    b, t, _, h, w = latents.shape
    timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (b,), generator=generator).long()
    noise = torch.randn(latents.shape, dtype=latents.dtype, generator=generator)
    noisy = scheduler.add_noise(latents, noise, timesteps)
    rotary = rotary_embeddings(transformer, h * 8, w * 8, t, torch.device("cpu"))
    output = transformer(hidden_states=torch.cat([noisy, conditions], dim=2), encoder_hidden_states=embeds,
                         timestep=timesteps, image_rotary_emb=rotary, return_dict=False)[0]
    pred = scheduler.get_velocity(output.float(), noisy.float(), timesteps)
    weights = (1.0 / (1.0 - scheduler.alphas_cumprod[timesteps].float())).view(b, 1, 1, 1, 1)
    error = weights * (pred - latents.float()) ** 2
    if mask_loss_weight == 0:
        return error.reshape(b, -1).mean(dim=1).mean()
    region = conditions[:, :, 16:].amax(dim=2, keepdim=True).float()
    cells = (1.0 + mask_loss_weight * region).expand_as(error)
    return ((cells * error).reshape(b, -1).sum(dim=1) / cells.reshape(b, -1).sum(dim=1)).mean()


def test_encode_batch_and_loss_equal_the_cogvideox_objective(tiny_pipe):
    vae, scheduler = tiny_pipe.vae, tiny_pipe.scheduler
    batch = _uint8_batch()
    latents, conditions = SPEC.encode_batch(vae, batch, torch.Generator().manual_seed(5))
    ref_latents, ref_conditions = _reference_encode_batch(vae, batch, torch.Generator().manual_seed(5))
    assert torch.equal(latents, ref_latents) and torch.equal(conditions, ref_conditions)
    embeds = torch.randn(2, 16, 64, generator=torch.Generator().manual_seed(6))
    transformer = SPEC.make_vivid(copy.deepcopy(tiny_pipe.transformer))
    with torch.no_grad():
        SPEC.patch_embedding(transformer).weight[:, 16:].normal_(generator=torch.Generator().manual_seed(7))
    for weight in (0.0, 0.7):
        ours = SPEC.compute_loss(transformer, scheduler, latents, conditions, embeds,
                                 torch.Generator().manual_seed(8), mask_loss_weight=weight)
        ours.backward()
        ours_grad = SPEC.patch_embedding(transformer).weight.grad.clone()
        transformer.zero_grad()
        ref = _reference_loss(transformer, scheduler, latents, conditions, embeds,
                              torch.Generator().manual_seed(8), mask_loss_weight=weight)
        ref.backward()
        assert torch.equal(ours, ref), weight
        assert torch.equal(ours_grad, SPEC.patch_embedding(transformer).weight.grad)
        transformer.zero_grad()


def test_prompts_equal_train_step_and_the_pipelines(tiny_pipe):
    prompts = ["a red circle", "a blue square moving to the left across the whole frame and back again"]
    ours = SPEC.encode_prompts(tiny_pipe.tokenizer, tiny_pipe.text_encoder, prompts, 16)
    trainer = TrainStep(SPEC, tiny_pipe.vae, tiny_pipe.scheduler, torch.device("cpu"), tiny_pipe.tokenizer,
                        tiny_pipe.text_encoder, 16)
    assert torch.equal(ours, trainer.encode_prompts(prompts))
    with torch.no_grad():
        pipe_embeds, _ = tiny_pipe.encode_prompt(prompts, do_classifier_free_guidance=False, max_sequence_length=16)
    assert torch.equal(ours, pipe_embeds)


def test_sampler_is_vivid_pipelines(tiny_pipe):
    g = np.random.default_rng(0)
    frames = g.integers(0, 256, (5, 32, 48, 3), dtype=np.uint8)
    mask = np.zeros((5, 32, 48), bool)
    mask[:, 8:24, 16:40] = True
    embeds = torch.randn(2, 16, 64, generator=torch.Generator().manual_seed(1))
    latents = torch.randn(1, 2, 16, 4, 6, generator=torch.Generator().manual_seed(2))
    kwargs = dict(num_inference_steps=3, guidance_scale=6.0)
    expected = tiny_pipe(frames, mask, "a red circle", height=32, width=48, prompt_embeds=embeds[:1],
                         negative_prompt_embeds=embeds[1:], latents=latents, output_type="latent", **kwargs).frames
    masked, mask_t = tiny_pipe._to_model_tensors(load_edit_inputs(frames, mask, "a red circle", "add"), (32, 48),
                                                 torch.device("cpu"))
    with torch.no_grad():
        conditions = SPEC.encode_conditions(tiny_pipe.vae, masked, mask_t)
    got = SPEC.sample(tiny_pipe.transformer, tiny_pipe.scheduler, conditions, embeds[:1], embeds[1:],
                      SamplingSettings(latents=latents, **kwargs))
    assert torch.equal(got, expected)
    dynamic = SPEC.sample(tiny_pipe.transformer, tiny_pipe.scheduler, conditions, embeds[:1], embeds[1:],
                          SamplingSettings(latents=latents, use_dynamic_cfg=True, **kwargs))
    expected_dynamic = tiny_pipe(frames, mask, "a red circle", height=32, width=48, prompt_embeds=embeds[:1],
                                 negative_prompt_embeds=embeds[1:], latents=latents, output_type="latent",
                                 use_dynamic_cfg=True, **kwargs).frames
    assert torch.equal(dynamic, expected_dynamic) and not torch.equal(dynamic, got)


def test_an_edits_defaults_come_from_the_spec_without_weights():
    """What the CLI needs when the user gives no steps, guidance, clip length, fps or size: the base's, from its
    transformer config alone (no model loaded)."""
    from vivid.model.configs import WAN21_1_3B_TRANSFORMER

    wan = WanSpec()
    assert (SPEC.default_num_inference_steps, SPEC.default_guidance_scale, SPEC.native_fps) == (50, 6.0, 8)
    assert (wan.default_num_inference_steps, wan.default_guidance_scale, wan.native_fps) == (50, 5.0, 16)
    assert SPEC.native_size(COGVIDEOX_5B_TRANSFORMER) == (480, 720) and SPEC.clip_frames(COGVIDEOX_5B_TRANSFORMER) == 49
    assert wan.native_size(WAN21_1_3B_TRANSFORMER) == (480, 832) and wan.clip_frames(WAN21_1_3B_TRANSFORMER) == 81
