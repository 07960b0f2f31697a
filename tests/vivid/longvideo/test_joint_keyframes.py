"""Editing keyframes jointly through the pipeline of both tiny bases: one keyframe is the pipeline's one-frame edit
exactly; several are edited in one pass that respects the budget, and the pipeline's processors come back."""

import numpy as np
import pytest

from vivid.longvideo.joint_keyframes import JointKeyframeOptions, edit_keyframes_jointly
from vivid.model.keyframe_attention import JointAttentionRecord


def _keyframes(n: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (40, 48, 3), dtype=np.uint8) for _ in range(n)]
    masks = []
    for i in range(n):
        mask = np.zeros((40, 48), bool)
        mask[8 + i : 28 + i, 10:34] = True
        masks.append(mask)
    return frames, masks


def test_one_keyframe_is_the_pipelines_one_frame_edit(family_pipe):
    import torch

    frames, masks = _keyframes(1)
    options = JointKeyframeOptions(task="modify", kv_budget=3, num_inference_steps=2, seed=7, height=32, width=32)
    joint = edit_keyframes_jointly(family_pipe, frames, masks, ["a red ball"], options)
    plain = family_pipe(video=frames[0][None], mask=masks[0][None], prompt="a red ball", task="modify",
                        num_inference_steps=2, height=32, width=32, output_type="uint8",
                        generator=torch.Generator().manual_seed(7)).frames[0]
    assert len(joint) == 1 and joint[0].shape == (40, 48, 3)
    np.testing.assert_array_equal(joint[0], plain[0])


def test_keyframes_are_edited_in_one_slimmed_pass(family_pipe):
    frames, masks = _keyframes(3)
    before = dict(family_pipe.transformer.attn_processors)
    record = JointAttentionRecord()
    options = JointKeyframeOptions(task="modify", kv_budget=2, keyframe_group=2, num_inference_steps=2, height=32,
                                   width=32)
    edited = edit_keyframes_jointly(family_pipe, frames, masks, ["a red ball"] * 3, options, record)
    assert [e.shape for e in edited] == [(40, 48, 3)] * 3
    (own,) = record.own_lengths
    assert record.kv_lengths == {own + 2}
    assert not np.array_equal(edited[0], frames[0])
    after = family_pipe.transformer.attn_processors
    assert all(after[name] is before[name] for name in before)


def test_keyframes_in_groups_are_the_one_batch_edit_with_guidance(family_pipe):
    """Through the sampler with guidance (CogVideoX: both guidance halves in one batch, each its own set of
    keyframes): blocks in groups of 2 give the one-batch edit, up to float rounding."""
    frames, masks = _keyframes(3)
    edits, records = [], []
    for group in (3, 2):
        records.append(JointAttentionRecord())
        options = JointKeyframeOptions(task="modify", kv_budget=4, keyframe_group=group, guidance_scale=5.0,
                                       num_inference_steps=2, height=32, width=32)
        edits.append(edit_keyframes_jointly(family_pipe, frames, masks, ["a red ball"] * 3, options, records[-1]))
    assert records[0].peak_rows in (3, 6) and records[1].peak_rows == 2
    for one_batch, in_groups in zip(*edits):
        assert np.abs(one_batch.astype(int) - in_groups).max() <= 1


def test_a_given_keyframe_is_attended_by_the_others_and_stays_as_given(family_pipe):
    """The user's keyframe is a member of the joint pass: the other keyframes' edits change with it, and it comes
    back exactly as given."""
    frames, masks = _keyframes(2)
    rng = np.random.default_rng(1)
    given_a, given_b = (rng.integers(0, 256, (40, 48, 3), dtype=np.uint8) for _ in range(2))
    options = JointKeyframeOptions(task="modify", num_inference_steps=2, height=32, width=32)
    record = JointAttentionRecord()
    with_a = edit_keyframes_jointly(family_pipe, frames, masks, ["a red ball"] * 2, options, record, given=[given_a])
    with_b = edit_keyframes_jointly(family_pipe, frames, masks, ["a red ball"] * 2, options, given=[given_b])
    assert len(with_a) == 3 and record.peak_rows >= 3  # the given keyframe ran in the pass
    np.testing.assert_array_equal(with_a[2], given_a)
    np.testing.assert_array_equal(with_b[2], given_b)
    assert not np.array_equal(with_a[0], with_b[0]) and not np.array_equal(with_a[1], with_b[1])
    with pytest.raises(ValueError, match="given keyframe must be uint8"):
        edit_keyframes_jointly(family_pipe, frames, masks, ["a"] * 2, options, given=[given_a[:20]])


