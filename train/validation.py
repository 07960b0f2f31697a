"""Validation during training: edit held-out eval samples with the current weights, write the videos to
<output_dir>/validation/step-N/ and log them to wandb; where the samples carry synthetic attributes (`vivid data
synth`), also score them (synthetic TA of add / modify edits, colour remnant of deletions) into
validation/step-N/scores.json and wandb."""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from data_loaders.errors import BadSample
from data_loaders.format import Record
from data_loaders.loader import EvalSample, decode_eval_samples, read_eval_records
from train.caption_embeddings import CaptionEmbeddings
from train.config import TrainConfig
from train.models import on_device
from vivid.io.atomic import write_json_atomic
from vivid.io.video import write_video
from vivid.metrics import color_remnant, synthetic_alignment
from vivid.model.transformer import unwrap
from vivid.pipeline import VIVIDPipeline

logger = logging.getLogger("vivid.train")


@dataclass
class EvalSet:
    """The eval manifests' records, read once per run, and their first `validation.num_samples` decoded samples
    (decoded at the first validation, then kept)."""

    records: list[Record]
    bad: list[BadSample]
    samples: list[EvalSample] | None = None

    def decoded(self, config: TrainConfig) -> list[EvalSample]:
        if self.samples is None:
            self.samples = decode_eval_samples(self.records, self.bad, config.data,
                                               limit=config.validation.num_samples, strict=False)
        return self.samples


@torch.no_grad()
def validate(components: dict, transformer: torch.nn.Module, config: TrainConfig, step: int, device: torch.device,
             wandb_run: Any, store: CaptionEmbeddings | None = None, eval_set: EvalSet | None = None
             ) -> dict[str, float]:
    """Edit held-out eval samples with the current weights; videos to <output_dir>/validation/step-N/ and wandb.
    `eval_set`: the eval records as the run read them (default: read from `data.eval_manifests` now). With
    `store`, the prompts' embeddings come from it (no T5 is loaded then). Returns the synthetic scores
    (`synthetic_score`; empty where no sample has synthetic attributes)."""
    if eval_set is None:
        eval_set = EvalSet(*read_eval_records(config.data.eval_manifests, config.data, what="validation"))
    samples = eval_set.decoded(config)
    if not samples:
        logger.warning("validation at step %d: no eval sample could be decoded from %s", step, config.data.eval_manifests)
        return {}
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
    logged, rows = {}, []
    with contextlib.ExitStack() as stack:
        stack.enter_context(on_device(pipe.vae, device, config.offload_encoders))
        if pipe.text_encoder is not None:
            stack.enter_context(on_device(pipe.text_encoder, device, config.offload_encoders))
        for i, sample in enumerate(samples):
            path, frames = _validate_one(pipe, sample, i, config, device, out_dir, store)
            logged[f"validation/{i:02d}"] = path
            row = synthetic_score(sample, frames)
            if row is not None:
                rows.append(row)
    if was_training:
        pipe.transformer.train()
    scores = summarize_synthetic(rows)
    if scores:
        write_json_atomic(out_dir / "scores.json", dict(step=step, **scores, samples=rows))
    if wandb_run is not None:
        import wandb

        wandb_run.log({**{k: wandb.Video(str(p), format="mp4") for k, p in logged.items()},
                       **{f"validation/{k}": v for k, v in scores.items() if v is not None}}, step=step)
    logger.info("validation at step %d: %d videos in %s%s", step, len(logged), out_dir,
                "".join(f", {k} {v:.3f}" for k, v in scores.items() if v is not None))
    return scores


def synthetic_score(sample: Any, frames: Any) -> dict[str, Any] | None:
    """The synthetic metric of one edited eval sample: whether add / modify drew the caption's colour and shape
    (`match`), or how much of a deleted shape's colour is left (`remnant`); None without synthetic attributes."""
    color = sample.attributes.get("color")
    if color is None:
        return None
    row: dict[str, Any] = {"id": sample.id, "task": sample.task}
    if sample.task == "delete":
        row["remnant"] = color_remnant(frames, sample.mask, color)
    else:
        row["match"] = synthetic_alignment(frames, sample.mask, color, sample.attributes.get("shape"))["match"]
    return row


def summarize_synthetic(rows: list[dict[str, Any]]) -> dict[str, float | None]:
    """synthetic_ta_add, synthetic_ta_modify (fraction matched) and remnant (mean) over the rows that have them."""
    out: dict[str, float | None] = {}
    for task in ("add", "modify"):
        found = [r["match"] for r in rows if r["task"] == task]
        if found:
            out[f"synthetic_ta_{task}"] = sum(found) / len(found)
    remnants = [r["remnant"] for r in rows if r["task"] == "delete"]
    if remnants:
        out["remnant"] = sum(remnants) / len(remnants)
    return out


def _validate_one(pipe, sample, i: int, config: TrainConfig, device, out_dir: Path,
                  store: CaptionEmbeddings | None = None) -> tuple[Path, Any]:
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
    return path, frames

