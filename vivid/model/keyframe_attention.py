"""Joint keyframe attention with Adaptive Attention Slimming (AAS, after AdaFlow), for both bases.

K one-frame edits run as one batch (with guidance: the negatives' K then the positives' K). In every self-attention
layer each query keyframe attends to its own tokens (text + video on CogVideoX, video on Wan) plus the video tokens of
the other keyframes. With a `kv_budget` it keeps only `kv_budget` of those other tokens: the ones whose best cosine
match among the query keyframe's own video tokens is highest (AdaFlow's per-token best-match map, computed on the
layer's input features). The keys/values held per query keyframe are then own + budget, so the pass grows linearly in
K; without a budget (full extended attention) they are own + (K - 1) x tokens, quadratic in K. Queries are attended
`query_group` keyframes at a time, which bounds the keys/values materialised at once.
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


@dataclass
class JointAttentionOptions:
    """`kv_budget`: other keyframes' tokens kept per query keyframe (None: all, i.e. full extended attention).
    `query_group`: query keyframes attended per attention call."""

    n_keyframes: int
    kv_budget: int | None = None
    query_group: int = 4

    def __post_init__(self) -> None:
        if self.n_keyframes < 1:
            raise ValueError(f"n_keyframes must be >= 1, got {self.n_keyframes}")
        if self.kv_budget is not None and self.kv_budget < 1:
            raise ValueError(f"kv_budget must be >= 1 or None, got {self.kv_budget}")
        if self.query_group < 1:
            raise ValueError(f"query_group must be >= 1, got {self.query_group}")


@dataclass
class JointAttentionRecord:
    """What the joint processors saw: the key/value lengths per query keyframe, and the most key/value tokens held
    at once in one attention call (all layers, all steps)."""

    kv_lengths: set[int] = field(default_factory=set)
    own_lengths: set[int] = field(default_factory=set)
    peak_kv_tokens: int = 0


def matched_tokens(features: torch.Tensor, budget: int | None) -> torch.Tensor | None:
    """For video features (K, N, D) of K keyframes: per query keyframe the indices (K, M) into the K * N flattened
    tokens of the other keyframes' tokens it keeps, in ascending order; M = min(budget, (K - 1) N), all of them when
    `budget` is None. A token's score is its best cosine match among the query keyframe's own tokens; its own tokens
    are never among them (they are always attended separately). None when K == 1."""
    k_frames, n, _ = features.shape
    if k_frames == 1:
        return None
    others = (k_frames - 1) * n
    flat = torch.arange(k_frames * n, device=features.device).view(k_frames, n)
    if budget is None:
        return torch.stack([torch.cat([flat[j] for j in range(k_frames) if j != k]) for k in range(k_frames)])
    unit = F.normalize(features.float(), dim=-1)
    picks = []
    for k in range(k_frames):
        scores = torch.full((k_frames, n), float("-inf"), device=features.device)
        for j in range(k_frames):
            if j != k:  # one (N, N) similarity at a time: memory does not grow with K
                scores[j] = (unit[j] @ unit[k].T).amax(dim=1)
        picks.append(scores.flatten().topk(min(budget, others)).indices.sort().values)
    return torch.stack(picks)


class _JointAttention:
    """The attention shared by both bases' processors: q, k, v (B, H, S, d) with B = groups x K; the video tokens
    are `video` along S; `features` (B, N, D) are the video tokens the matching reads."""

    def __init__(self, options: JointAttentionOptions, record: JointAttentionRecord):
        self.options = options
        self.record = record

    def __call__(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, video: slice,
                 features: torch.Tensor) -> torch.Tensor:
        n_key = self.options.n_keyframes
        if q.shape[0] % n_key:
            raise ValueError(f"batch {q.shape[0]} is not a multiple of the {n_key} keyframes")
        if n_key == 1:  # nothing to share: the base's own attention
            self._note(k.shape[2], k.shape[2], k.shape[0])
            return F.scaled_dot_product_attention(q, k, v, dropout_p=0.0, is_causal=False)
        out = torch.empty_like(q)
        for g0 in range(0, q.shape[0], n_key):
            rows = slice(g0, g0 + n_key)
            picks = matched_tokens(features[rows], self.options.kv_budget)
            heads, d = k.shape[1], k.shape[3]
            video_k = k[rows, :, video].transpose(0, 1).reshape(heads, -1, d)  # (H, K * N, d)
            video_v = v[rows, :, video].transpose(0, 1).reshape(heads, -1, d)
            for c0 in range(0, n_key, self.options.query_group):
                chunk = slice(c0, min(n_key, c0 + self.options.query_group))
                index = picks[chunk]  # (c, M)
                keys = torch.cat([k[rows][chunk], video_k[:, index].transpose(0, 1)], dim=2)
                values = torch.cat([v[rows][chunk], video_v[:, index].transpose(0, 1)], dim=2)
                self._note(keys.shape[2], k.shape[2], keys.shape[0])
                out[g0 + chunk.start : g0 + chunk.stop] = F.scaled_dot_product_attention(
                    q[rows][chunk], keys, values, dropout_p=0.0, is_causal=False
                )
        return out

    def _note(self, kv_length: int, own_length: int, queries: int) -> None:
        self.record.kv_lengths.add(kv_length)
        self.record.own_lengths.add(own_length)
        self.record.peak_kv_tokens = max(self.record.peak_kv_tokens, kv_length * queries)


class CogVideoXJointKeyframeProcessor:
    """`CogVideoXAttnProcessor2_0`'s projections, norms and rotary embedding, then the joint keyframe attention."""

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
        q, k, v = (x.view(batch, -1, attn.heads, x.shape[-1] // attn.heads).transpose(1, 2)
                   for x in (attn.to_q(tokens), attn.to_k(tokens), attn.to_v(tokens)))
        if attn.norm_q is not None:
            q = attn.norm_q(q)
        if attn.norm_k is not None:
            k = attn.norm_k(k)
        if image_rotary_emb is not None:
            q[:, :, text:] = apply_rotary_emb(q[:, :, text:], image_rotary_emb)
            k[:, :, text:] = apply_rotary_emb(k[:, :, text:], image_rotary_emb)
        out = self.attend(q, k, v, slice(text, None), hidden_states)
        out = out.transpose(1, 2).reshape(batch, -1, q.shape[1] * q.shape[3])
        out = attn.to_out[1](attn.to_out[0](out))
        encoder_out, video_out = out.split([text, out.size(1) - text], dim=1)
        return video_out, encoder_out


class WanJointKeyframeProcessor:
    """`WanAttnProcessor`'s self-attention (projections, norms, rotary embedding), then the joint keyframe
    attention. Only for the self-attention layers (attn1): cross-attention keeps the base's processor."""

    def __init__(self, options: JointAttentionOptions, record: JointAttentionRecord):
        self.attend = _JointAttention(options, record)

    def __call__(self, attn, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None = None,
                 attention_mask: torch.Tensor | None = None, rotary_emb=None) -> torch.Tensor:
        if encoder_hidden_states is not None or attention_mask is not None:
            raise ValueError("the joint keyframe attention is for Wan's self-attention, without a mask")
        q, k, v = _get_qkv_projections(attn, hidden_states, None)
        q, k = attn.norm_q(q), attn.norm_k(k)
        q, k, v = (x.unflatten(2, (attn.heads, -1)) for x in (q, k, v))  # (B, S, H, d)
        if rotary_emb is not None:
            cos, sin = (f[0, :, 0] for f in rotary_emb)  # (S, d), pairs repeated as Wan's rotation reads them
            q = apply_rotary_emb(q, (cos, sin), sequence_dim=1)
            k = apply_rotary_emb(k, (cos, sin), sequence_dim=1)
        out = self.attend(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), slice(None), hidden_states)
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


@contextmanager
def joint_keyframe_attention(transformer: torch.nn.Module, options: JointAttentionOptions) -> Iterator[
        JointAttentionRecord]:
    """Within the block, `transformer`'s self-attention is the joint keyframe attention; the original processors are
    restored afterwards, also on error. Yields the record the processors fill."""
    original = dict(transformer.attn_processors)
    record = JointAttentionRecord()
    transformer.set_attn_processor(joint_processors(original, options, record))
    try:
        yield record
    finally:
        transformer.set_attn_processor(original)
