"""Probe: does a VAE keep the synthetic world's shapes? Renders single-shape clips (every colour, every shape,
random size, motion and background), encodes and decodes them, and scores the shape on the source and on the
reconstruction with the synthetic metric (the whole frame as the region, as the text-to-video evaluation does).

    python scripts/vae_shape_roundtrip.py vivid/model/tiny_vae --clips 72

If a shape does not survive the round trip, no latent model on that VAE can draw it; a one-off probe behind the
tiny base's README, nothing imports it.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

import numpy as np
import torch

from data_loaders.synthetic import _random_entity, background, render
from vivid.evaluation.text_to_video import score_text_to_video
from vivid.synthetic_world import COLORS, SHAPES


def roundtrip(vae: torch.nn.Module, video: np.ndarray, latent_noise: float = 0.0,
              generator: torch.Generator | None = None) -> np.ndarray:
    """(F, H, W, 3) uint8 -> the same through the VAE's posterior mode and decoder; `latent_noise` adds Gaussian
    noise of that standard deviation to the normalised latents (what a diffusion model sees, unit variance) before
    decoding: how exact must a latent model's output be for the shape to survive?"""
    x = torch.from_numpy(video).float().permute(3, 0, 1, 2)[None] / 127.5 - 1
    with torch.no_grad():
        z = vae.encode(x).latent_dist.mode()
        if latent_noise:
            z = z + latent_noise / vae.config.scaling_factor * torch.randn(z.shape, generator=generator)
        y = vae.decode(z).sample
    return ((y[0].permute(1, 2, 3, 0).clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("vae", help="an AutoencoderKLCogVideoX folder")
    p.add_argument("--clips", type=int, default=72, help="clips, cycling through shapes and colours")
    p.add_argument("--frames", type=int, default=9)
    p.add_argument("--height", type=int, default=64)
    p.add_argument("--width", type=int, default=96)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--latent-noise", type=float, default=0.0,
                   help="std of Gaussian noise added to the normalised latents before decoding (default 0)")
    args = p.parse_args(argv)
    from diffusers import AutoencoderKLCogVideoX

    torch.set_num_threads(args.threads)
    vae = AutoencoderKLCogVideoX.from_pretrained(args.vae).eval()
    rng = np.random.default_rng(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    counts = {s: {"clips": 0, "source": 0, "reconstruction": 0} for s in SHAPES}
    for i in range(args.clips):
        shape, color = SHAPES[i % len(SHAPES)], list(COLORS)[(i // len(SHAPES)) % len(COLORS)]
        entity = _random_entity(rng, args.frames, args.height, args.width, color, shape, moving=True)
        video = render(background(rng, args.frames, args.height, args.width), [entity])
        counts[shape]["clips"] += 1
        counts[shape]["source"] += bool(score_text_to_video(video, color, shape)["shape_match"])
        counts[shape]["reconstruction"] += bool(score_text_to_video(roundtrip(vae, video, args.latent_noise, generator), color, shape)["shape_match"])
    report = {s: {"clips": c["clips"], "source": c["source"] / c["clips"],
                  "reconstruction": c["reconstruction"] / c["clips"]} for s, c in counts.items()}
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
