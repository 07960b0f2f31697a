"""The VIVID trainer: setup, then the training loop, top to bottom.

    from train.config import load_config
    from train.trainer import train
    result = train(load_config("configs/tiny.yaml", ["optim.max_steps=10"]))

Run it with `accelerate launch -m train --config CONFIG` (or `vivid train`, or `./launch.sh`). Beside it:
`distributed.py` (the accelerator, ranks, DeepSpeed), `models.py` (loading and saving the models), `optim.py`
(optimizer, schedule, the optimizer step), `step.py` (the step on one micro-batch: encoding and the loss),
`tracking.py` (metrics.jsonl, wandb), `validation.py` (editing held-out samples), `checkpoint.py`
(checkpoints and resume) and `run.py` (all of these set up for the loop, before its first step).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from train import checkpoint as ckpt
from train.config import TrainConfig
from train.distributed import all_reduce, any_rank
from train.optim import optimizer_step
from train.run import start_run
from train.tracking import step_record

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
    """Train VIVID as `config` says; `resume` = "latest" or a checkpoint folder; `overwrite`: start afresh in a
    folder holding an earlier run, moved aside (the run folder's rule: `train.checkpoint.check_run_folder`)."""
    run = start_run(config, resume, overwrite)  # processes, run folder, models, optimizer, data, resume, tracking
    o, device, world, accelerator = config.optim, run.device, run.world, run.accelerator
    transformer, optimizer, lr_scheduler = run.objects.model, run.objects.optimizer, run.objects.scheduler

    # ---- the loop: one iteration = one optimizer step over gradient_accumulation_steps micro-batches
    data = iter(run.loader)
    step, last_loss, last_checkpoint = run.start_step, run.state.get("last_loss"), None
    skipped_steps = int(run.state.get("skipped_steps", 0))
    bad_in_row = 0
    bar = tqdm(total=o.max_steps, initial=step, desc="train", disable=not run.is_main, dynamic_ncols=True)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    while step < o.max_steps:
        t0 = time.perf_counter()
        losses, samples, finite = [], 0, True
        for micro in range(o.gradient_accumulation_steps):
            batch = next(data)
            samples += len(batch["id"])
            run.sample_ids.write(step + 1, micro, batch)
            generator = step_generator(config, step, micro, run.rank, world, device)
            with accelerator.accumulate(transformer):
                loss = run.train_step.loss(transformer, batch, generator, accelerator.autocast())
                # decided before backward, on every rank alike (or the gradient all-reduce of the others would hang)
                ok = not any_rank(not bool(torch.isfinite(loss.detach())), device)
                if not ok and run.use_deepspeed and o.gradient_accumulation_steps > 1:
                    bar.close()
                    raise deepspeed_nonfinite_error(config, step, micro)
                if ok and finite:
                    # under DeepSpeed this also clips and steps (or skips on overflow) at the boundary
                    accelerator.backward(loss)
                finite = finite and ok
                losses.append(loss.detach().float())
        lr = lr_scheduler.get_last_lr()[0]  # the learning rate this step uses (read before the scheduler steps)
        finite, grad_norm = optimizer_step(accelerator, transformer, optimizer, lr_scheduler, run.params,
                                           o.max_grad_norm, finite, step)
        step += 1

        # ---- what the step did: the mean loss and counts over all ranks, metrics.jsonl, wandb
        mean_loss = float(all_reduce(torch.stack(losses).mean().reshape(1).to(device)).item() / world)
        counts = all_reduce(torch.tensor([samples, run.skipped_samples_here()], dtype=torch.int64, device=device))
        global_samples, skipped_samples = int(counts[0]), int(counts[1])
        if finite:
            bad_in_row, last_loss = 0, mean_loss
        else:
            bad_in_row += 1
            skipped_steps += 1
            logger.warning("step %d: non-finite loss or gradient (%s); step skipped (%d in a row)",
                           step, mean_loss, bad_in_row)
        record = step_record(step, mean_loss, lr, grad_norm, global_samples, time.perf_counter() - t0,
                             batch.get("kind"), finite, skipped_steps, skipped_samples)
        run.metrics.write(record)
        bar.update(1)
        if step % config.logging.log_every == 0 or step == o.max_steps:
            bar.set_postfix(loss=f"{mean_loss:.4f}", lr=f"{lr:.2e}", sps=f"{record['samples_per_s']:.2f}")
            if run.wandb_run is not None:
                run.wandb_run.log({f"train/{k}": v for k, v in record.items() if isinstance(v, (int, float))},
                                  step=step)
        if bad_in_row >= config.max_bad_steps:
            bar.close()
            raise NonFiniteLossError(
                f"{bad_in_row} non-finite losses in a row (max_bad_steps={config.max_bad_steps}) at step {step}; "
                f"stopped. Last good checkpoint: {ckpt.latest_checkpoint(config.output_dir) or 'none'}. Lower "
                "optim.lr or check the data."
            )

        # ---- checkpoint, validation, the time limit (decided alike on every rank: all must save and stop together)
        out_of_time = bool(o.max_minutes) and any_rank(time.perf_counter() - started >= o.max_minutes * 60, device)
        every = config.checkpoint.every_n_steps
        if finite and ((every and step % every == 0) or step == o.max_steps or out_of_time):
            wandb_id = run.wandb_run.id if run.wandb_run is not None else run.state.get("wandb_run_id")
            last_checkpoint = run.save_checkpoint(step, dict(
                last_loss=last_loss, skipped_steps=skipped_steps, skipped_samples=skipped_samples,
                wandb_run_id=wandb_id, config=config.to_dict(),
            ))
        if config.validation.every_n_steps and step % config.validation.every_n_steps == 0:
            run.validate(step)
        if out_of_time and step < o.max_steps:
            if run.is_main:
                logger.warning("optim.max_minutes=%g reached: stopped at step %d of %d (resume with a larger limit "
                               "to go on)", o.max_minutes, step, o.max_steps)
            break

    bar.close()
    run.finish()
    last_checkpoint = last_checkpoint or ckpt.latest_checkpoint(config.output_dir)
    return TrainResult(step=step, loss=last_loss, checkpoint=last_checkpoint, output_dir=config.output_dir)
