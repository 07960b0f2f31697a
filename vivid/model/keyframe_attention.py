"""Joint keyframe attention with Adaptive Attention Slimming (AAS, after AdaFlow), for both bases.

K one-frame edits run as one batch (with guidance: the negatives' K then the positives' K). In every self-attention
layer each query keyframe attends to its own tokens (text + video on CogVideoX, video on Wan) plus the video tokens of
the other keyframes. With a `kv_budget` it keeps only `kv_budget` of those other tokens: the ones whose best cosine
match among the query keyframe's own video tokens is highest (AdaFlow's per-token best-match map, computed on the
layer's input features). The keys/values held per query keyframe are then own + budget, so the pass grows linearly in
K; without a budget (full extended attention) they are own + (K - 1) x tokens, quadratic in K. The blocks run in
groups of `keyframe_group` keyframes (vivid.model.keyframe_groups), each group's queries attending to the keys and
values of all keyframes, so that the activations held at once are those of one group.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import CogVideoXAttnProcessor2_0
from diffusers.models.embeddings import apply_rotary_emb
from diffusers.models.transformers.transformer_wan import WanAttnProcessor, _get_qkv_projections

from vivid.model.keyframe_groups import (
    BlockSizes,
    GroupPass,
    KeysCollected,
    blocks_in_groups,
    free_memory,
    group_for_memory,
    run_in_groups,
)

# the share of the free memory a group is sized to when no `memory_bytes` is given (the rest: allocator slack)
FREE_MEMORY_SHARE = 0.8


@dataclass
class JointAttentionOptions:
    """`kv_budget`: other keyframes' tokens kept per query keyframe (None: all, i.e. full extended attention).
    `keyframe_group`: keyframes per group, both the rows a block runs at once and the query keyframes of one
    attention call (None: the most whose activations fit in `memory_bytes`, default a share of the device's free
    memory at the first block)."""

    n_keyframes: int
    kv_budget: int | None = None
    keyframe_group: int | None = None
    memory_bytes: int | None = None

    def __post_init__(self) -> None:
        if self.n_keyframes < 1:
            raise ValueError(f"n_keyframes must be >= 1, got {self.n_keyframes}")
        if self.kv_budget is not None and self.kv_budget < 1:
            raise ValueError(f"kv_budget must be >= 1 or None, got {self.kv_budget}")
        if self.keyframe_group is not None and self.keyframe_group < 1:
            raise ValueError(f"keyframe_group must be >= 1 or None, got {self.keyframe_group}")


@dataclass
class JointAttentionRecord:
    """What the joint processors saw: the key/value lengths per query keyframe, the most key/value tokens held at
    once in one attention call, the most batch rows one self-attention call was given (all layers, all steps), and
    the keyframe group the pass ran with."""

    kv_lengths: set[int] = field(default_factory=set)
    own_lengths: set[int] = field(default_factory=set)
    peak_kv_tokens: int = 0
    peak_rows: int = 0
    keyframe_group: int = 0


def matched_tokens(features: torch.Tensor, budget: int | None, queries: range | None = None) -> torch.Tensor | None:
    """For video features (K, N, D) of K keyframes: per query keyframe (those in `queries`, default all) the
    indices (Q, M) into the K * N flattened tokens of the other keyframes' tokens it keeps, in ascending order;
    M = min(budget, (K - 1) N), all of them when `budget` is None. A token's score is its best cosine match among
    the query keyframe's own tokens; its own tokens are never among them (they are always attended separately).
    None when K == 1."""
    k_frames, n, _ = features.shape
    if k_frames == 1:
        return None
    queries = range(k_frames) if queries is None else queries
    others = (k_frames - 1) * n
    flat = torch.arange(k_frames * n, device=features.device).view(k_frames, n)
    if budget is None:
        return torch.stack([torch.cat([flat[j] for j in range(k_frames) if j != k]) for k in queries])
    unit = F.normalize(features.float(), dim=-1)
    picks = []
    for k in queries:
        scores = torch.full((k_frames, n), float("-inf"), device=features.device)
        for j in range(k_frames):
            if j != k:  # one (N, N) similarity at a time: memory does not grow with K
                scores[j] = (unit[j] @ unit[k].T).amax(dim=1)
        picks.append(scores.flatten().topk(min(budget, others)).indices.sort().values)
    return torch.stack(picks)


class _JointAttention:
    """The attention shared by both bases' processors. `state` is the block's group pass: in the whole phase the
    processor is given every batch row (B = guidance sets x K), else the rows `state.rows` of one group, whose
    queries attend to the keys/values of every row collected before."""

    def __init__(self, options: JointAttentionOptions, record: JointAttentionRecord):
        self.options = options
        self.record = record
        self.state = GroupPass()

    @property
    def group(self) -> int:
        return self.record.keyframe_group or self.options.keyframe_group or self.options.n_keyframes

    def __call__(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, video: slice,
                 features: torch.Tensor) -> torch.Tensor:
        """q (R, H, S, d) of rows `state.rows` (whole phase: all B rows); k, v (B, H, S, d) and the video features
        (B, N, D) of every row."""
        n_key = self.options.n_keyframes
        if k.shape[0] % n_key:
            raise ValueError(f"batch {k.shape[0]} is not a multiple of the {n_key} keyframes")
        rows = range(k.shape[0])[self.state.rows]
        self.record.peak_rows = max(self.record.peak_rows, len(rows))
        if n_key == 1:  # nothing to share: the base's own attention
            self._note(k.shape[2], k.shape[2], q.shape[0])
            return F.scaled_dot_product_attention(q, k[self.state.rows], v[self.state.rows], dropout_p=0.0,
                                                  is_causal=False)
        out = torch.empty_like(q)
        start = rows.start
        while start < rows.stop:  # query chunks of at most one group, each within one set of K rows
            stop = min(rows.stop, (start // n_key + 1) * n_key, start + self.group)
            out[start - rows.start : stop - rows.start] = self._attend(
                q[start - rows.start : stop - rows.start], range(start, stop), k, v, video, features)
            start = stop
        return out

    def _attend(self, q: torch.Tensor, rows: range, k: torch.Tensor, v: torch.Tensor, video: slice,
                features: torch.Tensor) -> torch.Tensor:
        """The queries of `rows` (one set) attending to their own tokens and the other keyframes' matched ones."""
        set_start = rows.start // self.options.n_keyframes * self.options.n_keyframes
        keyframes = slice(set_start, set_start + self.options.n_keyframes)
        picks = matched_tokens(features[keyframes], self.options.kv_budget,
                               range(rows.start - set_start, rows.stop - set_start))  # (c, M)
        n = features.shape[1]
        frame, token = picks // n, picks % n
        own = slice(rows.start, rows.stop)
        # (c, M, H, d) -> (c, H, M, d): the picked tokens of the set's video keys, in flattened order
        keys = torch.cat([k[own], k[keyframes][:, :, video][frame, :, token].transpose(1, 2)], dim=2)
        values = torch.cat([v[own], v[keyframes][:, :, video][frame, :, token].transpose(1, 2)], dim=2)
        self._note(keys.shape[2], k.shape[2], keys.shape[0])
        return F.scaled_dot_product_attention(q, keys, values, dropout_p=0.0, is_causal=False)

    def _note(self, kv_length: int, own_length: int, queries: int) -> None:
        self.record.kv_lengths.add(kv_length)
        self.record.own_lengths.add(own_length)
        self.record.peak_kv_tokens = max(self.record.peak_kv_tokens, kv_length * queries)


