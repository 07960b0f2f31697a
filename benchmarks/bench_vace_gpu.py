"""Wan2.1-VACE on a GPU through vivid (VIVIDPipeline on the VACE specification) beside the stock diffusers
WanVACEPipeline, same process, same weights, same clip and mask.

    python benchmarks/bench_vace_gpu.py --size 1.3b --guidance 5                                      # H100/H200
    python benchmarks/bench_vace_gpu.py --size tiny --device cpu --frames 5 --height 32 --width 48 --steps 1  # CI

--size 1.3b / 14b build the Wan2.1-VACE transformer (bfloat16) and the Wan VAE (float32) with random weights on the
device (no downloads): timings and memory are the real model's, outputs are noise. UMT5-XXL is not loaded: both
pipelines get `prompt_embeds` of its shape, so neither total includes text encoding. --size tiny is the tiny VACE
family (vivid/model/tiny_vace.py). Rows: the stock WanVACEPipeline given VACE's inpainting input (edit region grey,
white mask), then vivid's edit of the same clip (reading the frames, VACE's conditions, the shared sampler, decode,
paste-back). Per row: median seconds per denoising step, total seconds, peak memory; then vivid's overhead ratio
(its step and total time over the stock pipeline's).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from bench_inference import edit_inputs, timed_run
from bench_wan_gpu import TEXT_TOKENS, add_size_arguments, build_wan_components, pick_device
from common import clock_name, print_timings

from vivid.model.configs import TINY_VACE_TRANSFORMER, WAN21_VACE_1_3B_TRANSFORMER, WAN21_VACE_14B_TRANSFORMER

TRANSFORMERS = {"1.3b": WAN21_VACE_1_3B_TRANSFORMER, "14b": WAN21_VACE_14B_TRANSFORMER, "tiny": TINY_VACE_TRANSFORMER}
SHAPES = {"1.3b": (81, 480, 832), "14b": (81, 480, 832), "tiny": (9, 64, 96)}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_size_arguments(p, TRANSFORMERS)
    p.add_argument("--steps", type=int, default=4, help="denoising steps per edit")
    p.add_argument("--guidance", type=float, default=5.0, help="guidance scale (1: one forward per step)")
    p.add_argument("--json", action="store_true")
    return p.parse_args(argv)


def build(size: str, device: torch.device, seed: int = 0) -> dict:
    """VACE transformer (bf16 but for its float32 modules), VAE (fp32) and scheduler of `size`, random weights."""
    from diffusers import WanVACETransformer3DModel

    from vivid.model.tiny_vace import build_tiny_vace_components

    return build_wan_components(WanVACETransformer3DModel, TRANSFORMERS, build_tiny_vace_components, size, device,
                                seed)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from diffusers import WanVACEPipeline

    from vivid.pipeline import VIVIDPipeline

    device = pick_device(args.size, args.device)
    frames, height, width = (a or d for a, d in zip((args.frames, args.height, args.width), SHAPES[args.size]))
    comps = build(args.size, device)
    gen = torch.Generator().manual_seed(0)
    text_dim = TRANSFORMERS[args.size]["text_dim"]
    prompt_embeds = torch.randn(1, TEXT_TOKENS[args.size], text_dim, generator=gen).to(device, torch.bfloat16)
    negative_embeds = torch.zeros_like(prompt_embeds)
    video, mask = edit_inputs(frames, height, width)
    common = dict(prompt_embeds=prompt_embeds, negative_prompt_embeds=negative_embeds, height=height, width=width,
                  num_inference_steps=args.steps, guidance_scale=args.guidance)

    stock = WanVACEPipeline(tokenizer=None, text_encoder=None, **comps)
    stock.set_progress_bar_config(disable=True)
    grey = np.where(mask[..., None], 0.5, video / 255.0).astype(np.float32)  # VACE's inpainting input
    stock_video = torch.from_numpy(grey).permute(0, 3, 1, 2)[None]
    stock_mask = torch.from_numpy(mask.astype(np.float32))[None, :, None].expand(1, frames, 3, height, width)

    def stock_call(on_step_end):
        return stock(video=stock_video, mask=stock_mask, num_frames=frames, output_type="np",
                     generator=torch.Generator().manual_seed(0), callback_on_step_end=on_step_end, **common)

    rows = [timed_run("stock WanVACEPipeline", stock_call, device, 1)]
    del stock_call, stock  # the GPU memory of the stock pipeline, before vivid's is built
    pipe = VIVIDPipeline(tokenizer=None, text_encoder=None, **comps)
    pipe.set_progress_bar_config(disable=True)

    def vivid_call(on_step_end):
        return pipe(video=video, mask=mask, task="add", output_type="uint8",
                    generator=torch.Generator(device).manual_seed(0), callback_on_step_end=on_step_end, **common)

    rows.append(timed_run("vivid (VIVIDPipeline on VACESpec)", vivid_call, device, 1))
    ratio = {"step": rows[1]["step_s"] / rows[0]["step_s"], "total": rows[1]["total_s"] / rows[0]["total_s"]}
    extra = {"size": args.size, "shape": f"{frames}x{height}x{width}", "steps": args.steps,
             "guidance": args.guidance, "dtype": "bfloat16 (VAE float32)", "clock": clock_name(device),
             "device": torch.cuda.get_device_name(device) if device.type == "cuda" else str(device),
             "overhead_ratio": ratio}
    print_timings(f"Wan2.1-VACE {args.size}: vivid vs stock WanVACEPipeline",
                  f"== Wan2.1-VACE {args.size}, {extra['shape']} on {extra['device']} ({extra['clock']})",
                  rows, extra, args.json, name_width=40)
    if not args.json:
        print(f"  vivid / stock: {ratio['step']:.3f} per step, {ratio['total']:.3f} total")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
