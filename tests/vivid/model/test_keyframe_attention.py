"""The joint keyframe attention with AAS on the tiny transformers of both bases: the budget is respected, own tokens
are always kept, the keys/values held stay own + budget (linear in keyframes), a budget covering every token is full
extended attention, one keyframe is the base's attention, and the base's processors come back afterwards."""

import pytest
import torch

from vivid.model.keyframe_attention import (
    JointAttentionOptions,
    joint_keyframe_attention,
    matched_tokens,
)
from vivid.model.keyframe_groups import BlockSizes, group_for_memory


def test_matched_tokens_keep_the_budget_never_own_tokens_best_matches_first():
    torch.manual_seed(0)
    features = torch.randn(4, 6, 8)
    features[2] = features[0] * 3.0  # keyframe 2 repeats keyframe 0: its tokens are keyframe 0's best matches
    picks = matched_tokens(features, budget=6)
    assert picks.shape == (4, 6)
    for k in range(4):
        assert not ((picks[k] >= 6 * k) & (picks[k] < 6 * (k + 1))).any()  # own tokens are attended apart
        assert torch.equal(picks[k], picks[k].sort().values)
    assert torch.equal(picks[0], torch.arange(12, 18))
    assert matched_tokens(features, budget=100).shape == (4, 18)  # clamped to all other tokens
    assert matched_tokens(features[:1], budget=5) is None


def _forward(spec, transformer, n_keyframes: int, seed: int = 0) -> torch.Tensor:
    """One transformer forward on n one-frame latents of 32 x 32 pixels."""
    g = torch.Generator().manual_seed(seed)
    shape = spec.latent_shape(n_keyframes, 1, 32, 32)
    noisy = torch.randn(shape, generator=g)
    conditions = torch.randn((*shape[:2], spec.condition_channels, *shape[3:]), generator=g)
    dim = spec.text_embedding_dim(transformer)
    prompts = torch.randn(n_keyframes, 8, dim, generator=g)
    timesteps = torch.full((n_keyframes,), 500, dtype=torch.long)
    with torch.no_grad():
        return spec.predict(transformer, noisy, conditions, prompts, timesteps).float()


@pytest.fixture
def base(family_pipe):
    return family_pipe.spec, family_pipe.transformer