class CogVideoXJointKeyframeProcessor:
    """`CogVideoXAttnProcessor2_0`'s projections, norms and rotary embedding, then the joint keyframe attention."""

    text_in_self_attention = True  # the own tokens a keyframe attends: its text and video tokens

    def __init__(self, options: JointAttentionOptions, record: JointAttentionRecord):
        self.attend = _JointAttention(options, record)

    def __call__(self, attn, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor,
                 attention_mask: torch.Tensor | None = None,
                 image_rotary_emb=None) -> tuple[torch.Tensor, torch.Tensor]:
        if attention_mask is not None:
            raise ValueError("the joint keyframe attention takes no attention mask")
        text = encoder_hidden_states.size(1)
        tokens = torch.cat([encoder_hidden_states, hidden_states], dim=1)
        batch = tokens.shape[0]

        def heads(x: torch.Tensor) -> torch.Tensor:
            return x.view(batch, -1, attn.heads, x.shape[-1] // attn.heads).transpose(1, 2)

        def rotate(x: torch.Tensor) -> torch.Tensor:
            if image_rotary_emb is not None:
                x[:, :, text:] = apply_rotary_emb(x[:, :, text:], image_rotary_emb)
            return x

        state = self.attend.state
        if state.phase == "attend":  # this group's keys and values were collected with every other group's
            k, v, features = state.keys, state.values, state.features
        else:
            k, v = heads(attn.to_k(tokens)), heads(attn.to_v(tokens))
            k, features = rotate(attn.norm_k(k) if attn.norm_k is not None else k), hidden_states
            if state.phase == "collect":
                state.store(k, v, features)
                raise KeysCollected
        q = heads(attn.to_q(tokens))
        q = rotate(attn.norm_q(q) if attn.norm_q is not None else q)
        out = self.attend(q, k, v, slice(text, None), features)
        out = out.transpose(1, 2).reshape(batch, -1, q.shape[1] * q.shape[3])
        out = attn.to_out[1](attn.to_out[0](out))
        encoder_out, video_out = out.split([text, out.size(1) - text], dim=1)
        return video_out, encoder_out


class WanJointKeyframeProcessor:
    """`WanAttnProcessor`'s self-attention (projections, norms, rotary embedding), then the joint keyframe
    attention. Only for the self-attention layers (attn1): cross-attention keeps the base's processor."""

    text_in_self_attention = False  # Wan reads its text in cross-attention

    def __init__(self, options: JointAttentionOptions, record: JointAttentionRecord):
        self.attend = _JointAttention(options, record)

    def __call__(self, attn, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None = None,
                 attention_mask: torch.Tensor | None = None, rotary_emb=None) -> torch.Tensor:
        if encoder_hidden_states is not None or attention_mask is not None:
            raise ValueError("the joint keyframe attention is for Wan's self-attention, without a mask")

        def heads(x: torch.Tensor) -> torch.Tensor:  # (B, S, H * d) -> (B, H, S, d)
            return x.unflatten(2, (attn.heads, -1)).transpose(1, 2)

        def rotate(x: torch.Tensor) -> torch.Tensor:
            if rotary_emb is None:
                return x
            cos, sin = (f[0, :, 0] for f in rotary_emb)  # (S, d), pairs repeated as Wan's rotation reads them
            return apply_rotary_emb(x, (cos, sin))

        state = self.attend.state
        if attn.fused_projections:
            q, k, v = _get_qkv_projections(attn, hidden_states, None)
        else:  # the keys/values and the queries are needed in different phases of a grouped block
            q, k, v = (None if state.phase == "collect" else attn.to_q(hidden_states),
                       None if state.phase == "attend" else attn.to_k(hidden_states),
                       None if state.phase == "attend" else attn.to_v(hidden_states))
        if state.phase == "attend":
            k, v, features = state.keys, state.values, state.features
        else:
            k, v, features = rotate(heads(attn.norm_k(k))), heads(v), hidden_states
            if state.phase == "collect":
                state.store(k, v, features)
                raise KeysCollected
        q = rotate(heads(attn.norm_q(q)))
        out = self.attend(q, k, v, slice(None), features)
        out = out.transpose(1, 2).flatten(2, 3).type_as(q)
        return attn.to_out[1](attn.to_out[0](out))


def joint_processors(processors: dict, options: JointAttentionOptions, record: JointAttentionRecord) -> dict:
    """The processors of the joint pass: each self-attention's processor of either base replaced, others kept."""
    joint = {}
    for name, processor in processors.items():
        if isinstance(processor, CogVideoXAttnProcessor2_0):
            joint[name] = CogVideoXJointKeyframeProcessor(options, record)
        elif isinstance(processor, WanAttnProcessor) and name.endswith("attn1.processor"):
            joint[name] = WanJointKeyframeProcessor(options, record)
        else:
            joint[name] = processor
    if all(joint[name] is processors[name] for name in processors):
        raise ValueError("no CogVideoX or Wan self-attention processor to make joint in this transformer")
    return joint


def _sizes(block: torch.nn.Module, processor, options: JointAttentionOptions, args: tuple, kwargs: dict
           ) -> BlockSizes:
    """What a block of the joint pass holds, read off its first call's arguments and its feed-forward."""
    hidden = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]
    encoder = kwargs["encoder_hidden_states"] if "encoder_hidden_states" in kwargs else args[1]
    text = encoder.shape[1] if processor.text_in_self_attention else 0
    n, others = hidden.shape[1], (options.n_keyframes - 1) * hidden.shape[1]
    if options.kv_budget is not None:
        others = min(others, options.kv_budget)
    ffn = getattr(block, "ff", None) or block.ffn  # CogVideoX's and Wan's feed-forward
    inner = max(m.out_features for m in ffn.modules() if isinstance(m, torch.nn.Linear))
    return BlockSizes(keyframes=options.n_keyframes, rows=hidden.shape[0], own=text + n, video=n,
                      width=hidden.shape[2], ffn=inner, heads=block.attn1.heads, others=others,
                      element=hidden.element_size(), scores=hidden.device.type != "cuda")


