"""Scores: every metric that applies to one edited sample, and the per-task means."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from vivid.evaluation.editors import EditedVideo
from vivid.evaluation.samples import EvalSample
from vivid.metrics import (
    CLIPScorer,
    background_preservation,
    background_psnr,
    background_ssim,
    color_remnant,
    resample_indices,
    synthetic_alignment,
)
from vivid.metrics.boundary import boundary_tc
from vivid.metrics.clip_scores import tc_of_features


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
    row["psnr"] = background_psnr(src, out, mask)
    row["ssim"] = background_ssim(src, out, mask)
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
    """Per-task means: bp, psnr, ssim (of the background), tc, n, and ta / synthetic_ta (add, modify) or remnant
    (delete) where measured; where
    some samples were chained edits (longer than one clip), `long` (their count) and the means of their
    tc_boundary, tc_inside and gap."""
    rows = [r for r in rows if r["task"] == task]
    out: dict[str, Any] = {"n": len(rows), "bp": _mean(r["bp"] for r in rows), "psnr": _mean(r.get("psnr") for r in rows),
                           "ssim": _mean(r.get("ssim") for r in rows), "tc": _mean(r.get("tc") for r in rows)}
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
