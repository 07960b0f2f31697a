"""Evaluate an editor on an eval manifest: BP, TA, TC (VIVID-10M-Eval) and the synthetic world's text alignment.

    samples = load_eval_samples(["data/eval-00000.jsonl"], limit=8)
    report = evaluate(samples, pipeline_editor(pipe, EvalSettings()), EvalSettings(), scorer=None)
    write_report(report, "runs/eval")

An editor is any callable `EvalSample -> frames (F, H, W, 3) uint8` (or an `EditedVideo`, the frames with the
clip seams of a chained edit): the VIVID pipeline (trained or untrained) or OpenCV's inpainting (deletion only),
so every method is measured by the same code. Samples longer than one clip of the model are edited clip by clip
(`vivid.longvideo.chain_edit`) and also get the boundary metric: TC at the clip seams against TC inside clips.

One job per module: `samples` (loading), `editors` (what is evaluated), `scoring` (metrics per sample and per
task), `run` (`evaluate`), `report` (the files written).
"""

from __future__ import annotations

from vivid.evaluation.editors import EditedVideo, Editor, EvalSettings, inpaint_editor, pipeline_editor
from vivid.evaluation.report import REPORT_NAME, STRIP_NAME, SUMMARY_NAME, format_table, strip_image, write_report
from vivid.evaluation.run import evaluate
from vivid.evaluation.samples import EVAL_MAX_FRAMES, EvalSample, load_eval_samples
from vivid.evaluation.scoring import score_sample, summarize

__all__ = [
    "EVAL_MAX_FRAMES", "REPORT_NAME", "STRIP_NAME", "SUMMARY_NAME", "EditedVideo", "Editor", "EvalSample", "EvalSettings", "evaluate",
    "format_table", "inpaint_editor", "load_eval_samples", "pipeline_editor", "score_sample", "strip_image",
    "summarize", "write_report",
]