def _block_runner(options: JointAttentionOptions, record: JointAttentionRecord):
    """How each block of the joint pass runs: in keyframe groups, the group chosen at the first block."""

    def run(block: torch.nn.Module, forward, args: tuple, kwargs: dict):
        processor = block.attn1.processor
        if not record.keyframe_group:
            group = options.keyframe_group
            if group is None:
                hidden = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]
                budget = options.memory_bytes or FREE_MEMORY_SHARE * free_memory(hidden.device)
                group = group_for_memory(_sizes(block, processor, options, args, kwargs), budget)
            record.keyframe_group = min(group, options.n_keyframes)
        return run_in_groups(forward, processor.attend.state, options.n_keyframes, record.keyframe_group, args,
                             kwargs)

    return run


@contextmanager
def joint_keyframe_attention(transformer: torch.nn.Module, options: JointAttentionOptions) -> Iterator[
        JointAttentionRecord]:
    """Within the block, `transformer`'s self-attention is the joint keyframe attention and its blocks run in
    keyframe groups; the original processors and forwards are restored afterwards, also on error. Yields the record
    the processors fill."""
    original = dict(transformer.attn_processors)
    record = JointAttentionRecord()
    transformer.set_attn_processor(joint_processors(original, options, record))
    blocks = [b for name in ("transformer_blocks", "blocks", "vace_blocks")  # CogVideoX's, Wan's, VACE's
              for b in getattr(transformer, name, None) or ()
              if isinstance(getattr(b.attn1, "processor", None),
                            (CogVideoXJointKeyframeProcessor, WanJointKeyframeProcessor))]
    try:
        with blocks_in_groups(blocks, _block_runner(options, record)):
            yield record
    finally:
        transformer.set_attn_processor(original)
