"""Figures of a training run: the learning curve (training loss, held-out synthetic TA) as a PNG (matplotlib)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from vivid.io.atomic import atomic_path


def read_losses(metrics_jsonl: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """(steps, losses) of a run's metrics.jsonl, skipped (non-finite) steps left out."""
    steps, losses = [], []
    for line in Path(metrics_jsonl).read_text().splitlines():
        if not line.strip():
            continue
        record = json.loads(line)
        if record.get("loss") is not None and not record.get("skipped"):
            steps.append(record["step"])
            losses.append(record["loss"])
    return np.asarray(steps), np.asarray(losses, float)


def moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """The mean of each value and the `window - 1` before it (fewer at the start)."""
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    sums = np.cumsum(np.insert(values.astype(float), 0, 0.0))
    idx = np.arange(1, len(values) + 1)
    lo = np.maximum(idx - window, 0)
    return (sums[idx] - sums[lo]) / (idx - lo)


def write_learning_curve(
    path: str | os.PathLike,
    metrics_jsonl: str | os.PathLike,
    held_out: Mapping[str, Sequence[tuple[int, float]]],
    title: str = "",
    smooth: int = 50,
) -> Path:
    """A two-panel PNG: the training loss by step (raw and a `smooth`-step moving average), and each series of
    `held_out` (name -> [(step, value)], e.g. synthetic TA of add and modify) by step. Written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps, losses = read_losses(metrics_jsonl)
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6), dpi=100)
    if len(steps):
        left.plot(steps, losses, color="0.8", linewidth=0.6, label="loss")
        left.plot(steps, moving_average(losses, smooth), color="C0", label=f"mean of {smooth} steps")
        left.set_yscale("log")
    left.set(xlabel="step", ylabel="training loss", title="training loss")
    left.legend(loc="upper right")
    for name, points in held_out.items():
        if points:
            xs, ys = zip(*sorted(points))
            right.plot(xs, ys, marker="o", label=name)
    right.set(xlabel="step", ylabel="fraction", ylim=(-0.02, 1.02), title="held-out synthetic TA")
    right.axhline(0.8, color="0.6", linestyle="--", linewidth=0.8)
    right.legend(loc="lower right")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path
