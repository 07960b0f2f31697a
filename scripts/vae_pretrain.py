"""Stage 1 of the tiny recipe: train the tiny CogVideoX VAE to reconstruct the synthetic world.

No pretrained VAE exists for the tiny family, and a random one cannot reconstruct anything, so the latent
diffusion model would have nothing to learn. This trains `AutoencoderKLCogVideoX` (TINY_VAE) on frames of a
data set (the train manifests of `vivid data synth`): mostly single frames (cheap; the causal VAE encodes an
image as a 1-frame video) and some 4k+1-frame clips, so that the temporal compression is learnt too.

Loss: L1 reconstruction from a posterior sample + a small KL. The encoder's log-variance starts low (a narrow
posterior), which avoids the early phase where the decoder only sees noise. After training, the VAE's
`scaling_factor` is set to 1 / std of the latents of held-out frames, as CogVideoX's is, so that the diffusion
model sees unit-variance latents.

    python scripts/vae_pretrain.py --data data/synth/train-*.jsonl --out vivid/model/tiny_vae --steps 600

A one-off: it made the committed VAE in vivid/model/tiny_vae (its README has the exact commands); nothing in vivid,
train or data_loaders imports it.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from diffusers import AutoencoderKLCogVideoX

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere in the checkout

from data_loaders.config import DataConfig  # noqa: E402
from data_loaders.format import read_manifests  # noqa: E402
from data_loaders.samples import decode_record  # noqa: E402
from vivid.model.configs import TINY_VAE  # noqa: E402
from vivid.model.tiny import install_component  # noqa: E402

logger = logging.getLogger("vivid.vae_pretrain")


@dataclass
class VAEPretrainConfig:
    manifests: list[str] = field(default_factory=list)
    out_dir: str = "runs/tiny-vae"
    steps: int = 600
    image_batch: int = 8
    video_batch: int = 2
    video_every: int = 4  # one video batch every `video_every` steps, images otherwise
    frames: int = 9
    height: int = 64
    width: int = 96
    fps: float = 8.0
    crop: tuple[int, int] | None = (32, 48)  # train on random crops (the VAE is convolutional): 4x cheaper
    lr: float = 1e-3
    kl_weight: float = 1e-6
    entity_weight: float = 10.0  # loss weight of saturated (palette-coloured) pixels: the shapes are few pixels
    entity_crop_prob: float = 0.8  # crops centred on the entity (when it has one) this often
    init_logvar: float = -6.0
    init_from: str | None = None  # continue training a saved VAE folder instead of a new random one
    seed: int = 0
    log_every: int = 25


class FrameSource:
    """Random clips (F frames) or single frames of the records of some manifests, decoded by the data pipeline."""

    def __init__(self, config: VAEPretrainConfig):
        records, bad = read_manifests(config.manifests)
        if bad:
            raise ValueError(f"{len(bad)} invalid record(s) in {config.manifests}; first: {bad[0]}")
        if not records:
            raise ValueError(f"no records in {config.manifests}")
        self.records = records
        self.videos = [r for r in records if r.kind == "video"]
        self.data = DataConfig(
            train_manifests=list(config.manifests), height=config.height, width=config.width,
            frames=config.frames, fps=config.fps, num_workers=0,
        )
        self.rng = np.random.default_rng(config.seed)
        self.entity_crop_prob = config.entity_crop_prob

    def batch(self, size: int, frames: int, crop: tuple[int, int] | None = None) -> torch.Tensor:
        """(B, 3, F, H, W) in [-1, 1]; with `crop` (h, w), a random crop of that size of each clip."""
        pool = self.videos if frames > 1 else self.records
        if not pool:
            raise ValueError("the data set has no videos to train the VAE's temporal compression on")
        clips = []
        for _ in range(size):
            record = pool[int(self.rng.integers(len(pool)))]
            if frames == 1 and record.kind == "video":
                # one random frame of a random clip: decode a 1-frame clip at a random start
                decoded = decode_record(record, self.data, self.rng, frames=1)
            else:
                decoded = decode_record(record, self.data, self.rng, frames=frames)
            clip = decoded.frames
            if crop is not None:
                top, left = self._crop_origin(decoded.mask, crop)
                clip = clip[:, top : top + crop[0], left : left + crop[1]]
            clips.append(clip)
        x = torch.from_numpy(np.stack(clips)).permute(0, 4, 1, 2, 3).float()
        return x / 127.5 - 1.0


    def _crop_origin(self, mask: np.ndarray, crop: tuple[int, int]) -> tuple[int, int]:
        """Top-left of a crop: around a random pixel of the entity with probability `entity_crop_prob`."""
        h, w = mask.shape[1:]
        ys, xs = np.nonzero(mask[0])
        if ys.size and self.rng.random() < self.entity_crop_prob:
            k = int(self.rng.integers(ys.size))
            top = int(np.clip(ys[k] - crop[0] // 2 + self.rng.integers(-crop[0] // 4, crop[0] // 4 + 1), 0, h - crop[0]))
            left = int(np.clip(xs[k] - crop[1] // 2 + self.rng.integers(-crop[1] // 4, crop[1] // 4 + 1), 0, w - crop[1]))
            return top, left
        return int(self.rng.integers(0, h - crop[0] + 1)), int(self.rng.integers(0, w - crop[1] + 1))


def new_tiny_vae(seed: int, init_logvar: float):
    torch.manual_seed(seed)
    vae = AutoencoderKLCogVideoX(**TINY_VAE)
    conv = vae.encoder.conv_out.conv
    half = conv.out_channels // 2  # the encoder outputs mean | log-variance
    with torch.no_grad():
        conv.bias[half:] = init_logvar
        conv.weight[half:] *= 0.1
    return vae


def entity_weights(x: torch.Tensor, weight: float) -> torch.Tensor:
    """Per-pixel loss weights (B, 1, F, H, W): `weight` where the pixel is saturated (a palette-coloured shape;
    the synthetic backgrounds are muted), 1 elsewhere."""
    saturation = (x.amax(dim=1, keepdim=True) - x.amin(dim=1, keepdim=True)) * 127.5
    return torch.where(saturation >= 80, torch.full_like(saturation, weight), torch.ones_like(saturation))


def vae_loss(
    vae, x: torch.Tensor, kl_weight: float, generator: torch.Generator, entity_weight: float = 1.0
) -> tuple[torch.Tensor, float]:
    """Weighted L1 + MSE reconstruction of a posterior sample, + KL; also the plain L1 (for logging)."""
    posterior = vae.encode(x).latent_dist
    recon = vae.decode(posterior.sample(generator)).sample
    err = recon - x
    w = entity_weights(x, entity_weight)
    rec = ((err.abs() + err.square()) * w).mean() / w.mean()
    return rec + kl_weight * posterior.kl().mean(), float(err.abs().mean().detach())


@torch.no_grad()
def latent_std(vae, x: torch.Tensor) -> float:
    return float(vae.encode(x).latent_dist.mode().std())


@torch.no_grad()
def reconstruction_error(vae, x: torch.Tensor) -> float:
    """Mean |x - decode(encode(x))| on the 0-255 scale (the posterior's mode)."""
    recon = vae.decode(vae.encode(x).latent_dist.mode()).sample.clamp(-1, 1)
    return float((recon - x).abs().mean() * 127.5)


def pretrain_vae(config: VAEPretrainConfig, progress=None) -> Path:
    """Train, set `scaling_factor`, save a diffusers folder to `config.out_dir`; returns it."""
    torch.manual_seed(config.seed)
    source = FrameSource(config)
    if config.init_from:
        vae = AutoencoderKLCogVideoX.from_pretrained(config.init_from)
    else:
        vae = new_tiny_vae(config.seed, config.init_logvar)
    vae.train()
    optimizer = torch.optim.AdamW(vae.parameters(), lr=config.lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / 20) * (0.1 + 0.9 * max(0.0, 1 - s / config.steps))
    )
    generator = torch.Generator().manual_seed(config.seed)
    start = time.perf_counter()
    for step in range(config.steps):
        video = config.video_every > 0 and step % config.video_every == config.video_every - 1
        if video:
            x = source.batch(config.video_batch, config.frames, config.crop)
        else:
            x = source.batch(config.image_batch, 1, config.crop)
        loss, l1 = vae_loss(vae, x, config.kl_weight, generator, config.entity_weight)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        if progress is not None and (step % config.log_every == 0 or step == config.steps - 1):
            progress(f"vae step {step + 1}/{config.steps}: L1 {l1 * 127.5:.1f}/255 ({time.perf_counter() - start:.0f} s)")
    vae.eval()
    held_out = FrameSource(VAEPretrainConfig(**{**asdict(config), "seed": config.seed + 1}))
    images = held_out.batch(16, 1)
    clips = held_out.batch(2, config.frames)
    std = latent_std(vae, images)
    vae.register_to_config(scaling_factor=1.0 / std)
    out = Path(config.out_dir)
    vae.save_pretrained(out, safe_serialization=True)
    summary = {
        "image_l1": reconstruction_error(vae, images),
        "video_l1": reconstruction_error(vae, clips),
        "latent_std": std,
        "seconds": time.perf_counter() - start,
    }
    if progress is not None:
        progress(
            f"vae: held-out L1 {summary['image_l1']:.1f}/255 (images), {summary['video_l1']:.1f}/255 (clips); "
            f"scaling_factor {1 / std:.3f}; wrote {out}"
        )
    return out


