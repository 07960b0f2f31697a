"""The VIVID trainer: setup, then the training loop, top to bottom.

    from train.config import load_config
    from train.trainer import train
    result = train(load_config("configs/tiny.yaml", ["optim.max_steps=10"]))

Run it with `accelerate launch -m train --config CONFIG` (or `vivid train`, or `./launch.sh`). Beside it:
`distributed.py` (the accelerator, ranks, DeepSpeed), `models.py` (loading and saving the models), `optim.py`
(optimizer, schedule, the optimizer step), `step.py` (the step on one micro-batch: encoding and the loss),
`tracking.py` (metrics.jsonl, wandb), `validation.py` (editing held-out samples) and `checkpoint.py`
(checkpoints and resume).
"""

from __future__ import annotations

import functools
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate.utils import set_seed
from tqdm.auto import tqdm

from data_loaders.loader import build_train_loader
from train import checkpoint as ckpt
from train.caption_embeddings import CaptionEmbeddings, check_caption_store, check_captions_stored
from train.config import TrainConfig
from train.distributed import (
    all_reduce, any_rank, configure_deepspeed, distributed_rank_world, is_zero3, make_accelerator,
    warn_if_deepspeed_without_gpu,
)
from train.models import load_models, resolve_pretrained, save_weights, weights_config
from train.optim import build_lr_scheduler, build_optimizer, optimizer_step
from train.step import LRUCache, TrainStep
from train.tracking import METRICS_NAME, MetricsWriter, SampleIdLog, log_cache_use, start_wandb, step_record
from train.validation import validate
from vivid.io.atomic import write_json_atomic

logger = logging.getLogger("vivid.train")


class NonFiniteLossError(RuntimeError):
    """Too many non-finite losses in a row; the last good checkpoint is kept."""


@dataclass
class TrainResult:
    step: int  # the last optimizer step done
    loss: float | None  # its loss (mean over ranks and accumulation)
    checkpoint: Path | None  # the final checkpoint
    output_dir: Path


def step_generator(config: TrainConfig, step: int, micro: int, rank: int, world: int, device: torch.device):
    """A generator seeded from (seed, step, micro-batch, rank) alone: timesteps, noise and VAE posterior samples
    are a function of the step, so a resumed run draws exactly what an uninterrupted one would."""
    index = (step * config.optim.gradient_accumulation_steps + micro) * world + rank
    return torch.Generator(device=device).manual_seed(config.seed * 1_000_003 + index)


def deepspeed_nonfinite_error(config: TrainConfig, step: int, micro: int) -> NonFiniteLossError:
    """Under DeepSpeed with accumulation a non-finite micro-batch loss stops the run (it cannot be skipped)."""
    accumulation = config.optim.gradient_accumulation_steps
    return NonFiniteLossError(
        f"step {step + 1}, micro-batch {micro}: non-finite loss under DeepSpeed with "
        f"optim.gradient_accumulation_steps={accumulation}. DeepSpeed accumulates "
        "inside its engine and steps at its own boundary, so one micro-batch cannot be skipped "
        "without shifting that boundary; stopped. Last good checkpoint: "
        f"{ckpt.latest_checkpoint(config.output_dir) or 'none'}. Lower optim.lr or check the data; with "
        "optim.gradient_accumulation_steps=1 non-finite steps are skipped instead."
    )


