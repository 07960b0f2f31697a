"""Evaluate an editor on an eval manifest: BP, TA, TC (VIVID-10M-Eval) and the synthetic world's text alignment.

    samples = load_eval_samples(["data/eval-00000.jsonl"], limit=8)
    report = evaluate(samples, pipeline_editor(pipe, EvalSettings()), EvalSettings(), scorer=None)
    write_report(report, "runs/eval")

An editor is any callable `EvalSample -> frames (F, H, W, 3) uint8`: the VIVID pipeline (trained or
untrained) or OpenCV's inpainting (deletion only), so every method is measured by the same code.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from vivid.constants import DELETE_CAPTION, TASKS
from vivid.media import atomic_path
from vivid.metrics import (
    CLIPScorer,
    background_preservation,
    color_remnant,
    resample_indices,
    synthetic_alignment,
)
from vivid.metrics.resample import EVAL_FPS

REPORT_NAME = "report.json"
SUMMARY_NAME = "report.md"
STRIP_NAME = "samples.png"


@dataclass
class EvalSample:
    """One eval edit: the source clip, the edit region, the caption and the task; `attributes` are the
    synthetic world's (color, shape, motion) of the entity to draw (add / modify) or to remove (delete)."""

    id: str
    task: str  # "add" | "modify" | "delete"
    frames: np.ndarray  # (F, H, W, 3) uint8
    mask: np.ndarray  # (F, H, W) bool, True = edit
    prompt: str
    fps: float = 0.0  # 0 for an image
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass
class EvalSettings:
    steps: int = 20  # denoising steps (DDIM)
    guidance: float = 4.0  # classifier-free guidance scale
    seed: int = 0  # sample i uses seed + i
    paste_back: bool = False  # off: BP measures what the model itself keeps, not the paste-back
    eval_fps: float | None = EVAL_FPS  # metrics on frames resampled to this rate (None: every frame)
    limit: int | None = None  # at most this many samples per task
    strip_samples: int = 6  # rows of the PNG strip


Editor = Callable[[EvalSample], np.ndarray]


# ----------------------------------------------------------------------------- samples
def load_eval_samples(
    manifests: Sequence[str | os.PathLike],
    limit: int | None = None,
    size: tuple[int, int] | None = None,
    frames: int | None = None,
    fps: float = 8.0,
) -> list[EvalSample]:
    """The eval records of the manifests, decoded by the data pipeline (deterministically: clip start, masks not
    augmented), at most `limit` per task. `size` (H, W) and `frames` (4k+1) default to the first record's media
    size and its frame count at `fps` (at most 49)."""
    from data_loaders.config import DataConfig
    from data_loaders.format import read_manifests
    from data_loaders.loader import build_eval_samples

    paths = [str(m) for m in manifests]
    if size is None or frames is None:
        records, _ = read_manifests(paths)
        if not records:
            raise ValueError(f"{', '.join(paths)}: no records")
        h, w, n = _media_geometry(records[0].media, fps)
        size = size or (h, w)
        frames = frames or n
    config = DataConfig(eval_manifests=paths, height=size[0], width=size[1], frames=frames, fps=fps, num_workers=0)
    decoded = build_eval_samples(paths, config)
    counts = {t: 0 for t in TASKS}
    samples = []
    for d in decoded:
        if limit is not None and counts[d.task] >= limit:
            continue
        counts[d.task] += 1
        samples.append(EvalSample(d.id, d.task, d.video, d.mask, d.caption, float(d.fps), dict(d.attributes)))
    if not samples:
        raise ValueError(f"{', '.join(paths)}: no eval samples")
    return samples


