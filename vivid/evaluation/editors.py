"""Editors under evaluation: any callable `EvalSample -> frames` (or an `EditedVideo`); the VIVID pipeline and
OpenCV's inpainting baseline."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

from vivid.evaluation.samples import EvalSample
from vivid.longvideo.plan import model_clip_frames
from vivid.longvideo.request import EditOptions, edit_request
from vivid.longvideo.runner import chain_edit
from vivid.io.video import read_video
from vivid.metrics.resample import EVAL_FPS


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


def pipeline_editor(pipe, settings: EvalSettings) -> Editor:
    """Edit with a VIVIDPipeline (trained, or untrained: no VIVID weights loaded). A sample longer than one clip
    (`settings.clip_frames`, default the model's) is edited clip by clip with KIVE chaining (`chain_edit`), and
    its output carries the seams and cuts of the clip plan for the boundary metric."""
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
    with tempfile.TemporaryDirectory(prefix="vivid-eval-") as tmp:
        out = Path(tmp) / "edited.mp4"
        request = edit_request(
            sample.frames, sample.mask, sample.prompt, sample.task, out, fps=sample.fps or None,
            options=EditOptions(clip_frames=clip_frames, boundaries=settings.boundaries,
                                num_inference_steps=settings.steps, guidance_scale=settings.guidance, seed=seed,
                                paste_back_source=settings.paste_back, lossless=True),
        )
        result = chain_edit(pipe, request)
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
