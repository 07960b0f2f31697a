"""What a run records: metrics.jsonl, the sample ids each step trained on, and wandb (all optional but the first).
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import torch

from train.config import TrainConfig
from vivid.io.atomic import write_text_atomic

logger = logging.getLogger("vivid.train")

METRICS_NAME = "metrics.jsonl"


def json_safe(value: Any) -> Any:
    """`value` with every non-finite float replaced by None (strict JSON has no NaN / Infinity)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


class MetricsWriter:
    """metrics.jsonl (rank 0): one strict-JSON object per optimizer step (non-finite numbers as null).

    A resumed run first drops the steps after its checkpoint, so the file always reads as one uninterrupted run;
    a line torn by a crash mid-write (or any other line that is not a JSON object with a step) is dropped then.
    """

    def __init__(self, path: Path, enabled: bool, resume_step: int | None):
        self.path, self.enabled = path, enabled
        if not enabled:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        if resume_step is None:
            path.write_text("")
        elif path.exists():
            kept = []
            for number, line in enumerate(path.read_text().splitlines(), 1):
                try:
                    step = json.loads(line)["step"] if line.strip() else None
                except (ValueError, KeyError, TypeError):
                    logger.warning("%s line %d is not a metrics record (torn by a crash?); dropped", path, number)
                    continue
                if isinstance(step, int) and step <= resume_step:
                    kept.append(line)
            write_text_atomic(path, "".join(line + "\n" for line in kept), fsync=True)

    def write(self, record: dict[str, Any]) -> None:
        if self.enabled:
            with open(self.path, "a") as f:
                f.write(json.dumps(json_safe(record), allow_nan=False) + "\n")


class SampleIdLog:
    """With logging.log_sample_ids: `sample_ids_rank<r>.jsonl`, the ids and tasks of every micro-batch this rank
    trained on (a fresh run starts the file anew, a resumed one appends)."""

    def __init__(self, config: TrainConfig, rank: int, resumed: bool):
        self.file = None
        if config.logging.log_sample_ids:
            path = config.output_dir / f"sample_ids_rank{rank}.jsonl"
            if not resumed:
                path.unlink(missing_ok=True)
            self.file = open(path, "a")

    def write(self, step: int, micro: int, batch: dict[str, Any]) -> None:
        if self.file is not None:
            self.file.write(json.dumps(
                {"step": step, "micro": micro, "ids": list(batch["id"]), "tasks": list(batch["task"])}
            ) + "\n")
            self.file.flush()

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


def step_record(step: int, loss: float, lr: float, grad_norm: float | None, samples: int, seconds: float,
                kind: str | None, applied: bool, skipped_steps: int, skipped_samples: int) -> dict[str, Any]:
    """One optimizer step's metrics.jsonl record (non-finite loss and gradient norm as None)."""
    record = dict(
        step=step, loss=loss if math.isfinite(loss) else None, lr=lr,
        grad_norm=grad_norm if grad_norm is not None and math.isfinite(grad_norm) else None,
        samples_per_s=samples / seconds, step_time_s=seconds,
        samples=samples, kind=kind, skipped=not applied, skipped_steps=skipped_steps,
        skipped_samples=skipped_samples,
    )
    if torch.cuda.is_available():
        record["peak_gpu_memory_gb"] = torch.cuda.max_memory_allocated() / 2**30
    return record


def log_cache_use(cache: Any) -> None:
    """How much the VAE latent cache saved (its lookups of all inputs seen)."""
    seen = cache.hits + cache.misses
    logger.info("VAE latent cache: %d of %d inputs were lookups (%.0f%%), %d cached",
                cache.hits, seen, 100 * cache.hits / max(seen, 1), len(cache))


def start_wandb(config: TrainConfig, run_id: str | None) -> Any:
    """The wandb run (resumed when `run_id` is given), or None with logging.wandb=disabled."""
    if config.logging.wandb == "disabled":
        return None
    try:
        import wandb
    except ImportError as err:
        raise ValueError("logging.wandb needs wandb (pip install wandb), or set logging.wandb=disabled") from err
    return wandb.init(
        project=config.logging.project,
        name=config.logging.run_name,
        mode=config.logging.wandb,
        dir=str(config.output_dir),
        config=config.to_dict(),
        id=run_id,
        resume="allow",
    )