def _media_geometry(media: str, fps: float) -> tuple[int, int, int]:
    """(height, width, 4k+1 frames at `fps`, at most 49) of a video or image file."""
    from vivid.constants import MAX_CLIP_FRAMES
    from vivid.media import is_image_path, read_image, video_info

    if is_image_path(media):
        h, w = read_image(media).shape[:2]
        return h, w, 1
    count, src_fps, h, w = video_info(media)
    usable = count if not src_fps or src_fps <= fps else int((count - 1) * fps / src_fps) + 1
    usable = min(max(usable, 1), MAX_CLIP_FRAMES)
    return h, w, 4 * ((usable - 1) // 4) + 1


# ----------------------------------------------------------------------------- editors
def pipeline_editor(pipe, settings: EvalSettings) -> Editor:
    """Edit with a VIVIDPipeline (trained, or untrained: no VIVID weights loaded)."""
    import torch

    counter = {"i": 0}

    def edit(sample: EvalSample) -> np.ndarray:
        generator = torch.Generator(device="cpu").manual_seed(settings.seed + counter["i"])
        counter["i"] += 1
        out = pipe(
            video=sample.frames,
            mask=sample.mask,
            prompt=sample.prompt,
            task=sample.task,
            num_inference_steps=settings.steps,
            guidance_scale=settings.guidance,
            generator=generator,
            output_type="np",
            paste_back_source=settings.paste_back,
        ).frames[0]
        return (out * 255.0).round().clip(0, 255).astype(np.uint8)

    return edit


def inpaint_editor(radius: int = 5) -> Editor:
    """OpenCV's Telea inpainting of each frame inside the mask: the classical deletion baseline."""

    def edit(sample: EvalSample) -> np.ndarray:
        if sample.task != "delete":
            raise ValueError("the inpainting baseline only deletes")
        out = [cv2.inpaint(f, m.astype(np.uint8), radius, cv2.INPAINT_TELEA) for f, m in zip(sample.frames, sample.mask)]
        return np.stack(out)

    return edit


# ----------------------------------------------------------------------------- metrics
def score_sample(
    sample: EvalSample, output: np.ndarray, scorer: CLIPScorer | None, eval_fps: float | None
) -> dict[str, Any]:
    """Every metric that applies to one edited sample."""
    if output.shape != sample.frames.shape:
        raise ValueError(f"sample {sample.id}: output {output.shape} does not match the source {sample.frames.shape}")
    idx = np.arange(len(output))
    if eval_fps and sample.fps > 0:
        idx = resample_indices(len(output), sample.fps, eval_fps)
    src, out, mask = sample.frames[idx], output[idx], sample.mask[idx]
    row: dict[str, Any] = {"id": sample.id, "task": sample.task, "frames": int(len(idx))}
    row["bp"] = background_preservation(src, out, mask)
    if scorer is not None:
        row["tc"] = scorer.temporal_consistency(out) if len(out) > 1 else None
        if sample.task != "delete":
            row["ta"] = scorer.text_alignment(out, mask, sample.prompt)
    color, shape = sample.attributes.get("color"), sample.attributes.get("shape")
    if color is not None:
        if sample.task == "delete":
            row["remnant"] = color_remnant(out, mask, color)
            row["source_remnant"] = color_remnant(src, mask, color)
        else:
            found = synthetic_alignment(out, mask, color, shape)
            row.update(
                synthetic_match=found["match"],
                color_match=found["color_match"],
                shape_match=found["shape_match"],
                found_color=found["color"],
                found_shape=found["shape"],
            )
    return row


def _mean(values: Iterable[Any]) -> float | None:
    vals = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return float(np.mean(vals)) if vals else None


def summarize(rows: list[dict[str, Any]], task: str) -> dict[str, Any]:
    """Per-task means: bp, tc, n, and ta / synthetic_ta (add, modify) or remnant (delete) where measured."""
    rows = [r for r in rows if r["task"] == task]
    out: dict[str, Any] = {"n": len(rows), "bp": _mean(r["bp"] for r in rows), "tc": _mean(r.get("tc") for r in rows)}
    if task != "delete":
        out["ta"] = _mean(r.get("ta") for r in rows)
        synth = [r for r in rows if "synthetic_match" in r]
        if synth:
            told = [r["shape_match"] for r in synth if r["shape_match"] is not None]
            out["synthetic_ta"] = _mean(r["synthetic_match"] for r in synth)
            out["synthetic_color"] = _mean(r["color_match"] for r in synth)
            out["synthetic_shape"] = _mean(told)
            out["shape_told"] = len(told) / len(synth)
    else:
        out["remnant"] = _mean(r.get("remnant") for r in rows)
        out["source_remnant"] = _mean(r.get("source_remnant") for r in rows)
    return out


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
            strip.append((sample, output))
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


# ----------------------------------------------------------------------------- reports
def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}"


