"""Processes and DeepSpeed for the trainer: the accelerator, rank and world size, all-reduce, DeepSpeed probes.

Every decision that changes what the ranks do next (skip a step, stop on time) is all-reduced here first, so
all ranks take it alike; a rank that went its own way would hang the others' next collective.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from typing import Any

import torch
import torch.distributed as dist
from accelerate import Accelerator
from accelerate.utils import DistributedType, InitProcessGroupKwargs, ProjectConfiguration
from transformers.integrations import unset_hf_deepspeed_config

from train.checkpoint import is_deepspeed
from train.config import TrainConfig

logger = logging.getLogger("vivid.train")


def deepspeed_requested() -> bool:
    """Whether `accelerate launch` was given a DeepSpeed config (it sets ACCELERATE_USE_DEEPSPEED=true)."""
    return os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true"


def deepspeed_on_cpu() -> bool:
    """A DeepSpeed launch on a machine without a GPU: DeepSpeed then runs on its CPU accelerator (DS_ACCELERATOR=cpu
    or its auto-detection), over gloo."""
    return deepspeed_requested() and not torch.cuda.is_available()


def make_accelerator(config: TrainConfig) -> Accelerator:
    """The run's accelerator (GPU, CPU or DeepSpeed, as the launch says)."""
    return Accelerator(
        # without a GPU, cpu=True is what makes accelerate see a torchrun launch as MULTI_CPU (gloo) instead of
        # one process per rank with an unused process group; but cpu=True also turns DeepSpeed off, so a DeepSpeed
        # launch keeps cpu=False and DeepSpeed runs on its CPU accelerator (gloo) instead
        cpu=not torch.cuda.is_available() and not deepspeed_requested(),
        mixed_precision=config.mixed_precision,
        gradient_accumulation_steps=config.optim.gradient_accumulation_steps,
        project_config=ProjectConfiguration(project_dir=str(config.output_dir)),
        # DeepSpeed on the CPU: name gloo, or accelerate finds no backend for the CPU and reports one process
        # while DeepSpeed's process group has them all
        kwargs_handlers=[InitProcessGroupKwargs(backend="gloo")] if deepspeed_on_cpu() else None,
    )


def distributed_rank_world(accelerator: Accelerator) -> tuple[int, int]:
    """Rank and world size as torch.distributed sees them.

    Under DeepSpeed on the CPU accelerate's state reports one process (main on every rank) unless it is told the
    backend (the trainer names gloo there), while torch.distributed has the real world size; torch.distributed is
    the truth.
    """
    if dist.is_available() and dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
        if (rank, world) != (accelerator.process_index, accelerator.num_processes):
            logger.warning(
                "accelerate reports process %d of %d but torch.distributed rank %d of %d; using torch.distributed",
                accelerator.process_index, accelerator.num_processes, rank, world,
            )
        return rank, world
    return accelerator.process_index, accelerator.num_processes


def all_reduce(value: torch.Tensor, op: str = "sum") -> torch.Tensor:
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        value = value.clone()
        dist.all_reduce(value, op=dist.ReduceOp.MAX if op == "max" else dist.ReduceOp.SUM)
    return value


def any_rank(flag: bool, device: torch.device) -> bool:
    """Whether `flag` holds on some rank (the same answer on every rank)."""
    return all_reduce(torch.tensor([float(flag)], device=device), "max").item() > 0


def is_zero3(accelerator: Accelerator) -> bool:
    return is_deepspeed(accelerator) and accelerator.state.deepspeed_plugin.zero_stage == 3


@contextlib.contextmanager
def without_zero3_partitioning(accelerator: Accelerator) -> Iterator[None]:
    """Load models whole inside this block, also under ZeRO-3.

    accelerate registers its DeepSpeed config with transformers (`HfDeepSpeedConfig`) whatever `zero3_init_flag`
    says, and under ZeRO-3 transformers' `from_pretrained` then builds T5 inside `deepspeed.zero.Init`: its weights
    are partitioned across the ranks (size 0 here), and T5, which runs outside the engine, fails ("'weight' must
    be 2-D"; the "ZeRO-3 breaks T5" that VideoX-Fun reports). Only the transformer goes into the engine, which
    partitions it itself in `accelerator.prepare`.
    """
    plugin = getattr(accelerator.state, "deepspeed_plugin", None) if is_deepspeed(accelerator) else None
    if plugin is None or plugin.zero_stage != 3:
        yield
        return
    unset_hf_deepspeed_config()
    try:
        yield
    finally:
        plugin.set_deepspeed_weakref()  # as accelerate had it


def warn_if_deepspeed_without_gpu(accelerator: Accelerator) -> bool:
    """Warn (and return True) when accelerate was launched with a DeepSpeed config, there is no GPU, and DeepSpeed
    did not take over all the same (it normally does, on its CPU accelerator: see `deepspeed_on_cpu`)."""
    if deepspeed_on_cpu() and accelerator.distributed_type != DistributedType.DEEPSPEED:
        logger.warning(
            "the accelerate config asks for DeepSpeed, but there is no GPU: DeepSpeed (ZeRO stage, offload, its "
            "clipping and accumulation) is ignored and training runs as %s on the CPU",
            accelerator.distributed_type.value,
        )
        return True
    return False


def configure_deepspeed(accelerator: Accelerator, config: TrainConfig, is_main: bool) -> None:
    """Hand DeepSpeed the run's micro-batch size and clipping; refuse an accumulation it would count differently."""
    o = config.optim
    ds_config = accelerator.state.deepspeed_plugin.deepspeed_config
    ds_config["train_micro_batch_size_per_gpu"] = config.data.video_batch_size
    if accelerator.gradient_accumulation_steps != o.gradient_accumulation_steps:
        raise ValueError(
            f"DeepSpeed accumulates {accelerator.gradient_accumulation_steps} micro-batches but the config says "
            f"optim.gradient_accumulation_steps={o.gradient_accumulation_steps}: launch with launch.sh, or pass "
            "--gradient_accumulation_steps to accelerate launch"
        )
    ds_config["gradient_clipping"] = o.max_grad_norm
    if o.gradient_accumulation_steps > 1 and is_main:
        logger.warning(
            "DeepSpeed with optim.gradient_accumulation_steps=%d: a non-finite micro-batch loss cannot be skipped "
            "(DeepSpeed accumulates inside its engine) and stops training with NonFiniteLossError",
            o.gradient_accumulation_steps,
        )


def deepspeed_step_skipped(engine: Any, optimizer: Any) -> bool:
    """Whether DeepSpeed skipped the optimizer step it just ran (gradient overflow / non-finite gradient norm).

    Reads accelerate's `DeepSpeedOptimizerWrapper.step_was_skipped` (the ZeRO optimizer's overflow flag) and the
    engine's `was_step_applied()`.
    """
    if bool(getattr(optimizer, "step_was_skipped", False)):
        return True
    was_applied = getattr(engine, "was_step_applied", None)
    return callable(was_applied) and not was_applied()
