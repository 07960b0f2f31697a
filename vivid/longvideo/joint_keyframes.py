"""Editing the keyframes of a long edit together, as AdaFlow does: one-frame edits in one batch whose self-attention
also reads the other keyframes' tokens, slimmed to `kv_budget` tokens per keyframe (vivid.model.keyframe_attention).

The keyframes then agree with each other (one entity, one colour) instead of each drifting on its own; the clips
between them are edited afterwards. Keyframe i is sampled with seed `seed + i`; with one keyframe the result is the
pipeline's one-frame edit with that seed, exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch

from vivid.conditioning.preprocess import default_paste_dilation, model_size, paste_back
from vivid.io.edit_inputs import EditInputs, load_edit_inputs
from vivid.io.resize import resize_frames
from vivid.model.keyframe_attention import JointAttentionOptions, JointAttentionRecord, joint_keyframe_attention
from vivid.model.spec import SamplingSettings, StepHooks
from vivid.model.transformer import compute_dtype


@dataclass
class JointKeyframeOptions:
    """How the joint pass runs: the edit's task and sampling, and AAS's `kv_budget` (None: full extended attention)
    and `keyframe_group` (keyframes run through the transformer at once, each attending to all; None: the most
    that fit in the free memory). `height`/`width`: the working size (default: the pipeline's choice for the
    keyframes' size)."""

    task: str = "add"
    kv_budget: int | None = None
    keyframe_group: int | None = None
    num_inference_steps: int | None = None
    guidance_scale: float | None = None
    seed: int = 0
    negative_prompt: str = ""
    height: int | None = None
    width: int | None = None
    paste_back_source: bool = True
    paste_back_dilation: int | None = None  # pixels (default: one latent cell at the source's scale)
    reference_images: tuple[np.ndarray, ...] = ()  # what to generate, for a base that takes them (VACE's)


@torch.no_grad()
def edit_keyframes_jointly(
    pipe, keyframes: Sequence[np.ndarray], masks: Sequence[np.ndarray], prompts: Sequence[str],
    options: JointKeyframeOptions, record: JointAttentionRecord | None = None, given: Sequence[np.ndarray] = (),
) -> list[np.ndarray]:
    """The edited keyframes (H, W, 3) uint8 of `keyframes` (each (H, W, 3) uint8, one size) inside `masks` (each
    (H, W)), keyframe i showing `prompts[i]`, followed by the `given` keyframes exactly as given. `given`: keyframes
    already edited (the user's `--keyframe`), of the same size: members of the pass whose tokens the others attend
    to, prompted as keyframe 0; at every step a given keyframe's latent is its own, noised to the step's timestep
    (RePaint-style: its own prediction is discarded). `pipe` is a VIVIDPipeline; its attention processors are
    restored afterwards. `record`, when given, receives what the joint attention saw (key/value lengths, peak
    tokens and rows, the keyframe group). No autograd graph is built, also where the weights require gradients
    (as loaded): every keyframe's encoder graph would otherwise live until the end of the pass."""
    _check_keyframes(keyframes, masks, prompts, given)
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
        [i.prompt for i in inputs] + [inputs[0].prompt] * len(given), options.negative_prompt, guidance > 1.0,
        device=device)
    # a given keyframe's conditions: the frame, nothing masked (as a KIVE keyframe's)
    known = [EditInputs(np.asarray(g)[None], np.zeros((1, *np.asarray(g).shape[:2]), bool), None, inputs[0].prompt,
                        options.task, reference_images=inputs[0].reference_images) for g in given]
    encoded = [pipe._encode_conditions(i, (height, width), device, 1) for i in inputs + known]
    conditions, reference_frames = torch.cat([c for c, _ in encoded]), encoded[0][1]
    settings = SamplingSettings(steps, guidance, [torch.Generator(device).manual_seed(options.seed + i)
                                                  for i in range(len(encoded))])
    attention = JointAttentionOptions(len(encoded), options.kv_budget, options.keyframe_group)
    with joint_keyframe_attention(pipe.transformer, attention) as seen:
        settings, hooks = (_keep_given(pipe, _given_video(given, (height, width), device), settings,
                                       conditions.shape, reference_frames) if given else (settings, None))
        with torch.autocast(device.type, compute_dtype(pipe.transformer), enabled=_mixed(pipe.transformer)):
            latents = spec.sample(pipe.transformer, pipe.scheduler, conditions, prompt_embeds, negative_embeds,
                                  settings, hooks)
        decoded = [_to_uint8(spec.decode_latents(pipe.vae, one[:, reference_frames:]))[0].numpy()  # references first
                   for one in latents[: len(inputs)].split(1)]
    if record is not None:
        record.kv_lengths |= seen.kv_lengths
        record.own_lengths |= seen.own_lengths
        record.peak_kv_tokens = max(record.peak_kv_tokens, seen.peak_kv_tokens)
        record.peak_rows = max(record.peak_rows, seen.peak_rows)
        record.keyframe_group = seen.keyframe_group
    dilation = options.paste_back_dilation
    if dilation is None:
        dilation = default_paste_dilation((src_h, src_w), (height, width))
    edited = []
    for item, frame in zip(inputs, decoded):
        frame = resize_frames(frame, (src_h, src_w))
        if options.paste_back_source:
            frame = paste_back(item.frames, frame, item.mask, dilation)
        edited.append(frame[0])
    return edited + [np.asarray(g) for g in given]


