"""A training run set up for the trainer's loop (`train.trainer.train`): processes and the run folder, the models,
optimizer and schedule, the data (each manifest read once), resume, tracking and the step on a micro-batch; and
what the loop does besides stepping: checkpoints, validation and the end of the run."""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate.utils import set_seed

from data_loaders.errors import DataError
from data_loaders.loader import TrainLoader, build_train_loader, read_eval_records
from train import checkpoint as ckpt
from train.caption_embeddings import CaptionEmbeddings, check_caption_store, check_captions_stored
from train.config import TrainConfig
from train.distributed import (
    any_rank, configure_deepspeed, distributed_rank_world, is_zero3, make_accelerator, warn_if_deepspeed_without_gpu,
)
from train.models import (
    Models,
    load_models,
    refuse_inference_only_base,
    resolve_pretrained,
    save_weights,
    weights_config,
)
from train.optim import build_lr_scheduler, build_optimizer
from train.step import LRUCache, TrainStep
from train.tracking import METRICS_NAME, MetricsWriter, SampleIdLog, log_cache_use, start_wandb
from train.validation import EvalSet, validate
from vivid.io.atomic import write_json_atomic

logger = logging.getLogger("vivid.train")


@dataclass
class TrainingRun:
    """Everything the loop uses, set up by `start_run`."""

    config: TrainConfig
    accelerator: Any
    rank: int
    world: int
    models: Models
    pretrained: str  # the base model's path (`tiny`: the folder it was written to)
    params: list[torch.nn.Parameter]  # the trainable parameters
    objects: ckpt.TrainingObjects  # model (as prepared), optimizer, LR scheduler
    loader: TrainLoader
    train_step: TrainStep
    store: CaptionEmbeddings | None  # precomputed caption embeddings, if the config names them
    eval_set: EvalSet | None  # the held-out samples validation edits (None without validation)
    metrics: MetricsWriter
    sample_ids: SampleIdLog
    wandb_run: Any
    latent_cache: LRUCache | None
    start_step: int = 0
    state: dict[str, Any] = field(default_factory=dict)  # the resumed checkpoint's trainer state ({} if fresh)
    bad_offset: int = 0  # bad samples skipped before the resumed checkpoint, beyond what the loader counts

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def device(self) -> torch.device:
        return self.accelerator.device

    @property
    def use_deepspeed(self) -> bool:
        return ckpt.is_deepspeed(self.accelerator)

    def skipped_samples_here(self) -> int:
        """Bad samples this rank skipped in the whole run."""
        return self.bad_offset + sum(self.loader.bad_sample_counts().values())

    def save_checkpoint(self, step: int, trainer_state: dict[str, Any]) -> Path:
        """checkpoint-<step> (collective): states, this rank's loader position and bookkeeping, the weights."""
        config, zero3 = self.config, is_zero3(self.accelerator)
        objective = config.model.objective
        write_weights = functools.partial(
            save_weights, self.objects.model, self.params, config=weights_config(config, self.pretrained),
            is_main=self.is_main, zero3=zero3, objective=objective,
        )
        return ckpt.save_checkpoint(
            self.accelerator, config.output_dir, step, self.rank, self.world, trainer_state,
            self.loader.state_dict(), write_weights, keep_last=config.checkpoint.keep_last,
            rank_state={"skipped_samples": self.skipped_samples_here()}, objects=self.objects,
            weights_dir=ckpt.BASE_DIR if objective == "text_to_video" else ckpt.WEIGHTS_DIR,
        )

    def validate(self, step: int) -> None:
        """Edit the held-out samples with the current weights (collective under ZeRO-3)."""
        if self.is_main or is_zero3(self.accelerator):  # under ZeRO-3 every rank takes part in the forward passes
            validate(self.models.components, self.objects.model, self.config, step, self.device,
                     self.wandb_run if self.is_main else None, self.store, self.eval_set)
        ckpt.barrier()

    def finish(self) -> None:
        if self.latent_cache is not None and self.is_main:
            log_cache_use(self.latent_cache)
        self.sample_ids.close()
        if self.wandb_run is not None:
            self.wandb_run.finish()
        self.accelerator.end_training()