def test_a_given_keyframe_enters_every_step_as_its_own_latent_noised(family_pipe, monkeypatch):
    """RePaint-style: the given keyframe's row that each denoising forward reads is a * its clean latent + b * one
    fixed noise, the share of the clean latent growing as the steps go."""
    import torch

    from vivid.longvideo.joint_keyframes import _given_video

    frames, masks = _keyframes(1)
    given = np.random.default_rng(2).integers(0, 256, (40, 48, 3), dtype=np.uint8)
    spec = family_pipe.spec
    seen = []
    model_output = type(spec).model_output

    def recording(self, loop, step, latents, *args):
        seen.append(self.from_loop_layout(latents)[1].float().flatten())
        return model_output(self, loop, step, latents, *args)

    monkeypatch.setattr(type(spec), "model_output", recording)
    options = JointKeyframeOptions(task="modify", num_inference_steps=3, guidance_scale=1.0, height=32, width=32)
    edit_keyframes_jointly(family_pipe, frames, masks, ["a red ball"], options, given=[given])
    with torch.no_grad():
        clean = spec.encode_video(family_pipe.vae, _given_video([given], (32, 32), torch.device("cpu")))
    basis = torch.stack([clean.float().flatten(), seen[0]], dim=1)  # step 0: (almost) pure noise
    shares = []
    for row in seen:
        coef = torch.linalg.lstsq(basis, row[:, None]).solution.flatten()
        assert (row - basis @ coef).norm() <= 1e-4 * row.norm()  # exactly clean and that noise
        shares.append(float(coef[0]))
    assert len(seen) == 3 and shares[0] < shares[1] < shares[2] and shares[2] > 0.3


def test_the_joint_pass_keeps_no_autograd_graph_of_its_keyframes(family_pipe, monkeypatch):
    """Weights loaded by from_pretrained require gradients: encoded outside no_grad, every keyframe's conditions
    would hold its VAE encoder's graph (activations) until the pass ends, memory growing ~3 MB per keyframe at
    32x64 (what made a 1,000-frame parallel edit's peak 1.4x a 250-frame one's)."""
    spec = family_pipe.spec
    assert any(p.requires_grad for p in family_pipe.vae.parameters())
    seen = []
    sample = type(spec).sample

    def recording(self, transformer, scheduler, conditions, prompt_embeds, *args):
        seen.append((conditions.requires_grad, prompt_embeds.requires_grad))
        return sample(self, transformer, scheduler, conditions, prompt_embeds, *args)

    monkeypatch.setattr(type(spec), "sample", recording)
    frames, masks = _keyframes(2)
    options = JointKeyframeOptions(task="modify", num_inference_steps=1, guidance_scale=1.0, height=32, width=32)
    edit_keyframes_jointly(family_pipe, frames, masks, ["a red ball"] * 2, options)
    assert seen == [(False, False)]


def test_mismatched_inputs_are_rejected_before_model_work(family_pipe):
    frames, masks = _keyframes(2)
    with pytest.raises(ValueError, match="as many masks and prompts"):
        edit_keyframes_jointly(family_pipe, frames, masks, ["a"], JointKeyframeOptions())
    with pytest.raises(ValueError, match="one size"):
        edit_keyframes_jointly(family_pipe, [frames[0], frames[1][:20]], masks, ["a", "b"], JointKeyframeOptions())