def _check_keyframes(keyframes: Sequence[np.ndarray], masks: Sequence[np.ndarray], prompts: Sequence[str],
                     given: Sequence[np.ndarray]) -> None:
    if not (len(keyframes) == len(masks) == len(prompts)) or not keyframes:
        raise ValueError(f"give as many masks and prompts as keyframes (>= 1), got {len(keyframes)} keyframes, "
                         f"{len(masks)} masks, {len(prompts)} prompts")
    sizes = {np.asarray(k).shape[:2] for k in keyframes}
    if len(sizes) != 1:
        raise ValueError(f"keyframes must share one size, got {sorted(sizes)}")
    for g in given:
        if np.asarray(g).shape != (*next(iter(sizes)), 3) or np.asarray(g).dtype != np.uint8:
            raise ValueError(f"a given keyframe must be uint8 (H, W, 3) of the keyframes' size "
                             f"{next(iter(sizes))}, got {np.asarray(g).dtype} {np.asarray(g).shape}")


def _given_video(given: Sequence[np.ndarray], size: tuple[int, int], device: torch.device) -> torch.Tensor | None:
    """The given keyframes at the working size as one-frame videos (G, 1, 3, h, w) in [-1, 1] (None: none given):
    both their conditions (a KIVE keyframe: nothing masked) and the clean latents they are kept at."""
    if not given:
        return None
    frames = resize_frames(np.stack([np.asarray(g) for g in given]), size)
    return torch.from_numpy(frames).permute(0, 3, 1, 2)[:, None].float().div(127.5).sub(1.0).to(device)


def _keep_given(pipe, given_video: torch.Tensor, settings: SamplingSettings, shape: torch.Size,
                reference_frames: int = 0) -> tuple[SamplingSettings, StepHooks]:
    """Sampling settings and hooks that hold the last G rows (the given keyframes) at their clean latents noised
    to the timestep of each step: the start noise drawn as the sampler draws it (same generators), then the rows
    replaced before the first step and after every step (their frame, after any reference images' latent
    frames, which are sampled)."""
    spec, scheduler = pipe.spec, pipe.scheduler
    device = given_video.device
    timesteps = spec.sampler_timesteps(scheduler, settings.num_inference_steps, device)
    b, t, _, h, w = shape
    noise = spec.prepare_latents(scheduler, (b, t, spec.latent_channels, h, w), device,
                                 compute_dtype(pipe.transformer), settings.generator)
    rows = (slice(b - given_video.shape[0], b), slice(reference_frames, None))
    clean = spec.encode_video(pipe.vae, given_video).to(noise.dtype)

    def noised(step: int) -> torch.Tensor:
        return scheduler.add_noise(clean, noise[rows], timesteps[step : step + 1].expand(clean.shape[0]))

    start = noise.clone()
    start[rows] = noised(0).to(start.dtype)

    def on_step(i: int, step_t: torch.Tensor, tensors: dict) -> dict | None:
        if i + 1 >= len(timesteps):
            return None
        latents = tensors["latents"].clone()
        latents[rows] = noised(i + 1).to(latents.dtype)
        return {"latents": latents}

    return replace(settings, latents=start), StepHooks(on_step=on_step)


def _to_uint8(decoded: torch.Tensor) -> torch.Tensor:
    """The first frame of decoded video (B, F, 3, H, W) in [-1, 1] as (B, 1, H, W, 3) uint8 on the CPU; keyframes
    are decoded one at a time, so the decoder's activations are one frame's whatever the number of keyframes."""
    return ((decoded[:, :1].float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 1, 3, 4, 2).cpu()


def _mixed(transformer: torch.nn.Module) -> bool:
    """fp32 trainable weights beside frozen bf16 ones: sampled under autocast, as the pipeline does."""
    dtype = compute_dtype(transformer)
    return any(p.dtype != dtype for p in transformer.parameters() if p.is_floating_point())
