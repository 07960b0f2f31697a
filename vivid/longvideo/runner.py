"""The clip runner: `chain_edit` edits a video clip by clip along its plan (`vivid.longvideo.plan`), each finished
clip written to the work folder (`vivid.longvideo.state`) at once, the output assembled from them at the end
(`vivid.longvideo.assemble`). One clip (a short video, an image) is a plan of one clip."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from vivid.longvideo.boundaries import BoundaryConfig, check_clip_frames, compute_features, plan_boundaries, representative_frame
from vivid.io.edit_inputs import (
    EditInputError,
    check_edit_options,
    check_outputs,
    check_sampling,
    load_keyframe,
    resolve_prompt,
)
from vivid.io.atomic import remove_stale_temporaries, write_json_atomic
from vivid.io.files import is_image_path
from vivid.io.images import read_image, write_image
from vivid.io.masks import SCAN_CHUNK, MaskSource
from vivid.io.resize import resize_mask
from vivid.io.video import VideoSource, variable_rate_note, write_video
from vivid.longvideo.assemble import assemble
from vivid.longvideo.plan import Clip, ClipPlan, clip_plan_path, model_clip_frames, plan_clips
from vivid.longvideo.state import (
    STATE_NAME,
    STATE_VERSION,
    clip_files,
    clip_names,
    default_work_dir,
    fingerprint,
    finished_clips,
    read_state,
    remove_work_files,
    state_files,
)

logger = logging.getLogger(__name__)


@dataclass
class LongEditResult:
    path: Path
    num_frames: int
    fps: float
    plan: ClipPlan
    resumed_clips: int  # clips found finished in the work folder
    seconds_per_clip: list[float]  # of the clips run now


def _is_image(video: Any) -> bool:
    return isinstance(video, (str, os.PathLike)) and is_image_path(video)


def open_edit_sources(
    video: str | os.PathLike | np.ndarray,
    mask: str | os.PathLike | np.ndarray,
    keyframe: Any | None = None,
    fps: float | None = None,
    warn: bool = True,
) -> tuple[VideoSource, MaskSource, np.ndarray | None]:
    """Open and check an edit's inputs without decoding the video: the source (a video file, an image, an array),
    its masks (matched to the video's frames) and the keyframe. Raises MediaError / EditInputError naming the
    problem; `warn`: log how a mask video of another frame rate is matched and a variable frame rate."""
    if _is_image(video):
        source = VideoSource(read_image(video, "video")[None], fps=fps)
    else:
        source = VideoSource(video, fps=fps)
    n = len(source)
    timing = source.timing() if source.path else None
    masks = MaskSource(mask, n, source.height, source.width, timing=timing, warn=warn)
    if timing is not None and warn:
        note = variable_rate_note(timing, str(source.path))
        if note:
            logger.warning("%s", note)
    key = load_keyframe(keyframe, source.height, source.width)
    if key is not None and n < 2:
        raise EditInputError("a keyframe needs a video of at least 2 frames to propagate to, got an image")
    return source, masks, key


def chain_edit(
    pipe: Any,
    video: str | os.PathLike | np.ndarray,
    mask: str | os.PathLike | np.ndarray,
    prompt: str | None,
    task: str,
    out: str | os.PathLike,
    *,
    keyframe: Any | None = None,
    keyframe_frame: int | str = 0,
    max_frames: int | None = None,
    boundaries: str = "adaptive",
    boundary_config: BoundaryConfig | None = None,
    num_inference_steps: int = 50,
    guidance_scale: float = 6.0,
    seed: int = 0,
    negative_prompt: str | None = None,
    paste_back_source: bool = True,
    paste_back_dilation: int | None = None,
    height: int | None = None,
    width: int | None = None,
    fps: float | None = None,
    lossless: bool = False,
    work_dir: str | os.PathLike | None = None,
    restart: bool = False,
    keep_work: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> LongEditResult:
    """Edit a video of any length (or an image) into `out` (a video file, or an image for an image), clip by clip.

    Args:
        keyframe: an edited frame (path or uint8 (H, W, 3)) showing source frame `keyframe_frame`.
        keyframe_frame: the frame the first shot's keyframe shows: an index in the first clip, or "auto" (the
            most representative frame of the first clip; edited alone first when no keyframe is given).
        max_frames: clip length, 4k+1 (default: the model's, `model_clip_frames`).
        height, width: the model's working size (multiples of 16; default: the pipeline's choice, the training
            bucket nearest the source's aspect or the source's aspect within the native area).
        boundaries: "adaptive" (hard cuts and content changes, `vivid.longvideo.boundaries`) or "fixed" windows.
        work_dir: where finished clips and the state live (default `<out>.work`); removed on success unless
            `keep_work`. An existing work folder of the same edit is resumed; `restart` discards it.
        progress: called with (finished clips, total clips) after each clip.
    """
    out = Path(out)
    work = Path(work_dir) if work_dir else default_work_dir(out)
    paths = {"--video": video, "--mask": mask, "--keyframe": keyframe}
    check_outputs(out, _is_image(video), paths, work_dir=work)
    check_edit_options(height, width, paste_back_dilation)
    prompt = resolve_prompt(prompt, task)
    check_sampling(num_inference_steps, guidance_scale)
    source, masks, key = open_edit_sources(video, mask, keyframe, fps=fps)
    n = len(source)
    max_frames = max_frames or model_clip_frames(pipe.transformer)
    check_clip_frames(max_frames)
    config = boundary_config or BoundaryConfig()

    identity = fingerprint(
        video=source.path if source.path else source.frames(range(n)),
        mask=masks.path if masks.path else np.asarray(mask),
        keyframe=key, keyframe_frame=keyframe_frame, prompt=prompt, task=task, max_frames=max_frames,
        boundaries=boundaries, boundary_config=config, steps=num_inference_steps, guidance=guidance_scale, seed=seed,
        negative_prompt=negative_prompt, paste_back=paste_back_source, dilation=paste_back_dilation, size=[height, width],
        model=str(getattr(pipe, "name_or_path", "")) or type(pipe.transformer).__name__,
        weights=str(getattr(pipe, "vivid_config", None)),
    )
    for path in (out, clip_plan_path(out)):  # what a run killed while writing them left (`atomic_path`)
        remove_stale_temporaries(path)
    state_path = work / STATE_NAME
    state = read_state(work) if state_path.exists() else None
    made_work = not work.exists()
    if state is not None and restart:
        made_work = bool(state.get("made_work"))
        remove_work_files(work, state)  # only what that edit recorded writing; other files stay
        state = None
    elif state is not None and (state.get("version") != STATE_VERSION or state.get("fingerprint") != identity):
        differ = sorted(k for k in identity if state.get("fingerprint", {}).get(k) != identity[k])
        raise ValueError(
            f"work folder {work} belongs to a different edit (differs in: {', '.join(differ) or 'version'}); "
            "delete it or restart the edit (--restart)"
        )
    remove_stale_temporaries(state_path)

    if state is None:
        has_mask = masks.any_per_frame(n)
        anchor_known = isinstance(keyframe_frame, int)
        check_from = 1 if key is not None and anchor_known and keyframe_frame == 0 else 0
        if not has_mask[check_from:].any():
            where = "after the keyframe" if check_from else "in every frame"
            raise ValueError(f"mask is empty {where}: nothing to edit")
        features = None
        if boundaries == "adaptive" or not anchor_known:
            features = compute_features(_feature_chunks(source, masks), config, num_frames=n)
            _release_free_memory()
        plan_b = plan_boundaries(features, max_frames, boundaries, config, num_frames=n)
        if anchor_known:
            anchor = int(keyframe_frame)
        elif keyframe_frame == "auto":
            first_stop = min([n - 1, max_frames - 1] + [c - 1 for c in plan_b.cuts])
            anchor = representative_frame(features, 0, first_stop, has_mask)
        else:
            raise ValueError(f"keyframe frame must be a frame index or 'auto', got {keyframe_frame!r}")
        if not 0 <= anchor < n:
            raise ValueError(f"keyframe frame {anchor} is outside the video (frames 0..{n - 1})")
        plan = plan_clips(n, max_frames, plan_b, anchor, keyframe_given=key is not None)
        del features, plan_b
        source.release_small_reader()
        _release_free_memory()
        files = [name for clip in plan.clips for name in clip_names(clip)]
        taken = [name for name in files if (work / name).exists()]
        if taken:
            raise ValueError(f"work folder {work} holds {taken[0]}, which this edit did not write; "
                             "give another --work-dir")
        # every file the edit will write, recorded before the first is written: cleaning up removes exactly these
        state = {"version": STATE_VERSION, "fingerprint": identity, "plan": plan.to_json(), "done": 0,
                 "fps": source.fps, "has_mask": np.flatnonzero(has_mask).tolist(), "files": files,
                 "made_work": made_work}
        work.mkdir(parents=True, exist_ok=True)
        write_json_atomic(state_path, state, indent=1)
    plan = ClipPlan.from_json(state["plan"])
    for name in state_files(state):
        remove_stale_temporaries(work / name)
    has_mask = np.zeros(n, bool)
    has_mask[state["has_mask"]] = True
    done = finished_clips(plan, work, int(state["done"]))
    resumed = done
    if done:
        logger.info("resuming %s: %d of %d clips already finished in %s", out, done, len(plan.clips), work)

    # one bar: the pipeline's over denoising steps for a single clip, else one over clips
    single = len(plan.clips) == 1
    previous_config = dict(getattr(pipe, "_progress_bar_config", {}))
    if not single:
        pipe.set_progress_bar_config(**{**previous_config, "disable": True})
    seconds: list[float] = []
    try:
        with tqdm(total=len(plan.clips), initial=done, unit="clip", desc="clips", disable=single) as bar:
            for clip in plan.clips[done:]:
                t0 = time.perf_counter()
                _run_clip(pipe, clip, plan, source, masks, has_mask, key, work, prompt, task, dict(
                    num_inference_steps=num_inference_steps, guidance_scale=guidance_scale, seed=seed,
                    negative_prompt=negative_prompt, paste_back_source=paste_back_source,
                    paste_back_dilation=paste_back_dilation, height=height, width=width))
                state["done"] = clip.index + 1
                write_json_atomic(state_path, state, indent=1)
                seconds.append(time.perf_counter() - t0)
                bar.update()
                if progress is not None:
                    progress(clip.index + 1, len(plan.clips))
    finally:
        pipe.set_progress_bar_config(**previous_config)

    assemble(plan, work, out, source.fps, lossless)
    if len(plan.clips) > 1:  # the clips and seams of a chained edit, for the boundary metric
        write_json_atomic(clip_plan_path(out), {"fps": source.fps, **plan.to_json(), "seams": plan.seams()}, indent=1)
    if not keep_work:
        remove_work_files(work, state)
        if state.get("made_work"):
            with contextlib.suppress(OSError):  # not empty: it holds files this edit did not write
                work.rmdir()
    return LongEditResult(out, n, source.fps, plan, resumed, seconds)


def _release_free_memory() -> None:
    """Give the heap pages freed by the feature pass back to the OS (glibc), so that they do not stay in the
    resident set under the model's working memory: peak memory then does not grow with the video's length."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        if libc is not None and hasattr(libc, "malloc_trim"):
            libc.malloc_trim(0)
    except OSError:  # not glibc: nothing to do
        pass


