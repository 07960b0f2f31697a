"""`vivid edit`: add, modify or delete an entity inside a mask of a video or an image."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from vivid.constants import TASKS

logger = logging.getLogger("vivid.edit")


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="base CogVideoX: hub id (THUDM/CogVideoX-5b) or local folder")
    p.add_argument("--weights", help="VIVID weights folder (LoRA + patch embedding); omit for the untrained model")
    p.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default=None,
                   help="model dtype (default: bfloat16 on GPU, float32 on CPU)")
    p.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    p.add_argument("--cpu-offload", action="store_true", help="model CPU offload (GPU only): lower peak memory")
    p.add_argument("--vae-tiling", action="store_true", help="decode/encode the VAE in tiles: lower peak memory")


def add_sampling_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--steps", type=int, default=50, help="denoising steps")
    p.add_argument("--guidance", type=float, default=6.0, help="classifier-free guidance scale (1 = off)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--negative-prompt", default=None)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("edit", help="edit a video or image inside a mask")
    add_model_arguments(p)
    p.add_argument("--video", required=True, help="input video, or an image (then an image is written)")
    p.add_argument("--mask", required=True, help="mask video, folder of PNGs, one image for all frames, or .npy/.npz")
    p.add_argument("--prompt", default=None, help="local caption of what should be in the mask (optional for delete)")
    p.add_argument("--task", required=True, choices=TASKS)
    p.add_argument("--out", required=True, help="output video (.mp4) or image (.png/.jpg)")
    p.add_argument("--keyframe", default=None, help="edited first frame to propagate (KIVE)")
    add_sampling_arguments(p)
    p.add_argument("--no-paste-back", dest="paste_back", action="store_false",
                   help="keep the generated pixels everywhere instead of the source outside the dilated mask")
    p.add_argument("--paste-back-dilation", type=int, default=None, help="pixels (default: one latent cell)")
    p.add_argument("--lossless", action="store_true", help="write the output video losslessly (large files)")
    p.set_defaults(func=run)


def load_pipeline(args: argparse.Namespace):
    """Build the VIVIDPipeline a CLI command asked for (shared by edit, keyframe, eval, app)."""
    import torch

    from vivid.pipeline import VIVIDPipeline

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype_name = args.dtype or ("bfloat16" if device.startswith("cuda") else "float32")
    model = args.model
    if not (Path(model).is_dir() or "/" in model):
        raise ValueError(f"--model {model!r} is neither a local folder nor a hub id (owner/name)")
    if Path(model).exists() and not (Path(model) / "model_index.json").is_file():
        raise FileNotFoundError(f"--model {model}: no model_index.json (not a diffusers pipeline folder)")
    pipe = VIVIDPipeline.from_pretrained(model, dtype=getattr(torch, dtype_name))
    if args.weights:
        pipe.load_vivid_weights(args.weights)
    if args.vae_tiling:
        pipe.vae.enable_tiling()
    if args.cpu_offload:
        if not device.startswith("cuda"):
            raise ValueError("--cpu-offload needs a GPU (it moves models between CPU and GPU)")
        pipe.enable_model_cpu_offload(device=device)
    else:
        pipe.to(device)
    return pipe


def run(args: argparse.Namespace) -> int:
    import torch

    from vivid.inputs import load_edit_inputs
    from vivid.media import is_image_path, write_image, write_video

    out = Path(args.out)
    if out.is_dir():
        raise ValueError(f"--out {out} is a folder; give a file name")
    inputs = load_edit_inputs(args.video, args.mask, args.prompt, args.task, args.keyframe)  # fail fast, before loading
    image_in = inputs.frames.shape[0] == 1 and is_image_path(args.video)
    if image_in and not is_image_path(out):
        raise ValueError(f"the input {args.video} is an image, so --out must be an image (.png/.jpg), got {out}")
    if not image_in and is_image_path(out):
        raise ValueError(f"the input {args.video} is a video, so --out must be a video (.mp4), got {out}")
    pipe = load_pipeline(args)
    generator = torch.Generator(device="cpu").manual_seed(args.seed)
    frames = pipe(
        video=inputs.frames,
        mask=inputs.mask,
        prompt=inputs.prompt,
        task=args.task,
        keyframe=inputs.keyframe,
        negative_prompt=args.negative_prompt,
        num_inference_steps=args.steps,
        guidance_scale=args.guidance,
        generator=generator,
        output_type="np",
        paste_back_source=args.paste_back,
        paste_back_dilation=args.paste_back_dilation,
    ).frames[0]
    frames = (frames * 255).round().astype("uint8")
    if image_in:
        write_image(out, frames[0])
    else:
        write_video(out, frames, inputs.fps, lossless=args.lossless)
    print(f"wrote {out} ({frames.shape[0]} frames, {frames.shape[2]}x{frames.shape[1]})")
    return 0
