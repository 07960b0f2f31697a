"""The joint keyframe pass on the tiny Wan2.1-VACE: its blocks in keyframe groups give the one-batch edit, and a
given keyframe takes part and comes back as given."""

import numpy as np

from vivid.longvideo.joint_keyframes import JointKeyframeOptions, edit_keyframes_jointly
from vivid.model.keyframe_attention import JointAttentionRecord

from tests.vivid.longvideo.test_joint_keyframes import _keyframes


def test_vace_keyframes_in_groups_and_a_given_keyframe(tiny_vace_pipe):
    frames, masks = _keyframes(3)
    given = np.random.default_rng(3).integers(0, 256, (40, 48, 3), dtype=np.uint8)
    edits, records = [], []
    for group in (4, 2):
        records.append(JointAttentionRecord())
        options = JointKeyframeOptions(task="modify", keyframe_group=group, num_inference_steps=2, height=32,
                                       width=32)
        edits.append(edit_keyframes_jointly(tiny_vace_pipe, frames, masks, ["a red ball"] * 3, options, records[-1],
                                            given=[given]))
    assert [r.keyframe_group for r in records] == [4, 2] and records[1].peak_rows == 2
    for one_batch, in_groups in zip(edits[0], edits[1]):
        assert np.abs(one_batch.astype(int) - in_groups).max() <= 1  # the same edit, up to float rounding
    np.testing.assert_array_equal(edits[1][3], given)


def test_vace_given_keyframe_beside_reference_images(tiny_vace_pipe):
    """With reference images (their latent frames first in every row) the given keyframe's frame is the one held."""
    frames, masks = _keyframes(2)
    rng = np.random.default_rng(4)
    given, reference = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8), rng.integers(0, 256, (40, 40, 3), np.uint8)
    options = JointKeyframeOptions(task="modify", keyframe_group=2, num_inference_steps=2, height=32, width=32,
                                   reference_images=(reference,))
    edited = edit_keyframes_jointly(tiny_vace_pipe, frames, masks, ["a red ball"] * 2, options, given=[given])
    assert [e.shape for e in edited] == [(40, 48, 3)] * 3
    np.testing.assert_array_equal(edited[2], given)