def _feature_chunks(source: VideoSource, masks: MaskSource):
    """(small frames, their masks) in chunks, for `compute_features`."""
    size = source.small_size()
    static = resize_mask(masks.frames([0]), size) if masks.count == 1 else None
    for start in range(0, len(source), SCAN_CHUNK):
        idx = range(start, min(start + SCAN_CHUNK, len(source)))
        small = source.small_frames(idx)
        mask = np.repeat(static, len(idx), axis=0) if static is not None else resize_mask(masks.frames(idx), size)
        yield small, mask


def _run_clip(
    pipe: Any, clip: Clip, plan: ClipPlan, source: VideoSource, masks: MaskSource, has_mask: np.ndarray,
    key: np.ndarray | None, work: Path, prompt: str, task: str, sampling: dict,
) -> None:
    frames_path, last_path = clip_files(work, clip.index)
    order = clip.order
    frames = source.frames(order)
    mask = masks.frames(order)
    if clip.key == "given":
        keyframe = key if key is not None else read_image(clip_files(work, anchor_clip(plan))[1], "keyframe")
    elif clip.key == "previous":
        keyframe = read_image(clip_files(work, clip.index - 1)[1], "keyframe")
    else:
        keyframe = None
    needs_edit = has_mask[order[1:] if keyframe is not None else order].any()
    if not needs_edit:
        edited = frames.copy()
    else:
        generator = torch.Generator(device="cpu").manual_seed(sampling["seed"] + clip.index)
        edited = pipe(
            video=frames, mask=mask, prompt=prompt, task=task, keyframe=keyframe,
            negative_prompt=sampling["negative_prompt"], num_inference_steps=sampling["num_inference_steps"],
            guidance_scale=sampling["guidance_scale"], generator=generator, output_type="uint8",
            paste_back_source=sampling["paste_back_source"], paste_back_dilation=sampling["paste_back_dilation"],
            height=sampling["height"], width=sampling["width"],
        ).frames[0]
    if keyframe is not None:
        edited[0] = keyframe  # KIVE: the keyframe is the edit of its frame, exactly
    write_image(last_path, edited[-1])  # the keyframe of the next clip (chain order)
    if clip.reverse:
        edited = edited[::-1]
    lo, hi = clip.write_start - clip.start, clip.write_stop - clip.start + 1
    if hi > lo:
        write_video(frames_path, edited[lo:hi], source.fps, lossless=True)


def anchor_clip(plan: ClipPlan) -> int:
    return next(c.index for c in plan.clips if c.anchor_only)
