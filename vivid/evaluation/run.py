"""Evaluate an editor on samples: edit each, score it, and gather the report."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Any

from vivid.constants import TASKS
from vivid.evaluation.editors import EditedVideo, Editor, EvalSettings
from vivid.evaluation.samples import EvalSample
from vivid.evaluation.scoring import score_sample, summarize
from vivid.metrics import CLIPScorer


def evaluate(
    samples: Sequence[EvalSample],
    editor: Editor,
    settings: EvalSettings,
    scorer: CLIPScorer | None = None,
    method: str = "vivid",
    tasks: Sequence[str] = TASKS,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Edit every sample whose task is in `tasks`; the report (per-task summaries, per-sample rows, settings),
    and the outputs of the first `settings.strip_samples` samples under `report["_strip"]` (not written to JSON)."""
    rows, strip = [], []
    start = time.perf_counter()
    chosen = [s for s in samples if s.task in tasks]
    if not chosen:
        raise ValueError(f"no eval samples for tasks {list(tasks)}")
    for i, sample in enumerate(chosen):
        t0 = time.perf_counter()
        output = editor(sample)
        row = score_sample(sample, output, scorer, settings.eval_fps)
        row["seconds"] = time.perf_counter() - t0
        rows.append(row)
        if len(strip) < settings.strip_samples and _wants_strip(strip, sample, chosen, settings.strip_samples):
            strip.append((sample, output.frames if isinstance(output, EditedVideo) else output))
        if progress is not None:
            progress(f"[{method}] {i + 1}/{len(chosen)} {sample.task} {sample.id}: bp {row['bp']:.1f}")
    report: dict[str, Any] = {t: summarize(rows, t) for t in TASKS if t in tasks}
    report["method"] = method
    report["settings"] = dict(asdict(settings), clip=getattr(scorer, "name", None), tasks=list(tasks))
    report["seconds"] = time.perf_counter() - start
    report["samples"] = rows
    report["_strip"] = strip
    return report


def _wants_strip(strip: list, sample: EvalSample, chosen: Sequence[EvalSample], k: int) -> bool:
    """Spread the strip's rows over the tasks present."""
    tasks = [t for t in TASKS if any(s.task == t for s in chosen)]
    per_task = max(1, k // max(len(tasks), 1))
    return sum(1 for s, _ in strip if s.task == sample.task) < per_task
