"""Wan2.1 on a GPU through the Wan specification: VIVID vs stock diffusers' WanPipeline, same process, same shape.

    python benchmarks/bench_wan_gpu.py --size 1.3b --mode inference --guidance 5     # H100/H200
    python benchmarks/bench_wan_gpu.py --size 14b --mode training --train-steps 2
    python benchmarks/bench_wan_gpu.py --size tiny --device cpu --frames 5 --height 32 --width 48 --steps 1  # CI

--size 1.3b / 14b build the Wan2.1-T2V transformer (bfloat16) and the Wan VAE (float32, as Wan keeps it) with
random weights directly on the device (no downloads, no float32 copy on the host): timings and memory are the real
model's, outputs are noise. UMT5-XXL is not loaded: both pipelines get `prompt_embeds` of its shape (512 x 4096),
so neither total includes text encoding. --size tiny is the tiny Wan family (vivid/model/tiny_wan.py).

--mode inference: the stock `WanPipeline` (16-channel transformer, text-to-video) and then the same transformer
made VIVID in place (`WanSpec.make_vivid`: widened patch embedding + rank-32 LoRA, so one copy of the weights
serves both rows), editing a clip: conditions (VAE encode), `WanSpec.sample` (UniPC, guidance as Wan: two
forwards per step when guidance > 1), decode. Per row: median seconds per denoising step, total seconds, peak
memory. --mode training: the trainer's own step (`train.step.TrainStep`: flow matching), backward, AdamW on
the LoRA and patch embedding in float32, bf16 autocast), optionally with gradient checkpointing; median seconds
per step after one warm-up, peak memory. Seconds are wall time on a GPU and the process's CPU time on a CPU.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch

from bench_inference import edit_inputs, timed_run
from common import _materialise, clock_name, print_timings

from train.step import TrainStep
from vivid.model.spec import SamplingSettings, StepHooks, to_unit_range
from vivid.model.configs import (
    TINY_WAN_TRANSFORMER,
    WAN21_1_3B_TRANSFORMER,
    WAN21_14B_TRANSFORMER,
    WAN21_SCHEDULER,
    WAN21_VAE,
)

TRANSFORMERS = {"1.3b": WAN21_1_3B_TRANSFORMER, "14b": WAN21_14B_TRANSFORMER, "tiny": TINY_WAN_TRANSFORMER}
# Wan2.1's native clip at 480p (both sizes are trained there); the tiny model's native shape
SHAPES = {"1.3b": (81, 480, 832), "14b": (81, 480, 832), "tiny": (9, 64, 96)}
TEXT_TOKENS = {"1.3b": 512, "14b": 512, "tiny": 16}  # UMT5's max_sequence_length in WanPipeline; the tiny family's


def add_size_arguments(p: argparse.ArgumentParser, sizes: dict) -> None:
    """--size (a key of `sizes`), --frames, --height, --width, --device: the Wan-family benchmarks' shared flags."""
    p.add_argument("--size", choices=sorted(sizes), default="tiny")
    p.add_argument("--frames", type=int, default=None, help="4k+1 (default: 81 for 1.3b/14b, 9 for tiny)")
    p.add_argument("--height", type=int, default=None)
    p.add_argument("--width", type=int, default=None)
    p.add_argument("--device", default=None, help="default: cuda for 1.3b/14b, cpu for tiny")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_size_arguments(p, TRANSFORMERS)
    p.add_argument("--mode", choices=["inference", "training"], default="inference")
    p.add_argument("--steps", type=int, default=4, help="denoising steps per edit (inference)")
    p.add_argument("--guidance", type=float, default=5.0, help="guidance scale (1: no guidance, one forward)")
    p.add_argument("--no-stock", dest="stock", action="store_false", help="skip the stock WanPipeline row")
    p.add_argument("--train-steps", type=int, default=2, help="timed training steps (after one warm-up)")
    p.add_argument("--gradient-checkpointing", action="store_true")
    p.add_argument("--json", action="store_true")
    return p.parse_args(argv)


def pick_device(size: str, device: str | None) -> torch.device:
    if device:
        return torch.device(device)
    if size != "tiny" and not torch.cuda.is_available():
        raise SystemExit(f"--size {size} needs a CUDA GPU (or --size tiny --device cpu)")
    return torch.device("cuda" if size != "tiny" else "cpu")


