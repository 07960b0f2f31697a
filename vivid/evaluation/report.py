"""Reports: report.json, report.md (markdown tables) and samples.png (a strip of edits)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from vivid.constants import TASKS
from vivid.evaluation.samples import EvalSample
from vivid.io.atomic import atomic_path
from vivid.io.images import write_image

REPORT_NAME = "report.json"
SUMMARY_NAME = "report.md"
STRIP_NAME = "samples.png"
COMPARISON_NAME = "comparison.md"


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}"


def format_table(reports: dict[str, dict[str, Any]]) -> str:
    """A markdown table: one row per (method, task). Where some samples were long (chained clip by clip), the
    boundary metric's columns follow: the count of long samples, TC at clip seams, TC inside clips, the gap."""
    header = ("| method | task | n | BP (lower better) | PSNR | SSIM | TC | TA | synthetic TA | colour | shape | "
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
                f"| {method} | {task} | {s['n']} | {_fmt(s.get('bp'))} | {_fmt(s.get('psnr'), 1)} | {_fmt(s.get('ssim'), 3)} | "
                f"{_fmt(s.get('tc'))} | {_fmt(s.get('ta'))} | "
                f"{_fmt(s.get('synthetic_ta'))} | {_fmt(s.get('synthetic_color'))} | {_fmt(s.get('synthetic_shape'))} | "
                f"{_fmt(s.get('remnant'), 3)} |"
            )
            if long_cols:
                line += (f" {s.get('long', 0)} | {_fmt(s.get('tc_boundary'))} | {_fmt(s.get('tc_inside'))} | "
                         f"{_fmt(s.get('gap'))} |")
            lines.append(line)
    return "\n".join(lines)


def format_comparison(reports: dict[str, dict[str, Any]]) -> str:
    """One markdown table of several models' reports on the same samples (`vivid eval --compare`), one row per
    (model, task), as VideoPainter's and MiniMax-Remover's tables read: BP, background PSNR / SSIM, TA, TC, the
    mean seconds per edited sample (one clip, or a chained edit) and the peak accelerator memory (GB; "-" on a
    CPU)."""
    header = ("| model | task | n | BP (lower better) | background PSNR | background SSIM | TA | TC | s / clip | "
              "peak memory (GB) |")
    lines = [header, "|---" * header.count(" | ") + "|---|"]
    for name, report in reports.items():
        for task in TASKS:
            s = report.get(task)
            if not s or not s["n"]:
                continue
            seconds = [r["seconds"] for r in report.get("samples", []) if r["task"] == task]
            per_clip = sum(seconds) / len(seconds) if seconds else None
            lines.append(
                f"| {name} | {task} | {s['n']} | {_fmt(s.get('bp'))} | {_fmt(s.get('psnr'), 1)} | "
                f"{_fmt(s.get('ssim'), 3)} | {_fmt(s.get('ta'))} | {_fmt(s.get('tc'))} | {_fmt(per_clip)} | "
                f"{_fmt(report.get('peak_memory_gb'))} |"
            )
    return "\n".join(lines)


def strip_image(rows: list[tuple[EvalSample, np.ndarray]], scale: int = 2, labels: bool = True) -> np.ndarray:
    """source | mask | output (the middle frame of each sample), one sample per row, uint8 RGB. Every row is resized
    to the same width (`scale` x the narrowest source's); `labels`: a line of text above each row (task: caption)."""
    if not rows:
        raise ValueError("no samples for the strip")
    width = 3 * scale * min(s.frames.shape[2] for s, _ in rows)
    tiles = []
    for sample, output in rows:
        k = len(sample.frames) // 2
        mask = np.repeat(sample.mask[k, :, :, None].astype(np.uint8) * 255, 3, axis=2)
        row = np.concatenate([sample.frames[k], mask, output[k]], axis=1)
        factor = width / row.shape[1]
        row = cv2.resize(row, (width, max(1, round(row.shape[0] * factor))),
                         interpolation=cv2.INTER_NEAREST if factor >= 1 else cv2.INTER_AREA)
        if labels:
            row = np.concatenate([_label_bar(f"{sample.task}: {sample.prompt}", width), row], axis=0)
        tiles.append(np.pad(row, ((0, 2 * scale), (0, 0), (0, 0)), constant_values=255))
    return np.concatenate(tiles, axis=0)


def _label_bar(text: str, width: int, height: int = 16) -> np.ndarray:
    """A white bar with `text` in black, cut with "..." to fit `width` (OpenCV's font: ASCII only)."""
    font, size = cv2.FONT_HERSHEY_SIMPLEX, 0.4
    text = text.encode("ascii", "replace").decode()
    while len(text) > 3 and cv2.getTextSize(text, font, size, 1)[0][0] > width - 8:
        text = text[: -4] + "..."
    bar = np.full((height, width, 3), 255, np.uint8)
    cv2.putText(bar, text, (4, height - 4), font, size, (0, 0, 0), 1, cv2.LINE_AA)
    return bar


def write_report(report: dict[str, Any], out_dir: str | os.PathLike, extra: dict[str, dict] | None = None) -> Path:
    """`out_dir/report.json`, `report.md` (with the tables of `extra` reports beside it) and `samples.png`."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data = {k: v for k, v in report.items() if not k.startswith("_")}
    with atomic_path(out_dir / REPORT_NAME) as tmp:
        tmp.write_text(json.dumps(data, indent=2) + "\n")
    table = format_table({report["method"]: report, **(extra or {})})
    settings = data["settings"]
    legend = (
        "BP: mean |source - output| outside the mask, 0-255. PSNR (dB; 100 = unchanged), SSIM: of the background "
        "(outside the mask), higher better. TC, TA: CLIP scores x 100 (need --clip). "
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


def write_comparison(reports: dict[str, dict[str, Any]], out_dir: str | os.PathLike) -> Path:
    """`out_dir/comparison.md`: the models' table (`format_comparison`) and the settings they shared; each model's
    own report in `out_dir/<k>-<name>/` (`write_report`)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for k, (name, report) in enumerate(reports.items()):
        write_report(report, out_dir / f"{k}-{Path(name).name or 'model'}")
    settings = next(iter(reports.values()))["settings"]
    md = ["# vivid eval --compare", "", format_comparison(reports), "",
          "Every model edited the same samples with the same masks, seeds, steps and guidance. BP: mean |source - "
          "output| outside the mask, 0-255; PSNR (dB), SSIM of the background (outside the mask); TA, TC: CLIP "
          "scores x 100 (need --clip).", "",
          "Settings: " + ", ".join(f"{k}={v}" for k, v in settings.items() if k != "model"), ""]
    with atomic_path(out_dir / COMPARISON_NAME) as tmp:
        tmp.write_text("\n".join(md))
    return out_dir / COMPARISON_NAME
