"""Evaluate an editor on an eval manifest: BP, TA, TC (VIVID-10M-Eval) and the synthetic world's text alignment.

    samples = load_eval_samples(["data/eval-00000.jsonl"], limit=8)
    report = evaluate(samples, pipeline_editor(pipe, EvalSettings()), EvalSettings(), scorer=None)
    write_report(report, "runs/eval")

An editor is any callable `EvalSample -> frames (F, H, W, 3) uint8` (or an `EditedVideo`, the frames with the
clip seams of a chained edit): the VIVID pipeline (trained or untrained) or OpenCV's inpainting (deletion only),
so every method is measured by the same code. Samples longer than one clip of the model are edited clip by clip
(`vivid.longvideo.chain_edit`) and also get the boundary metric: TC at the clip seams against TC inside clips.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from vivid.constants import MAX_CLIP_FRAMES, TASKS
from vivid.constants import clip_frames_at_most
from vivid.io.atomic import atomic_path
from vivid.metrics import (
    CLIPScorer,
    background_preservation,
    color_remnant,
    resample_indices,
    synthetic_alignment,
)
from vivid.metrics.boundary import boundary_tc
from vivid.metrics.clip_scores import tc_of_features
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
    clip_frames: int | None = None  # a longer sample is edited clip by clip (None: the model's clip length)
    boundaries: str = "adaptive"  # clip boundaries of such chained edits: "adaptive" or "fixed"


@dataclass
class EditedVideo:
    """An editor's output with where its clips meet: `seams` are frames t whose pair (t, t+1) was written by two
    clips chained by a keyframe, `cuts` the frames that start a new shot (`vivid.longvideo.ClipPlan`)."""

    frames: np.ndarray  # (F, H, W, 3) uint8
    seams: list[int] = field(default_factory=list)
    cuts: list[int] = field(default_factory=list)
    clips: int = 1


Editor = Callable[[EvalSample], np.ndarray | EditedVideo]


# ----------------------------------------------------------------------------- samples
def load_eval_samples(
    manifests: Sequence[str | os.PathLike],
    limit: int | None = None,
    size: tuple[int, int] | None = None,
    frames: int | None = None,
    fps: float = 8.0,
    max_frames: int | None = MAX_CLIP_FRAMES,
) -> list[EvalSample]:
    """The eval records of the manifests, decoded by the data pipeline (deterministically: clip start, masks not
    augmented), at most `limit` per task. `size` (H, W) and `frames` (4k+1) default to the first record's media
    size and its frame count at `fps`, at most `max_frames` (None: no limit, for long samples)."""
    from data_loaders.config import DataConfig
    from data_loaders.format import read_manifests
    from data_loaders.loader import build_eval_samples

    paths = [str(m) for m in manifests]
    if size is None or frames is None:
        records, _ = read_manifests(paths)
        if not records:
            raise ValueError(f"{', '.join(paths)}: no records")
        h, w, n = _media_geometry(records[0].media, fps, max_frames)
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


def _media_geometry(media: str, fps: float, max_frames: int | None = MAX_CLIP_FRAMES) -> tuple[int, int, int]:
    """(height, width, 4k+1 frames at `fps`, at most `max_frames`; None: all) of a video or image file."""
    from vivid.io.files import is_image_path
    from vivid.io.images import read_image
    from vivid.io.video import video_info

    if max_frames is not None and max_frames < 1:
        raise ValueError(f"max_frames must be >= 1 (or None for no limit), got {max_frames}")
    if is_image_path(media):
        h, w = read_image(media).shape[:2]
        return h, w, 1
    count, src_fps, h, w = video_info(media)
    usable = count if not src_fps or src_fps <= fps else int((count - 1) * fps / src_fps) + 1
    usable = max(usable, 1) if max_frames is None else min(max(usable, 1), max_frames)
    return h, w, clip_frames_at_most(usable)


# ----------------------------------------------------------------------------- editors
def pipeline_editor(pipe, settings: EvalSettings) -> Editor:
    """Edit with a VIVIDPipeline (trained, or untrained: no VIVID weights loaded). A sample longer than one clip
    (`settings.clip_frames`, default the model's) is edited clip by clip with KIVE chaining (`chain_edit`), and
    its output carries the seams and cuts of the clip plan for the boundary metric."""
    import torch

    from vivid.longvideo.plan import model_clip_frames

    clip_frames = settings.clip_frames or model_clip_frames(pipe.transformer)
    counter = {"i": 0}

    def edit(sample: EvalSample) -> np.ndarray | EditedVideo:
        seed = settings.seed + counter["i"]
        counter["i"] += 1
        if len(sample.frames) > clip_frames:
            return _chained_edit(pipe, sample, settings, clip_frames, seed)
        out = pipe(
            video=sample.frames,
            mask=sample.mask,
            prompt=sample.prompt,
            task=sample.task,
            num_inference_steps=settings.steps,
            guidance_scale=settings.guidance,
            generator=torch.Generator(device="cpu").manual_seed(seed),
            output_type="uint8",
            paste_back_source=settings.paste_back,
        ).frames[0]
        return out

    return edit


def _chained_edit(pipe, sample: EvalSample, settings: EvalSettings, clip_frames: int, seed: int) -> EditedVideo:
    """A long sample edited clip by clip into a lossless temporary video, read back with its clip plan."""
    from vivid.longvideo.runner import chain_edit
    from vivid.io.video import read_video

    with tempfile.TemporaryDirectory(prefix="vivid-eval-") as tmp:
        out = Path(tmp) / "edited.mp4"
        result = chain_edit(
            pipe, sample.frames, sample.mask, sample.prompt, sample.task, out,
            max_frames=clip_frames, boundaries=settings.boundaries, num_inference_steps=settings.steps,
            guidance_scale=settings.guidance, seed=seed, paste_back_source=settings.paste_back,
            fps=sample.fps or None, lossless=True,
        )
        frames, _ = read_video(out, what="chained edit")
    plan = result.plan
    return EditedVideo(frames, seams=plan.seams(), cuts=list(plan.cuts), clips=len(plan.clips))


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
    sample: EvalSample, output: np.ndarray | EditedVideo, scorer: CLIPScorer | None, eval_fps: float | None
) -> dict[str, Any]:
    """Every metric that applies to one edited sample. For a chained edit (an `EditedVideo`) also `clips` and,
    with a scorer, the boundary metric on every frame: `tc_boundary` (CLIP TC of the pairs at clip seams),
    `tc_inside` (of the other pairs; pairs across hard cuts in neither) and `gap` = tc_inside - tc_boundary."""
    edited = output if isinstance(output, EditedVideo) else None
    output = edited.frames if edited is not None else output
    if output.shape != sample.frames.shape:
        raise ValueError(f"sample {sample.id}: output {output.shape} does not match the source {sample.frames.shape}")
    idx = np.arange(len(output))
    if eval_fps and sample.fps > 0:
        idx = resample_indices(len(output), sample.fps, eval_fps)
    src, out, mask = sample.frames[idx], output[idx], sample.mask[idx]
    row: dict[str, Any] = {"id": sample.id, "task": sample.task, "frames": int(len(idx))}
    row["bp"] = background_preservation(src, out, mask)
    if edited is not None:
        row["clips"] = edited.clips
        row["seams"] = len(edited.seams)
    if scorer is not None:
        if edited is not None:
            features = scorer.image_features(output)  # every frame: a seam is a pair of consecutive frames
            row["tc"] = tc_of_features(features[idx]) if len(idx) > 1 else None
            row.update(_boundary_row(features, edited))
        else:
            row["tc"] = scorer.temporal_consistency(out) if len(out) > 1 else None
        if sample.task != "delete":
            row["ta"] = scorer.text_alignment(out, mask, sample.prompt)
    elif edited is not None:
        row.update(tc_boundary=None, tc_inside=None, gap=None)
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


def _boundary_row(features: np.ndarray, edited: EditedVideo) -> dict[str, float | None]:
    """tc_boundary, tc_inside, gap of a chained edit (None where there are no such pairs, e.g. no seam)."""
    result = boundary_tc(features, edited.seams, edited.cuts)
    return {key: _finite(getattr(result, key)) for key in ("tc_boundary", "tc_inside", "gap")}


def _finite(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


def _mean(values: Iterable[Any]) -> float | None:
    vals = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return float(np.mean(vals)) if vals else None


def summarize(rows: list[dict[str, Any]], task: str) -> dict[str, Any]:
    """Per-task means: bp, tc, n, and ta / synthetic_ta (add, modify) or remnant (delete) where measured; where
    some samples were chained edits (longer than one clip), `long` (their count) and the means of their
    tc_boundary, tc_inside and gap."""
    rows = [r for r in rows if r["task"] == task]
    out: dict[str, Any] = {"n": len(rows), "bp": _mean(r["bp"] for r in rows), "tc": _mean(r.get("tc") for r in rows)}
    chained = [r for r in rows if "clips" in r]
    if chained:
        out["long"] = len(chained)
        for key in ("tc_boundary", "tc_inside", "gap"):
            out[key] = _mean(r.get(key) for r in chained)
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


# ----------------------------------------------------------------------------- reports
def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}"


def format_table(reports: dict[str, dict[str, Any]]) -> str:
    """A markdown table: one row per (method, task). Where some samples were long (chained clip by clip), the
    boundary metric's columns follow: the count of long samples, TC at clip seams, TC inside clips, the gap."""
    header = ("| method | task | n | BP (lower better) | TC | TA | synthetic TA | colour | shape | "
              "remnant (lower better) |")
    long_cols = any((report.get(task) or {}).get("long") for report in reports.values() for task in TASKS)
    if long_cols:
        header += " long | TC seams | TC inside | gap (lower better) |"
    lines = [header, "|---" * header.count(" | ") + "|---|"]
    for method, report in reports.items():
        for task in TASKS:
            s = report.get(task)
            if not s or not s["n"]:
                continue
            line = (
                f"| {method} | {task} | {s['n']} | {_fmt(s['bp'])} | {_fmt(s['tc'])} | {_fmt(s.get('ta'))} | "
                f"{_fmt(s.get('synthetic_ta'))} | {_fmt(s.get('synthetic_color'))} | {_fmt(s.get('synthetic_shape'))} | "
                f"{_fmt(s.get('remnant'), 3)} |"
            )
            if long_cols:
                line += (f" {s.get('long', 0)} | {_fmt(s.get('tc_boundary'))} | {_fmt(s.get('tc_inside'))} | "
                         f"{_fmt(s.get('gap'))} |")
            lines.append(line)
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
    from vivid.io.images import write_image

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data = {k: v for k, v in report.items() if not k.startswith("_")}
    with atomic_path(out_dir / REPORT_NAME) as tmp:
        tmp.write_text(json.dumps(data, indent=2) + "\n")
    table = format_table({report["method"]: report, **(extra or {})})
    settings = data["settings"]
    legend = (
        "BP: mean |source - output| outside the mask, 0-255. TC, TA: CLIP scores x 100 (need --clip). "
        "Synthetic TA: fraction of add/modify edits whose region shows the caption's colour (and shape, where it "
        "can be told). Remnant: fraction of the deletion region still showing the removed shape's colour."
    )
    if "| long |" in table:
        legend += (" Long: samples with more frames than one clip, edited clip by clip; TC seams: CLIP TC of their "
                   "frame pairs where two clips meet; TC inside: of their other pairs; gap = inside - seams "
                   "(0 = seamless).")
    md = [
        f"# vivid eval: {report['method']}",
        "",
        table,
        "",
        legend,
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