def _tokens_per_frame(spec, transformer) -> int:
    _, ph, pw = spec.patch_size(transformer)
    return (32 // spec.vae_spatial // ph) * (32 // spec.vae_spatial // pw)


def test_budget_bounds_what_each_keyframe_attends(base):
    spec, transformer = base
    n = _tokens_per_frame(spec, transformer)
    budget = max(1, n // 2)
    options = JointAttentionOptions(n_keyframes=5, kv_budget=budget, keyframe_group=2)
    with joint_keyframe_attention(transformer, options) as record:
        _forward(spec, transformer, 5)
    (own,) = record.own_lengths
    assert own >= n  # own tokens (text + video on CogVideoX) always attended
    assert record.kv_lengths == {own + budget}  # not own + 4 n: the other keyframes slimmed to the budget
    assert record.peak_kv_tokens == 2 * (own + budget)  # one query group at a time: linear in keyframes


def test_without_budget_the_keys_grow_with_every_keyframe(base):
    spec, transformer = base
    n = _tokens_per_frame(spec, transformer)
    with joint_keyframe_attention(transformer, JointAttentionOptions(n_keyframes=3)) as record:
        _forward(spec, transformer, 3)
    (own,) = record.own_lengths
    assert record.kv_lengths == {own + 2 * n}


def test_budget_covering_every_token_is_full_extended_attention(base):
    spec, transformer = base
    n = _tokens_per_frame(spec, transformer)
    with joint_keyframe_attention(transformer, JointAttentionOptions(n_keyframes=3)):
        full = _forward(spec, transformer, 3)
    with joint_keyframe_attention(transformer, JointAttentionOptions(3, kv_budget=2 * n, keyframe_group=1)):
        slim = _forward(spec, transformer, 3)
    with joint_keyframe_attention(transformer, JointAttentionOptions(3, kv_budget=1, keyframe_group=1)):
        tight = _forward(spec, transformer, 3)
    torch.testing.assert_close(slim, full, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(tight, full, rtol=1e-5, atol=1e-6)  # the comparison can fail


def test_joint_attention_reads_the_other_keyframes(base):
    spec, transformer = base
    alone = _forward(spec, transformer, 2)
    with joint_keyframe_attention(transformer, JointAttentionOptions(n_keyframes=2)):
        joint = _forward(spec, transformer, 2)
    assert not torch.allclose(alone, joint)


def test_one_keyframe_is_the_base_attention_and_processors_come_back(base):
    spec, transformer = base
    before = dict(transformer.attn_processors)
    plain = _forward(spec, transformer, 1)
    with joint_keyframe_attention(transformer, JointAttentionOptions(n_keyframes=1, kv_budget=4)):
        joint = _forward(spec, transformer, 1)
    assert torch.equal(joint, plain)
    with pytest.raises(ValueError, match="multiple"):
        with joint_keyframe_attention(transformer, JointAttentionOptions(n_keyframes=3)):
            _forward(spec, transformer, 2)
    after = transformer.attn_processors
    assert all(after[name] is before[name] for name in before)



@pytest.mark.parametrize("budget", [None, 3])
def test_keyframe_groups_give_the_one_batch_result(base, budget):
    """Blocks run two keyframes at a time, each group attending to the keys/values of all five: the same output as
    all five at once (up to float rounding), with no self-attention call given more than two rows."""
    spec, transformer = base
    with joint_keyframe_attention(transformer, JointAttentionOptions(5, kv_budget=budget, keyframe_group=5)) as whole:
        one_batch = _forward(spec, transformer, 5)
    with joint_keyframe_attention(transformer, JointAttentionOptions(5, kv_budget=budget, keyframe_group=2)) as grouped:
        in_groups = _forward(spec, transformer, 5)
    torch.testing.assert_close(in_groups, one_batch, rtol=1e-5, atol=1e-6)
    assert whole.peak_rows == 5 and grouped.peak_rows == 2
    assert grouped.keyframe_group == 2 and grouped.kv_lengths == whole.kv_lengths
    assert all("forward" not in block.__dict__ for block in transformer.modules())  # the blocks' forwards are back


def test_keyframe_group_is_chosen_from_the_memory_budget(base):
    spec, transformer = base
    with joint_keyframe_attention(transformer, JointAttentionOptions(4, kv_budget=3, memory_bytes=1)) as tight:
        _forward(spec, transformer, 4)
    with joint_keyframe_attention(transformer, JointAttentionOptions(4, kv_budget=3, memory_bytes=2**40)) as roomy:
        _forward(spec, transformer, 4)
    assert (tight.keyframe_group, tight.peak_rows) == (1, 1)
    assert (roomy.keyframe_group, roomy.peak_rows) == (4, 4)


def test_group_for_memory_fits_the_group_beside_what_every_keyframe_keeps():
    sizes = BlockSizes(keyframes=16, rows=32, own=100, video=90, width=8, ffn=32, heads=2, others=90, element=2,
                       scores=False)
    one = sizes.group_bytes(1)
    assert one == 2 * 100 * (3 * 8 + 2 * 32) * 2 + 2 * 190 * 8 * 2  # two rows (guidance), one query keyframe
    assert sizes.group_bytes(16) == 16 * one and sizes.resident() == 32 * (4 * 100 + 90) * 8 * 2
    assert group_for_memory(sizes, sizes.resident() + 3 * one) == 3
    assert group_for_memory(sizes, sizes.resident() + 3 * one - 1) == 2
    assert group_for_memory(sizes, 0) == 1
    assert group_for_memory(sizes, 16 * one) == 16  # one batch fits: no groups, nothing kept beside them
