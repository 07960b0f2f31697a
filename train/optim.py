"""The optimizer, its learning-rate schedule, and the step at an accumulation boundary (clip, then step unless a
loss or the gradient was non-finite)."""

from __future__ import annotations

import logging
import math
from typing import Any

import torch
from accelerate import Accelerator
from diffusers.optimization import get_scheduler

from train.checkpoint import is_deepspeed
from train.config import TrainConfig
from train.distributed import deepspeed_step_skipped

logger = logging.getLogger("vivid.train")


def build_optimizer(params: list[torch.nn.Parameter], config: TrainConfig, device: torch.device) -> Any:
    o = config.optim
    kwargs = dict(lr=o.lr, betas=tuple(o.betas), weight_decay=o.weight_decay, eps=o.eps)
    if not o.use_8bit_adam:
        return torch.optim.AdamW(params, **kwargs, fused=o.fused_adam or None)
    if device.type != "cuda":
        raise ValueError("optim.use_8bit_adam needs a CUDA GPU (bitsandbytes); set optim.use_8bit_adam=false")
    try:
        import bitsandbytes as bnb
    except ImportError as err:
        raise ValueError("optim.use_8bit_adam needs bitsandbytes: pip install bitsandbytes") from err
    return bnb.optim.AdamW8bit(params, **kwargs)


def build_lr_scheduler(optimizer: Any, config: TrainConfig) -> Any:
    """Stepped once per optimizer step by the trainer; not given to `accelerator.prepare`, whose
    AcceleratedScheduler would step it once per process."""
    o = config.optim
    return get_scheduler(o.lr_scheduler, optimizer, num_warmup_steps=o.warmup_steps, num_training_steps=o.max_steps)


def optimizer_step(accelerator: Accelerator, model: Any, optimizer: Any, lr_scheduler: Any,
                   params: list[torch.nn.Parameter], max_grad_norm: float, finite: bool, step: int
                   ) -> tuple[bool, float | None]:
    """At the accumulation boundary: clip, then step the optimizer and the schedule unless `finite` is False or the
    gradient norm is not finite (with an fp16 gradient scaler the scaler skips the step itself and lowers its
    scale); always clear the gradients. Returns (applied, gradient norm before clipping).

    Under DeepSpeed the engine has already clipped and stepped (or skipped on overflow) inside
    `accelerator.backward`; this reads what it did.
    """
    grad_norm: float | None = None
    # fp16 (not under DeepSpeed): once clipping has unscaled the gradients, the step must go through the scaler,
    # which skips it on an overflow and backs its scale off (GradScaler.update); not stepping would leave the
    # scaler unscaled but not updated, and the next clip would raise
    through_scaler = finite and getattr(accelerator, "scaler", None) is not None
    if finite:
        raw_norm = accelerator.clip_grad_norm_(params, max_grad_norm)
        if raw_norm is None and hasattr(model, "get_global_grad_norm"):  # DeepSpeed clips itself
            raw_norm = model.get_global_grad_norm()
        grad_norm = float(raw_norm) if raw_norm is not None else None
        if is_deepspeed(accelerator):
            finite = not deepspeed_step_skipped(model, optimizer)
            if finite and grad_norm is not None and not math.isfinite(grad_norm):
                finite = False  # applied anyway: DeepSpeed checks for overflow only with bf16 / fp16
                logger.error("step %d: DeepSpeed applied a step with gradient norm %s (no overflow check with "
                             "mixed_precision=no); the weights may now be non-finite", step + 1, grad_norm)
        else:
            finite = grad_norm is not None and math.isfinite(grad_norm)
    if finite or through_scaler:
        optimizer.step()
        finite = finite and not getattr(optimizer, "step_was_skipped", False)
        if finite:
            lr_scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return finite, grad_norm
