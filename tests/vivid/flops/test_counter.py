"""A whole edit's FLOPs (vivid/flops/counter.py) against FlopCounterMode over one VIVIDPipeline call on either
tiny base, the 5B's edit and the published KIVE numbers, size checks, and a new base counted through its formulas."""

from __future__ import annotations

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from vivid.flops.counter import PUBLISHED_PFLOPS, edit_flops, kive_comparison
from vivid.model.wan_spec import WanSpec

H, W = 64, 96


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


def test_a_new_base_is_counted_through_its_spec_and_formulas_alone(monkeypatch):
    """vivid/flops/counter.py sums an edit from a base's formulas only: a base the registry knows (here a stand-in
    registered under a new name, with Wan's formulas) is counted without a line of the counter naming it."""
    from vivid.flops import counter
    from vivid.flops.wan import WanFlops
    from vivid.model import registry

    class ThirdSpec(WanSpec):
        name = "third"
        display_name = "Third"

    monkeypatch.setitem(registry.SPECS, "third", ThirdSpec)
    with pytest.raises(ValueError, match="no FLOPs formulas for base 'third'"):
        edit_flops("1.3b", 81, 480, 832, 50, family="third")
    monkeypatch.setitem(counter.FORMULAS, "third", WanFlops)
    third = edit_flops("1.3b", 81, 480, 832, 50, family="third")
    wan = edit_flops("1.3b", 81, 480, 832, 50, family="wan")
    assert third.model == "Third-1.3B" and third.components == wan.components
    spec, arch = WanSpec(), WanSpec.architectures["1.3b"]
    formulas = counter.formulas_for(spec)
    fwd = formulas.transformer_forward(arch["transformer"], 81, 480, 832, formulas.text_tokens(arch), batch=2)
    assert wan.components["transformer_linear"] == 50 * fwd["linear"]
    assert wan.video_tokens == formulas.video_tokens(arch["transformer"], 81, 480, 832) == 21 * 30 * 52


@pytest.mark.parametrize("family,size", [("cogvideox", "5b"), ("wan", "1.3b")])
def test_a_long_edit_is_its_clips_and_parallel_adds_the_joint_pass(family, size):
    from vivid.flops.counter import edit_flops, long_edit_flops

    chain = long_edit_flops(size, 1000, 480, 720, 50, True, family=family, long_mode="chain")
    clip = chain["clip_frames"]
    assert chain["clips"] == -(-999 // (clip - 1)) and chain["joint_pass_flops"] == 0
    assert chain["total"] == pytest.approx(chain["clips"] * edit_flops(size, clip, 480, 720, 50, True,
                                                                       family=family).total)
    full = long_edit_flops(size, 1000, 480, 720, 50, True, family=family, long_mode="parallel")
    slim = long_edit_flops(size, 1000, 480, 720, 50, True, family=family, long_mode="parallel", kv_budget=1000)
    one = edit_flops(size, 1, 480, 720, 50, True, family=family).total
    k = full["joint_keyframes"]
    assert k == chain["clips"] + 1 and full["clips_flops"] == chain["clips_flops"]
    assert k * one < slim["joint_pass_flops"] < full["joint_pass_flops"]  # AAS slims the cross-keyframe attention
    short = long_edit_flops(size, clip, 480, 720, 50, True, family=family, long_mode="parallel")
    assert short["clips"] == 1 and short["joint_pass_flops"] == 0  # one clip: no joint pass (as the runner plans)