def format_table(reports: dict[str, dict[str, Any]]) -> str:
    """A markdown table: one row per (method, task)."""
    lines = [
        "| method | task | n | BP (lower better) | TC | TA | synthetic TA | colour | shape | remnant (lower better) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for method, report in reports.items():
        for task in TASKS:
            s = report.get(task)
            if not s or not s["n"]:
                continue
            lines.append(
                f"| {method} | {task} | {s['n']} | {_fmt(s['bp'])} | {_fmt(s['tc'])} | {_fmt(s.get('ta'))} | "
                f"{_fmt(s.get('synthetic_ta'))} | {_fmt(s.get('synthetic_color'))} | {_fmt(s.get('synthetic_shape'))} | "
                f"{_fmt(s.get('remnant'), 3)} |"
            )
    return "\n".join(lines)


def strip_image(rows: list[tuple[EvalSample, np.ndarray]], scale: int = 2) -> np.ndarray:
    """source | mask | output (the middle frame of each sample), one sample per row, uint8 RGB."""
    if not rows:
        raise ValueError("no samples for the strip")
    tiles = []
    width = max(s.frames.shape[2] for s, _ in rows)
    for sample, output in rows:
        k = len(sample.frames) // 2
        mask = np.repeat(sample.mask[k, :, :, None].astype(np.uint8) * 255, 3, axis=2)
        row = np.concatenate([sample.frames[k], mask, output[k]], axis=1)
        pad = 3 * width - row.shape[1]
        if pad:
            row = np.pad(row, ((0, 0), (0, pad), (0, 0)))
        tiles.append(np.pad(row, ((0, 2), (0, 0), (0, 0)), constant_values=255))
    img = np.concatenate(tiles, axis=0)
    return cv2.resize(img, (img.shape[1] * scale, img.shape[0] * scale), interpolation=cv2.INTER_NEAREST)


def write_report(report: dict[str, Any], out_dir: str | os.PathLike, extra: dict[str, dict] | None = None) -> Path:
    """`out_dir/report.json`, `report.md` (with the tables of `extra` reports beside it) and `samples.png`."""
    from vivid.media import write_image

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data = {k: v for k, v in report.items() if not k.startswith("_")}
    with atomic_path(out_dir / REPORT_NAME) as tmp:
        tmp.write_text(json.dumps(data, indent=2) + "\n")
    tables = {report["method"]: report, **(extra or {})}
    settings = data["settings"]
    md = [
        f"# vivid eval: {report['method']}",
        "",
        format_table(tables),
        "",
        "BP: mean |source - output| outside the mask, 0-255. TC, TA: CLIP scores x 100 (need --clip). "
        "Synthetic TA: fraction of add/modify edits whose region shows the caption's colour (and shape, where it "
        "can be told). Remnant: fraction of the deletion region still showing the removed shape's colour.",
        "",
        "Settings: " + ", ".join(f"{k}={v}" for k, v in settings.items()),
        "",
        f"![source | mask | output]({STRIP_NAME})",
        "",
    ]
    with atomic_path(out_dir / SUMMARY_NAME) as tmp:
        tmp.write_text("\n".join(md))
    if report.get("_strip"):
        write_image(out_dir / STRIP_NAME, strip_image(report["_strip"]))
    return out_dir / REPORT_NAME