def keep_fp32_modules_(transformer: torch.nn.Module) -> torch.nn.Module:
    """Put the weights of the modules diffusers keeps in float32 whatever the model's dtype (Wan's
    `_keep_in_fp32_modules`: time embedding, modulation table, norms) back in float32, as `from_pretrained(...,
    dtype=torch.bfloat16)` loads them."""
    kept = getattr(transformer, "_keep_in_fp32_modules", None) or ()
    for name, p in transformer.named_parameters():
        if any(m in name for m in kept):
            p.data = p.data.float()
    return transformer


def cast_trainable_(transformer: torch.nn.Module, dtype: torch.dtype) -> None:
    """The trainable weights (LoRA, patch embedding) in `dtype`, the frozen ones as they are."""
    for p in transformer.parameters():
        if p.requires_grad:
            p.data = p.data.to(dtype)


def build(size: str, device: torch.device, seed: int = 0) -> dict:
    """transformer (stock; bf16 but for its float32 modules), VAE (fp32) and scheduler of `size`, random
    weights: 1.3b / 14b built on the meta device and materialised once on `device`."""
    from diffusers import WanTransformer3DModel

    from vivid.model.tiny_wan import build_tiny_wan_components

    return build_wan_components(WanTransformer3DModel, TRANSFORMERS, build_tiny_wan_components, size, device, seed)


def build_wan_components(transformer_class: type, configs: dict, build_tiny, size: str, device: torch.device,
                         seed: int = 0) -> dict:
    """A Wan2.1-family transformer (`transformer_class` with `configs[size]`, or `build_tiny(seed)`'s at "tiny"),
    the Wan VAE and UniPC: what this benchmark and the VACE one build."""
    from diffusers import AutoencoderKLWan, UniPCMultistepScheduler

    if size == "tiny":
        comps = build_tiny(seed)
        transformer = keep_fp32_modules_(comps["transformer"].to(device, torch.bfloat16).eval())
        return dict(transformer=transformer, vae=comps["vae"].to(device).eval(), scheduler=comps["scheduler"])
    config = configs[size]
    transformer = _materialise(lambda: transformer_class(**config), device, torch.bfloat16, seed)
    # the rotary tables are computed in __init__ (non-persistent buffers), which `to_empty` left uninitialised
    transformer.rope = type(transformer.rope)(config["attention_head_dim"], config["patch_size"],
                                              transformer.rope.max_seq_len).to(device)
    vae = _materialise(lambda: AutoencoderKLWan(**WAN21_VAE), device, torch.float32, seed + 1)
    return dict(transformer=keep_fp32_modules_(transformer), vae=vae,
                scheduler=UniPCMultistepScheduler(**WAN21_SCHEDULER))


def edit_batch(frames: int, height: int, width: int) -> dict[str, torch.Tensor]:
    """The benchmarks' clip and mask (`bench_inference.edit_inputs`) as a loader batch: uint8 `video` and
    `masked_video` (1, F, 3, H, W), `mask` (1, F, 1, H, W)."""
    video, mask = edit_inputs(frames, height, width)
    masked = video.copy()
    masked[mask] = 0
    return {
        "video": torch.from_numpy(video).permute(0, 3, 1, 2)[None].contiguous(),
        "masked_video": torch.from_numpy(masked).permute(0, 3, 1, 2)[None].contiguous(),
        "mask": torch.from_numpy(mask.astype(np.uint8))[None, :, None].contiguous(),
    }