def start_run(config: TrainConfig, resume: str | None, overwrite: bool) -> TrainingRun:
    """Processes, the run folder (`ckpt.check_run_folder`'s rule), models, optimizer, data, resume, tracking."""
    output_dir = config.output_dir
    refuse_inference_only_base(config)  # VACE: one line, before the run folder is touched
    ckpt.check_run_folder(output_dir, resume, overwrite)  # every rank, before the process group
    store = CaptionEmbeddings(config.caption_embeddings) if config.caption_embeddings else None
    resume_from = ckpt.choose_resume(resume, output_dir, config.to_dict()) if resume else None  # before model work

    # ---- processes and the run folder
    accelerator = make_accelerator(config)
    rank, world = distributed_rank_world(accelerator)
    is_main, device = rank == 0, accelerator.device
    set_seed(config.seed + rank)
    if is_main:
        if overwrite:
            ckpt.move_previous_run_aside(output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(output_dir / "config.json", config.to_dict(), fsync=True)
    ckpt.barrier()  # no rank reads the run folder before the previous run is out of the way
    logging.basicConfig(level=logging.INFO, format=f"[rank {rank}] %(levelname)s %(name)s: %(message)s")
    if is_main:
        warn_if_deepspeed_without_gpu(accelerator)

    # ---- models (VAE and T5 frozen, the transformer made VIVID), optimizer and schedule, data
    pretrained = resolve_pretrained(config, rank)
    models = load_models(config, accelerator, pretrained, without_t5=store is not None, is_main=is_main)
    if store is not None:
        check_caption_store(store, pretrained, models.dtype, models.max_text_len,
                            models.spec.text_embedding_dim(models.transformer))
    params = [p for p in models.transformer.parameters() if p.requires_grad]
    optimizer = build_optimizer(params, config, device)
    lr_scheduler = build_lr_scheduler(optimizer, config)
    if ckpt.is_deepspeed(accelerator):
        configure_deepspeed(accelerator, config, is_main)
    transformer, optimizer = accelerator.prepare(models.transformer, optimizer)
    objects = ckpt.TrainingObjects(model=transformer, optimizer=optimizer, scheduler=lr_scheduler)
    loader = build_train_loader(config.data, rank=rank, world_size=world)
    unfillable = loader.unfillable_slot()  # every rank tries its own records; all stop together
    if any_rank(unfillable is not None, device):
        raise DataError(unfillable or f"rank {rank}: another rank cannot fill a slot of the batch mix (see its log)")
    eval_set = None
    if config.validation.every_n_steps:
        eval_set = EvalSet(*read_eval_records(config.data.eval_manifests, config.data, what="validation"))
    if store is not None:
        check_captions_stored(store, loader.records, eval_set.records if eval_set is not None else [])

    # ---- resume, tracking, caches
    start_step, state, bad_offset = 0, {}, 0
    if resume:
        start_step, state, bad_offset = ckpt.resume_run(accelerator, resume_from, output_dir, rank, world, loader,
                                                        objects=objects)
    use_text_cache = config.cache_text_embeddings and store is None
    text_cache = LRUCache(config.text_cache_max_items) if use_text_cache else None
    latent_cache = LRUCache(config.vae_cache_max_items) if config.cache_vae_latents else None
    train_step = TrainStep(  # the step on one micro-batch: encode (VAE; T5 or the caption store), the spec's loss
        models.spec, models.vae, models.scheduler, device, models.tokenizer, models.text_encoder,
        models.max_text_len, captions=store.get if store is not None else None, latent_cache=latent_cache,
        text_cache=text_cache, mask_loss_weight=config.mask_loss_weight, offload_encoders=config.offload_encoders,
        conditioned=config.model.objective == "edit", joint_keyframe_prob=config.joint_keyframe_prob,
        joint_keyframes=config.joint_keyframes,
    )
    return TrainingRun(
        config=config, accelerator=accelerator, rank=rank, world=world, models=models, pretrained=pretrained,
        params=params,
        objects=objects, loader=loader, train_step=train_step, store=store, eval_set=eval_set,
        metrics=MetricsWriter(output_dir / METRICS_NAME, is_main, start_step if resume else None),
        sample_ids=SampleIdLog(config, rank, resumed=bool(resume)),
        wandb_run=start_wandb(config, state.get("wandb_run_id")) if is_main else None,
        latent_cache=latent_cache, start_step=start_step, state=state, bad_offset=bad_offset,
    )
