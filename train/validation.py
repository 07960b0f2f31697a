"""Validation during training: edit held-out eval samples with the current weights, write the videos to
<output_dir>/validation/step-N/ and log them to wandb."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any

import torch

from data_loaders.loader import build_eval_samples
from train.caption_embeddings import CaptionEmbeddings
from train.config import TrainConfig
from train.models import on_device
from vivid.io.video import write_video
from vivid.model.transformer import unwrap
from vivid.pipeline import VIVIDPipeline

logger = logging.getLogger("vivid.train")


@torch.no_grad()
def validate(components: dict, transformer: torch.nn.Module, config: TrainConfig, step: int, device: torch.device,
             wandb_run: Any, store: CaptionEmbeddings | None = None) -> None:
    """Edit held-out eval samples with the current weights; videos to <output_dir>/validation/step-N/ and wandb.
    With `store`, the prompts' embeddings come from it (no T5 is loaded then)."""
    if not config.data.eval_manifests:
        raise ValueError("validation.every_n_steps > 0 needs data.eval_manifests (held-out samples to edit)")
    samples = build_eval_samples(config.data.eval_manifests, config.data, limit=config.validation.num_samples,
                                 strict=False)
    if not samples:
        logger.warning("validation at step %d: no eval sample could be decoded from %s", step, config.data.eval_manifests)
        return
    pipe = VIVIDPipeline(
        tokenizer=components["tokenizer"],
        text_encoder=components["text_encoder"],
        vae=components["vae"],
        transformer=unwrap(transformer),
        scheduler=components["scheduler"],
    )
    pipe.set_progress_bar_config(disable=True)
    out_dir = config.output_dir / "validation" / f"step-{step}"
    out_dir.mkdir(parents=True, exist_ok=True)
    was_training = pipe.transformer.training
    pipe.transformer.eval()
    logged = {}
    with contextlib.ExitStack() as stack:
        stack.enter_context(on_device(pipe.vae, device, config.offload_encoders))
        if pipe.text_encoder is not None:
            stack.enter_context(on_device(pipe.text_encoder, device, config.offload_encoders))
        for i, sample in enumerate(samples):
            logged.update(_validate_one(pipe, sample, i, config, device, out_dir, store))
    if was_training:
        pipe.transformer.train()
    if wandb_run is not None:
        import wandb

        wandb_run.log({k: wandb.Video(str(p), format="mp4") for k, p in logged.items()}, step=step)
    logger.info("validation at step %d: %d videos in %s", step, len(logged), out_dir)


def _validate_one(pipe, sample, i: int, config: TrainConfig, device, out_dir: Path,
                  store: CaptionEmbeddings | None = None) -> dict[str, Path]:
    generator = torch.Generator(device=device).manual_seed(config.validation.seed + i)
    height, width = sample.video.shape[1:3]  # decoded at its training size (bucket): edit at that size
    embeds = {}
    if store is not None:
        embeds = dict(prompt_embeds=store.get([sample.caption], device), negative_prompt_embeds=store.get([""], device))
    frames = pipe(
        video=sample.video, mask=sample.mask, prompt=sample.caption, task=sample.task,
        num_inference_steps=config.validation.steps, guidance_scale=config.validation.guidance,
        generator=generator, output_type="uint8", height=height, width=width, **embeds,
    ).frames[0]
    path = out_dir / f"{i:02d}-{sample.task}-{sample.id}.mp4"
    write_video(path, frames, fps=sample.fps)
    return {f"validation/{i:02d}": path}