def spec_step_callback(on_step_end):
    """`WanSpec.sample`'s on_step(i, t, tensors) calling a pipeline-style callback (`timed_run`'s), replacing
    nothing."""
    def on_step(i, t, tensors):
        on_step_end(None, i, t, {})

    return on_step


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from vivid.model.wan_spec import WanSpec

    device = pick_device(args.size, args.device)
    frames, height, width = (a or d for a, d in zip((args.frames, args.height, args.width), SHAPES[args.size]))
    spec = WanSpec()
    comps = build(args.size, device)
    transformer, vae, scheduler = comps["transformer"], comps["vae"], comps["scheduler"]
    text_dim = TRANSFORMERS[args.size]["text_dim"]
    gen = torch.Generator().manual_seed(0)
    prompt_embeds = torch.randn(1, TEXT_TOKENS[args.size], text_dim, generator=gen).to(device, torch.bfloat16)
    negative_embeds = torch.zeros_like(prompt_embeds)
    batch = edit_batch(frames, height, width)
    rows: list[dict] = []
    extra: dict = {
        "size": args.size, "mode": args.mode, "shape": f"{frames}x{height}x{width}",
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else str(device),
        "dtype": "bfloat16 (VAE float32)", "clock": clock_name(device), "text_tokens": TEXT_TOKENS[args.size],
    }

    if args.mode == "inference":
        extra.update(steps=args.steps, guidance=args.guidance)
        if args.stock:
            from diffusers import WanPipeline

            pipe = WanPipeline(tokenizer=None, text_encoder=None, vae=vae, transformer=transformer,
                               scheduler=scheduler)
            pipe.set_progress_bar_config(disable=True)

            def stock_call(on_step_end):
                return pipe(prompt_embeds=prompt_embeds, negative_prompt_embeds=negative_embeds, height=height,
                            width=width, num_frames=frames, num_inference_steps=args.steps,
                            guidance_scale=args.guidance, generator=torch.Generator().manual_seed(0),
                            output_type="pt", callback_on_step_end=on_step_end)

            rows.append(timed_run("stock WanPipeline (text-to-video)", stock_call, device, 1))
            del pipe
        spec.make_vivid(transformer).eval()
        cast_trainable_(transformer, torch.bfloat16)  # inference: the LoRA and patch embedding in bf16 too

        def vivid_call(on_step_end):
            with torch.no_grad():
                conditions = spec.encode_conditions(vae, to_unit_range(batch["masked_video"]).to(device),
                                                    batch["mask"].float().to(device))
                settings = SamplingSettings(num_inference_steps=args.steps, guidance_scale=args.guidance,
                                            generator=torch.Generator(device).manual_seed(0))
                latents = spec.sample(transformer, scheduler, conditions, prompt_embeds, negative_embeds,
                                      settings, StepHooks(on_step=spec_step_callback(on_step_end)))
                return spec.decode_latents(vae, latents)

        rows.append(timed_run("vivid (WanSpec: conditions, sample, decode)", vivid_call, device, 1))
    else:
        spec.make_vivid(transformer)
        cast_trainable_(transformer, torch.float32)  # as the trainer does: trainable weights in fp32
        if args.gradient_checkpointing:
            transformer.enable_gradient_checkpointing()
        transformer.train()
        trainable = [p for p in transformer.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(trainable, lr=1e-4, weight_decay=1e-4)
        device_batch = {k: v.to(device) for k, v in batch.items()}
        losses: list[float] = []

        train_step = TrainStep(spec, vae, scheduler, device, captions=lambda prompts, device: prompt_embeds)
        device_batch["prompt"] = ["a red ball"] * device_batch["video"].shape[0]

        def train_call(on_step_end):
            step_gen = torch.Generator(device).manual_seed(len(losses))
            amp = torch.autocast(device.type, dtype=torch.bfloat16)
            loss = train_step.loss(transformer, device_batch, step_gen, amp)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trainable, 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(float(loss.detach()))
            on_step_end(None, 0, None, {})

        name = "vivid LoRA step" + (" (gradient checkpointing)" if args.gradient_checkpointing else "")
        row = timed_run(name, train_call, device, args.train_steps)  # each step whole: encode, fwd, bwd, AdamW
        row["losses"] = losses
        row["finite"] = all(np.isfinite(losses))
        row.update(spec.parameter_report(transformer))
        extra.update(train_steps=args.train_steps, gradient_checkpointing=args.gradient_checkpointing)
        rows.append(row)
        if not row["finite"]:
            print(f"non-finite training loss: {losses}", file=sys.stderr)
            return 1

    print_timings(f"Wan2.1 {args.size} {args.mode}: VIVID vs stock WanPipeline",
                  f"== Wan2.1 {args.size} {args.mode}, {extra['shape']} on {extra['device']} ({extra['clock']})",
                  rows, extra, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
