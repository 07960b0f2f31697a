"""Editing the keyframes of a long edit together, as AdaFlow does: one-frame edits in one batch whose self-attention
also reads the other keyframes' tokens, slimmed to `kv_budget` tokens per keyframe (vivid.model.keyframe_attention).

The keyframes then agree with each other (one entity, one colour) instead of each drifting on its own; the clips
between them are edited afterwards. Keyframe i is sampled with seed `seed + i`; with one keyframe the result is the
pipeline's one-frame edit with that seed, exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from vivid.conditioning.preprocess import default_paste_dilation, model_size, paste_back
from vivid.io.edit_inputs import load_edit_inputs
from vivid.io.resize import resize_frames
from vivid.model.keyframe_attention import JointAttentionOptions, JointAttentionRecord, joint_keyframe_attention
from vivid.model.spec import SamplingSettings
from vivid.model.transformer import compute_dtype


@dataclass
class JointKeyframeOptions:
    """How the joint pass runs: the edit's task and sampling, and AAS's `kv_budget` (None: full extended attention)
    and `query_group` (query keyframes per attention call). `height`/`width`: the working size (default: the
    pipeline's choice for the keyframes' size)."""

    task: str = "add"
    kv_budget: int | None = None
    query_group: int = 4
    num_inference_steps: int | None = None
    guidance_scale: float | None = None
    seed: int = 0
    negative_prompt: str = ""
    height: int | None = None
    width: int | None = None
    paste_back_source: bool = True
    paste_back_dilation: int | None = None  # pixels (default: one latent cell at the source's scale)
    reference_images: tuple[np.ndarray, ...] = ()  # what to generate, for a base that takes them (VACE's)


def edit_keyframes_jointly(
    pipe, keyframes: Sequence[np.ndarray], masks: Sequence[np.ndarray], prompts: Sequence[str],
    options: JointKeyframeOptions, record: JointAttentionRecord | None = None,
) -> list[np.ndarray]:
    """The edited keyframes (H, W, 3) uint8 of `keyframes` (each (H, W, 3) uint8, one size) inside `masks` (each
    (H, W)), keyframe i showing `prompts[i]`. `pipe` is a VIVIDPipeline; its attention processors are restored
    afterwards. `record`, when given, receives what the joint attention saw (key/value lengths, peak tokens)."""
    if not (len(keyframes) == len(masks) == len(prompts)) or not keyframes:
        raise ValueError(f"give as many masks and prompts as keyframes (>= 1), got {len(keyframes)} keyframes, "
                         f"{len(masks)} masks, {len(prompts)} prompts")
    sizes = {np.asarray(k).shape[:2] for k in keyframes}
    if len(sizes) != 1:
        raise ValueError(f"keyframes must share one size, got {sorted(sizes)}")
    references = list(options.reference_images) or None
    inputs = [load_edit_inputs(np.asarray(k)[None], np.asarray(m)[None], p, options.task, reference_images=references)
              for k, m, p in zip(keyframes, masks, prompts)]
    src_h, src_w = inputs[0].frames.shape[1:3]
    spec, device = pipe.spec, pipe._execution_device
    steps = options.num_inference_steps or spec.default_num_inference_steps
    guidance = spec.default_guidance_scale if options.guidance_scale is None else options.guidance_scale
    height, width = options.height, options.width
    if height is None:
        buckets = pipe.vivid_config.buckets if pipe.vivid_config is not None else None
        height, width = model_size(src_h, src_w, pipe.native_area, buckets)
    prompt_embeds, negative_embeds = pipe.encode_prompt(
        [i.prompt for i in inputs], options.negative_prompt, guidance > 1.0, device=device)
    encoded = [pipe._encode_conditions(i, (height, width), device, 1) for i in inputs]
    conditions, reference_frames = torch.cat([c for c, _ in encoded]), encoded[0][1]
    generators = [torch.Generator(device).manual_seed(options.seed + i) for i in range(len(inputs))]
    attention = JointAttentionOptions(len(inputs), options.kv_budget, options.query_group)
    with torch.no_grad(), joint_keyframe_attention(pipe.transformer, attention) as seen:
        with torch.autocast(device.type, compute_dtype(pipe.transformer), enabled=_mixed(pipe.transformer)):
            latents = spec.sample(pipe.transformer, pipe.scheduler, conditions, prompt_embeds, negative_embeds,
                                  SamplingSettings(steps, guidance, generators))
        decoded = spec.decode_latents(pipe.vae, latents[:, reference_frames:]).float()  # the references' first
    if record is not None:
        record.kv_lengths |= seen.kv_lengths
        record.own_lengths |= seen.own_lengths
        record.peak_kv_tokens = max(record.peak_kv_tokens, seen.peak_kv_tokens)
    decoded = ((decoded[:, :1].clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 1, 3, 4, 2).cpu().numpy()
    dilation = options.paste_back_dilation
    if dilation is None:
        dilation = default_paste_dilation((src_h, src_w), (height, width))
    edited = []
    for item, frame in zip(inputs, decoded):
        frame = resize_frames(frame, (src_h, src_w))
        if options.paste_back_source:
            frame = paste_back(item.frames, frame, item.mask, dilation)
        edited.append(frame[0])
    return edited


def _mixed(transformer: torch.nn.Module) -> bool:
    """fp32 trainable weights beside frozen bf16 ones: sampled under autocast, as the pipeline does."""
    dtype = compute_dtype(transformer)
    return any(p.dtype != dtype for p in transformer.parameters() if p.is_floating_point())