def train(config: TrainConfig, resume: str | None = None, overwrite: bool = False) -> TrainResult:
    """Train VIVID as `config` says; `resume` = "latest" or a checkpoint folder.

    A fresh run (no `resume`) into an output folder that holds an earlier run (checkpoints or metrics) raises
    `PreviousRunError` before any model work, unless `overwrite`, which moves the earlier run's files into
    `<output_dir>/previous-<n>/` (renames only; nothing is deleted).
    """
    output_dir, o = config.output_dir, config.optim
    if resume and overwrite:
        raise ValueError("resume continues the run in the output folder and overwrite moves it aside: pass one")
    if not resume and not overwrite:  # every rank checks, before the process group (so before any rank moves)
        ckpt.refuse_previous_run(output_dir)
    store = CaptionEmbeddings(config.caption_embeddings) if config.caption_embeddings else None

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
    use_deepspeed, zero3 = ckpt.is_deepspeed(accelerator), is_zero3(accelerator)

    # ---- models (VAE and T5 frozen, the transformer made VIVID), optimizer and schedule, data
    pretrained = resolve_pretrained(config, rank)
    models = load_models(config, accelerator, pretrained, without_t5=store is not None, is_main=is_main)
    if store is not None:
        check_caption_store(store, pretrained, models.dtype, models.max_text_len,
                            models.spec.text_embedding_dim(models.transformer))
    params = [p for p in models.transformer.parameters() if p.requires_grad]
    optimizer = build_optimizer(params, config, device)
    lr_scheduler = build_lr_scheduler(optimizer, config)
    if use_deepspeed:
        configure_deepspeed(accelerator, config, is_main)
    transformer, optimizer = accelerator.prepare(models.transformer, optimizer)
    training_objects = dict(model=transformer, optimizer=optimizer, scheduler=lr_scheduler)
    objective = config.model.objective
    write_weights = functools.partial(save_weights, transformer, params, config=weights_config(config, pretrained),
                                      is_main=is_main, zero3=zero3, objective=objective)
    weights_dir = ckpt.BASE_DIR if objective == "text_to_video" else ckpt.WEIGHTS_DIR
    loader = build_train_loader(config.data, rank=rank, world_size=world)
    if store is not None:
        check_captions_stored(store, loader.records, config)

    # ---- resume, tracking, caches
    start_step, state, bad_offset = 0, {}, 0
    if resume:
        start_step, state, bad_offset = ckpt.resume_run(accelerator, resume, output_dir, rank, world, loader,
                                                        **training_objects)

    def skipped_samples_here() -> int:  # bad samples this rank skipped in the whole run
        return bad_offset + sum(loader.bad_sample_counts().values())

    metrics = MetricsWriter(output_dir / METRICS_NAME, is_main, start_step if resume else None)
    wandb_run = start_wandb(config, state.get("wandb_run_id")) if is_main else None
    sample_ids = SampleIdLog(config, rank, resumed=bool(resume))
    use_text_cache = config.cache_text_embeddings and store is None
    text_cache = LRUCache(config.text_cache_max_items) if use_text_cache else None
    latent_cache = LRUCache(config.vae_cache_max_items) if config.cache_vae_latents else None
    train_step = TrainStep(  # the step on one micro-batch: encode (VAE; T5 or the caption store), the spec's loss
        models.spec, models.vae, models.scheduler, device, models.tokenizer, models.text_encoder,
        models.max_text_len, captions=store.get if store is not None else None, latent_cache=latent_cache,
        text_cache=text_cache, mask_loss_weight=config.mask_loss_weight, offload_encoders=config.offload_encoders,
        conditioned=objective == "edit",
    )

    # ---- the loop: one iteration = one optimizer step over gradient_accumulation_steps micro-batches
    data = iter(loader)
    step, last_loss, last_checkpoint = start_step, state.get("last_loss"), None
    skipped_steps = int(state.get("skipped_steps", 0))
    bad_in_row = 0
    bar = tqdm(total=o.max_steps, initial=start_step, desc="train", disable=not is_main, dynamic_ncols=True)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    while step < o.max_steps:
        t0 = time.perf_counter()
        losses, samples, finite = [], 0, True
        for micro in range(o.gradient_accumulation_steps):
            batch = next(data)
            samples += len(batch["id"])
            sample_ids.write(step + 1, micro, batch)
            generator = step_generator(config, step, micro, rank, world, device)
            with accelerator.accumulate(transformer):
                loss = train_step.loss(transformer, batch, generator, accelerator.autocast())
                # decided before backward, on every rank alike (or the gradient all-reduce of the others would hang)
                ok = not any_rank(not bool(torch.isfinite(loss.detach())), device)
                if not ok and use_deepspeed and o.gradient_accumulation_steps > 1:
                    bar.close()
                    raise deepspeed_nonfinite_error(config, step, micro)
                if ok and finite:
                    # under DeepSpeed this also clips and steps (or skips on overflow) at the boundary
                    accelerator.backward(loss)
                finite = finite and ok
                losses.append(loss.detach().float())
        lr = lr_scheduler.get_last_lr()[0]  # the learning rate this step uses (read before the scheduler steps)
        finite, grad_norm = optimizer_step(accelerator, transformer, optimizer, lr_scheduler, params,
                                           o.max_grad_norm, finite, step)
        step += 1

        # ---- what the step did: the mean loss and counts over all ranks, metrics.jsonl, wandb
        mean_loss = float(all_reduce(torch.stack(losses).mean().reshape(1).to(device)).item() / world)
        counts = all_reduce(torch.tensor([samples, skipped_samples_here()], dtype=torch.int64, device=device))
        global_samples, skipped_samples = int(counts[0]), int(counts[1])
        elapsed = time.perf_counter() - t0
        if finite:
            bad_in_row, last_loss = 0, mean_loss
        else:
            bad_in_row += 1
            skipped_steps += 1
            logger.warning("step %d: non-finite loss or gradient (%s); step skipped (%d in a row)",
                           step, mean_loss, bad_in_row)
        record = step_record(step, mean_loss, lr, grad_norm, global_samples, elapsed, batch.get("kind"), finite,
                             skipped_steps, skipped_samples)
        metrics.write(record)
        bar.update(1)
        if step % config.logging.log_every == 0 or step == o.max_steps:
            bar.set_postfix(loss=f"{mean_loss:.4f}", lr=f"{lr:.2e}", sps=f"{record['samples_per_s']:.2f}")
            if wandb_run is not None:
                wandb_run.log({f"train/{k}": v for k, v in record.items() if isinstance(v, (int, float))}, step=step)
        if bad_in_row >= config.max_bad_steps:
            bar.close()
            raise NonFiniteLossError(
                f"{bad_in_row} non-finite losses in a row (max_bad_steps={config.max_bad_steps}) at step {step}; "
                f"stopped. Last good checkpoint: {ckpt.latest_checkpoint(output_dir) or 'none'}. Lower optim.lr or "
                "check the data."
            )

        # ---- checkpoint, validation, the time limit (decided alike on every rank: all must save and stop together)
        out_of_time = bool(o.max_minutes) and any_rank(time.perf_counter() - started >= o.max_minutes * 60, device)
        every = config.checkpoint.every_n_steps
        if finite and ((every and step % every == 0) or step == o.max_steps or out_of_time):
            trainer_state = dict(
                last_loss=last_loss, skipped_steps=skipped_steps, skipped_samples=skipped_samples,
                wandb_run_id=wandb_run.id if wandb_run is not None else state.get("wandb_run_id"),
                config=config.to_dict(),
            )
            last_checkpoint = ckpt.save_checkpoint(
                accelerator, output_dir, step, rank, world, trainer_state, loader.state_dict(), write_weights,
                keep_last=config.checkpoint.keep_last, rank_state={"skipped_samples": skipped_samples_here()},
                weights_dir=weights_dir, **training_objects,
            )
        if config.validation.every_n_steps and step % config.validation.every_n_steps == 0:
            if is_main or zero3:  # under ZeRO-3 every rank takes part in the forward passes
                validate(models.components, transformer, config, step, device, wandb_run if is_main else None, store)
            ckpt.barrier()
        if out_of_time and step < o.max_steps:
            if is_main:
                logger.warning("optim.max_minutes=%g reached: stopped at step %d of %d (resume with a larger limit "
                               "to go on)", o.max_minutes, step, o.max_steps)
            break

    bar.close()
    if latent_cache is not None and is_main:
        log_cache_use(latent_cache)
    sample_ids.close()
    if wandb_run is not None:
        wandb_run.finish()
    if last_checkpoint is None:
        last_checkpoint = ckpt.latest_checkpoint(output_dir)
    accelerator.end_training()
    return TrainResult(step=step, loss=last_loss, checkpoint=last_checkpoint, output_dir=output_dir)