def install_vae(vae_dir: str | Path, model_dir: str | Path) -> None:
    """Replace the VAE of a diffusers CogVideoX folder by the pretrained one."""
    install_component(vae_dir, model_dir, "vae")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python scripts/vae_pretrain.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, nargs="+", help="train manifest(s) of the synthetic data set")
    p.add_argument("--out", required=True, help="output folder (a diffusers AutoencoderKLCogVideoX)")
    p.add_argument("--crop", default="32x48", help="HxW random crops to train on, or 'none' for whole frames")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--init-from", default=None, help="a saved VAE folder to continue training (default: new)")
    defaults = VAEPretrainConfig()
    for name in ("steps", "image_batch", "video_batch", "video_every", "frames", "height", "width", "seed"):
        p.add_argument(f"--{name.replace('_', '-')}", type=int, default=getattr(defaults, name))
    for name in ("lr", "kl_weight", "fps"):
        p.add_argument(f"--{name.replace('_', '-')}", type=float, default=getattr(defaults, name))
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    crop = None if args.crop.lower() == "none" else tuple(int(v) for v in args.crop.lower().split("x"))
    config = VAEPretrainConfig(
        crop=crop,
        manifests=args.data, out_dir=args.out, steps=args.steps, image_batch=args.image_batch,
        video_batch=args.video_batch, video_every=args.video_every, frames=args.frames, height=args.height,
        width=args.width, seed=args.seed, lr=args.lr, kl_weight=args.kl_weight, fps=args.fps,
        init_from=args.init_from,
    )
    pretrain_vae(config, progress=logger.info)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
