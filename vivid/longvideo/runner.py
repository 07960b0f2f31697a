"""The clip runner: `chain_edit` edits a video clip by clip along its plan (`vivid.longvideo.plan`), each finished
clip written to the work folder (`vivid.longvideo.state`) at once, the output assembled from them at the end
(`vivid.longvideo.assemble`). One clip (a short video, an image) is a plan of one clip."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from vivid.longvideo.boundaries import compute_features, plan_boundaries, representative_frame
from vivid.io.atomic import remove_stale_temporaries, write_json_atomic
from vivid.io.images import read_image, write_image
from vivid.io.masks import SCAN_CHUNK, MaskSource
from vivid.io.resize import resize_mask
from vivid.io.video import VideoSource, write_video
from vivid.longvideo.assemble import assemble
from vivid.longvideo.plan import CLIP_PLAN_NAME, Clip, ClipPlan, clip_plan_path, model_clip_frames, plan_clips
from vivid.longvideo.parallel import (
    JOINT,
    Ranks,
    chains,
    clip_keyframes,
    edit_joint_keyframes,
    joint_frames,
    keyframe_file,
    keyframe_names,
    last_frame_kive,
    parallel_plan,
    process_ranks,
)
from vivid.longvideo.request import EditOptions, EditRequest
from vivid.longvideo.state import (
    STATE_NAME,
    STATE_VERSION,
    clip_files,
    clip_problem,
    clip_names,
    fingerprint,
    finished_clips,
    read_state,
    remove_work_files,
    state_files,
)

from vivid.model.registry import spec_for

logger = logging.getLogger(__name__)

FULL_FRAME = 0.999  # a mask covering this share of a clip's pixels is full-frame: warned about


@dataclass
class LongEditResult:
    path: Path
    num_frames: int
    fps: float
    plan: ClipPlan
    resumed_clips: int  # clips found finished in the work folder
    seconds_per_clip: list[float]  # of the clips run now


class EditInterrupted(KeyboardInterrupt):
    """An edit stopped by the user (Ctrl-C): its message says how to resume it."""


def chain_edit(
    pipe: Any, request: EditRequest, progress: Callable[[int, int], None] | None = None
) -> LongEditResult:
    """Run a checked edit (`vivid.longvideo.request.edit_request`): a video of any length (or an image) into
    `request.out`, clip by clip (`options.long_mode` "chain": each from the previous one's last frame; "parallel":
    each between two jointly edited keyframes, `vivid.longvideo.parallel`). Steps, guidance and the clip length the
    request leaves open are the base's. Under `accelerate launch`, parallel mode's ranks take clips in turn and
    rank 0 assembles; chain mode runs on rank 0.

    An existing work folder of the same edit is resumed (`options.restart` discards it); it is removed on success
    unless `options.keep_work`. `progress` is called with (finished clips, total clips) after each clip.
    """
    opts = request.options
    if request.out is None:
        raise ValueError(f"give {request.labels['out']}: this request edits the keyframes only (edit_keyframes_first)")
    sampling = base_sampling(pipe, opts)
    fps = output_fps(pipe, request)
    max_frames = opts.clip_frames or model_clip_frames(pipe.transformer)
    work, n, ranks = request.work, len(request.source), process_ranks()
    if ranks.main:
        for path in (request.out, clip_plan_path(work)):  # what a run killed while writing them left
            remove_stale_temporaries(path)
        state = _start_or_resume(pipe, request, sampling, max_frames)
        for name in state_files(state):
            remove_stale_temporaries(work / name)
    ranks.barrier()
    if not ranks.main:
        state = _joined_state(pipe, request, sampling, max_frames)
    plan = ClipPlan.from_json(state["plan"])
    has_mask = np.zeros(n, bool)
    has_mask[state["has_mask"]] = True
    sampling = dict(sampling, fps=fps)
    if any(c.key == JOINT for c in plan.clips):
        done, seconds = _run_parallel(pipe, request, plan, has_mask, sampling, ranks, progress)
    elif not ranks.main:
        logger.info("rank %d: a chained edit runs on rank 0 alone (--long-mode parallel shares clips)", ranks.rank)
        return LongEditResult(request.out, n, fps, plan, 0, [])
    else:
        done = finished_clips(plan, work, int(state["done"]))
        if done:
            logger.info("resuming %s: %d of %d clips already finished in %s", request.out, done, len(plan.clips), work)
        seconds = _run_clips(pipe, request, plan, state, has_mask, sampling, done, progress)
    if not ranks.main:
        return LongEditResult(request.out, n, fps, plan, done, seconds)
    assemble(plan, work, request.out, fps, opts.lossless)
    if len(plan.clips) > 1:  # the clips and seams of a chained edit, for the boundary metric
        write_json_atomic(clip_plan_path(work), {"fps": fps, **plan.to_json(), "seams": plan.seams()}, indent=1)
    if not opts.keep_work:
        remove_work_files(work, state)
        if state.get("made_work"):
            with contextlib.suppress(OSError):  # not empty: it holds files this edit did not write
                work.rmdir()
    return LongEditResult(request.out, n, fps, plan, done, seconds)


def edit_keyframes_first(pipe: Any, request: EditRequest) -> list[tuple[int, np.ndarray]]:
    """Parallel mode's first step alone, to look at before the clips run: plan the edit in its work folder (or
    resume it there) and edit its joint keyframes as `chain_edit` does, so that `chain_edit` of the same edit in
    the same work folder then runs only the clips (the keyframes are not edited again; an edit that differs in
    anything is refused by the folder's state, as for any resumed edit). Returns the keyframes at the clips' ends
    as (source frame, uint8 (H, W, 3) image) in frame order, the user's keyframe among them where given."""
    opts, labels, work = request.options, request.labels, request.work
    if opts.long_mode != "parallel":
        raise ValueError(f"keyframes are edited before the clips with {labels['long_mode']} parallel only, "
                         f"got {opts.long_mode!r}")
    sampling = base_sampling(pipe, opts)
    max_frames = opts.clip_frames or model_clip_frames(pipe.transformer)
    fresh = opts.restart or not (work / STATE_NAME).exists()
    state = _start_or_resume(pipe, request, sampling, max_frames)
    for name in state_files(state):
        remove_stale_temporaries(work / name)
    plan = ClipPlan.from_json(state["plan"])
    if not any(c.key == JOINT for c in plan.clips):
        if fresh:  # what this call wrote: nothing of it is left
            remove_work_files(work, state)
            if state.get("made_work"):
                with contextlib.suppress(OSError):
                    work.rmdir()
        one_clip = sum(not c.anchor_only for c in plan.clips) <= 1
        reason = (f"{labels['video']} is one clip of the model (clips of {max_frames} frames)" if one_clip else
                  f"the weights take no last keyframe (trained without last-frame KIVE) and the one segment starts "
                  f"at {labels['keyframe']}")
        raise ValueError(f"no keyframes to edit jointly: {reason}; run the edit directly")
    edit_joint_keyframes(pipe, request, plan, sampling)
    keyframes = {f: read_image(keyframe_file(work, f), "joint keyframe") for f in joint_frames(plan)}
    if request.keyframe is not None:
        keyframes.update({c.order[0]: request.keyframe for c in plan.clips if c.key == "given"})
    return sorted(keyframes.items())


def _run_parallel(
    pipe: Any, request: EditRequest, plan: ClipPlan, has_mask: np.ndarray, sampling: dict, ranks: Ranks,
    progress: Callable[[int, int], None] | None,
) -> tuple[int, list[float]]:
    """Parallel mode: rank 0 edits the joint keyframes; then each rank runs its chains of clips (chain g on rank
    g mod world; with last-frame KIVE a chain is one clip), skipping clips whose files are finished (a resumed
    or a killed run's); all ranks wait for each other before rank 0 assembles. (Clips finished before, seconds
    per clip run here.)"""
    work = request.work
    if ranks.main:
        edit_joint_keyframes(pipe, request, plan, sampling)
    ranks.barrier()
    mine = [clip for g, run in enumerate(chains(plan)) if g % ranks.world == ranks.rank for clip in run]
    todo = [clip for clip in mine if clip_problem(work, clip) is not None]
    if ranks.world > 1:
        logger.info("rank %d of %d: clips %s", ranks.rank, ranks.world, [clip.index for clip in mine])
    done = len(mine) - len(todo)
    if done:
        logger.info("resuming %s: %d of this process's %d clips already finished in %s", request.out, done,
                    len(mine), work)
    seconds = _run_clip_list(pipe, request, plan, todo, has_mask, sampling, progress)
    ranks.barrier()
    if ranks.main:
        missing = [c.index for c in plan.clips if clip_problem(work, c) is not None]
        if missing:
            raise RuntimeError(f"clips {missing} of {work} are not finished after every process ran: run the same "
                               f"edit again to finish them")
    return done, seconds


def _joined_state(pipe: Any, request: EditRequest, sampling: dict, max_frames: int) -> dict:
    """A rank other than 0: the state rank 0 started or resumed, which must be this edit's."""
    state = read_state(request.work, request.labels["work_dir"])
    if state.get("fingerprint") != _identity(pipe, request, sampling, max_frames):
        raise ValueError(f"work folder {request.work} holds another edit than this process's: every process must "
                         f"be given the same edit")
    return state


def output_fps(pipe: Any, request: EditRequest) -> float:
    """The output's frame rate: a video file's own, the one given for frames, else the base's native rate."""
    if request.source.path is not None or request.fps:
        return request.source.fps
    return float(spec_for(pipe.transformer).native_fps)


def base_sampling(pipe: Any, opts: EditOptions) -> dict:
    """The pipeline call's sampling keywords: steps and guidance the user left open are the base's
    (`ModelSpecification.default_num_inference_steps` / `default_guidance_scale`)."""
    spec = spec_for(pipe.transformer)
    steps = spec.default_num_inference_steps if opts.num_inference_steps is None else opts.num_inference_steps
    guidance = spec.default_guidance_scale if opts.guidance_scale is None else opts.guidance_scale
    return dict(num_inference_steps=steps, guidance_scale=guidance, seed=opts.seed,
                negative_prompt=opts.negative_prompt, paste_back_source=opts.paste_back_source,
                paste_back_dilation=opts.paste_back_dilation, height=opts.height, width=opts.width)


def _identity(pipe: Any, request: EditRequest, sampling: dict, max_frames: int) -> dict:
    """What makes two runs the same edit (a work folder resumes only the same edit)."""
    opts, source = request.options, request.source
    mask = request.mask_input
    # parallel mode's options only where chosen: a chained edit's work folder of an earlier version still resumes
    parallel = {"long_mode": opts.long_mode, "kv_budget": opts.kv_budget} if opts.long_mode != "chain" else {}
    # reference images only where given: the work folder of an edit without them (of an earlier version) resumes
    references = {"reference_images": [[list(image.shape), fingerprint(image=image)["image"]]
                                       for image in request.reference_images]} if request.reference_images else {}
    return fingerprint(
        video=source.path if source.path else source.frames(range(len(source))),
        mask=mask if isinstance(mask, Path) else np.asarray(mask),
        keyframe=request.keyframe, keyframe_frame=opts.keyframe_frame, prompt=request.prompt, task=request.task,
        max_frames=max_frames, boundaries=opts.boundaries, boundary_config=opts.boundary_config,
        steps=sampling["num_inference_steps"], guidance=sampling["guidance_scale"], seed=opts.seed,
        negative_prompt=opts.negative_prompt, paste_back=opts.paste_back_source, dilation=opts.paste_back_dilation,
        size=[opts.height, opts.width],
        model=str(getattr(pipe, "name_or_path", "")) or type(pipe.transformer).__name__,
        weights=str(getattr(pipe, "vivid_config", None)), **parallel, **references,
    )


def _start_or_resume(pipe: Any, request: EditRequest, sampling: dict, max_frames: int) -> dict:
    """The state of this edit in its work folder: resumed, restarted, or planned afresh and recorded."""
    work, labels = request.work, request.labels
    identity = _identity(pipe, request, sampling, max_frames)
    state_path = work / STATE_NAME
    state = read_state(work, labels["work_dir"]) if state_path.exists() else None
    made_work = not work.exists()
    if state is not None and request.options.restart:
        made_work = bool(state.get("made_work"))
        remove_work_files(work, state)  # only what that edit recorded writing; other files stay
        state = None
    elif state is not None and (state.get("version") != STATE_VERSION or state.get("fingerprint") != identity):
        recorded = state.get("fingerprint", {})
        differ = sorted(k for k in set(identity) | set(recorded) if recorded.get(k) != identity.get(k))
        raise ValueError(
            f"work folder {work} belongs to a different edit (differs in: {', '.join(differ) or 'version'}); "
            f"delete it or restart the edit ({labels['restart']})"
        )
    remove_stale_temporaries(state_path)
    if state is not None:
        return state
    plan, has_mask = _plan(request, max_frames, last_frame_kive(pipe))
    files = [name for clip in plan.clips for name in clip_names(clip)] + keyframe_names(plan) + [CLIP_PLAN_NAME]
    taken = [name for name in files if (work / name).exists()]
    if taken:
        raise ValueError(f"work folder {work} holds {taken[0]}, which this edit did not write; "
                         f"give another {labels['work_dir']}")
    # every file the edit will write, recorded before the first is written: cleaning up removes exactly these
    state = {"version": STATE_VERSION, "fingerprint": identity, "plan": plan.to_json(), "done": 0,
             "fps": output_fps(pipe, request), "has_mask": np.flatnonzero(has_mask).tolist(), "files": files,
             "made_work": made_work}
    work.mkdir(parents=True, exist_ok=True)
    write_json_atomic(state_path, state, indent=1)
    return state


def _plan(request: EditRequest, max_frames: int, between_keyframes: bool) -> tuple[ClipPlan, np.ndarray]:
    """The clips of a new edit and which frames have a mask (one streamed pass over the masks; the feature pass
    for adaptive boundaries or an "auto" keyframe frame); in parallel mode with more than one clip, the parallel
    plan (`between_keyframes`: the weights take a last keyframe)."""
    opts, source, masks = request.options, request.source, request.masks
    n, key, keyframe_frame = len(source), request.keyframe, opts.keyframe_frame
    has_mask = masks.any_per_frame(n)
    anchor_known = isinstance(keyframe_frame, int)
    check_from = 1 if key is not None and anchor_known and keyframe_frame == 0 else 0
    if not has_mask[check_from:].any():
        where = "after the keyframe" if check_from else "in every frame"
        raise ValueError(f"mask is empty {where}: nothing to edit")
    features = None
    if opts.boundaries == "adaptive" or not anchor_known:
        features = compute_features(_feature_chunks(source, masks), opts.boundary_config, num_frames=n)
        _release_free_memory()
    plan_b = plan_boundaries(features, max_frames, opts.boundaries, opts.boundary_config, num_frames=n)
    if anchor_known:
        anchor = int(keyframe_frame)
    else:
        first_stop = min([n - 1, max_frames - 1] + [c - 1 for c in plan_b.cuts])
        anchor = representative_frame(features, 0, first_stop, has_mask)
    if not 0 <= anchor < n:
        raise ValueError(f"keyframe frame {anchor} is outside the video (frames 0..{n - 1})")
    plan = plan_clips(n, max_frames, plan_b, anchor, keyframe_given=key is not None)
    if opts.long_mode == "parallel" and sum(not c.anchor_only for c in plan.clips) > 1:
        if not between_keyframes:
            logger.warning("these weights were trained without last-frame KIVE (kive_last_frame_prob 0): "
                           "--long-mode parallel runs as joint keyframes + chaining within each segment")
        plan = parallel_plan(plan, between_keyframes, keyframe_given=key is not None)
    del features, plan_b
    source.release_small_reader()
    _release_free_memory()
    return plan, has_mask


def _run_clips(
    pipe: Any, request: EditRequest, plan: ClipPlan, state: dict, has_mask: np.ndarray, sampling: dict, done: int,
    progress: Callable[[int, int], None] | None,
) -> list[float]:
    """Edit the clips from `done` on, recording each finished one in the state; seconds per clip run."""
    state_path = request.work / STATE_NAME
    # one bar: the pipeline's over denoising steps for a single clip, else one over clips
    single = len(plan.clips) == 1
    previous_config = dict(getattr(pipe, "_progress_bar_config", {}))
    if not single:
        pipe.set_progress_bar_config(**{**previous_config, "disable": True})
    seconds: list[float] = []
    try:
        with _resume_note(request, state, len(plan.clips)), \
                tqdm(total=len(plan.clips), initial=done, unit="clip", desc="clips", disable=single) as bar:
            for clip in plan.clips[done:]:
                t0 = time.perf_counter()
                _run_clip(pipe, clip, plan, request, has_mask, sampling)
                state["done"] = clip.index + 1
                write_json_atomic(state_path, state, indent=1)
                seconds.append(time.perf_counter() - t0)
                bar.update()
                if progress is not None:
                    progress(clip.index + 1, len(plan.clips))
    finally:
        pipe.set_progress_bar_config(**previous_config)
    return seconds


def _run_clip_list(
    pipe: Any, request: EditRequest, plan: ClipPlan, clips: list[Clip], has_mask: np.ndarray, sampling: dict,
    progress: Callable[[int, int], None] | None,
) -> list[float]:
    """Edit `clips` (parallel mode: any order, each clip's files its record of being finished); seconds per clip."""
    previous_config = dict(getattr(pipe, "_progress_bar_config", {}))
    pipe.set_progress_bar_config(**{**previous_config, "disable": True})
    seconds: list[float] = []
    note = {"done": "some"}  # finished clips are those whose files exist: any run of the same edit resumes them
    try:
        with _resume_note(request, note, len(plan.clips)), tqdm(total=len(clips), unit="clip", desc="clips") as bar:
            for clip in clips:
                t0 = time.perf_counter()
                _run_clip(pipe, clip, plan, request, has_mask, sampling)
                seconds.append(time.perf_counter() - t0)
                bar.update()
                if progress is not None:
                    progress(len(seconds), len(clips))
    finally:
        pipe.set_progress_bar_config(**previous_config)
    return seconds


def _interrupted_message(request: EditRequest, state: dict, total: int) -> str:
    return (f"stopped after {state['done']} of {total} clips, kept in {request.work}: run the same edit again to "
            f"resume it (or with {request.labels['restart']} to start over)")


@contextlib.contextmanager
def _resume_note(request: EditRequest, state: dict, total: int):
    """Turn Ctrl-C while clips run into `EditInterrupted` saying how to resume, also when the interrupt reached
    the video writer's ffmpeg first (a broken pipe raised before Python's own KeyboardInterrupt)."""
    interrupted = threading.Event()
    previous = None
    if threading.current_thread() is threading.main_thread():
        def on_interrupt(signum, frame):
            interrupted.set()
            raise KeyboardInterrupt

        previous = signal.signal(signal.SIGINT, on_interrupt)
    try:
        try:
            yield
        except BaseException as err:
            if isinstance(err, KeyboardInterrupt) or interrupted.is_set():
                raise EditInterrupted(_interrupted_message(request, state, total)) from None
            raise
    except KeyboardInterrupt as err:  # one that arrived while the first was being handled
        if isinstance(err, EditInterrupted):
            raise
        raise EditInterrupted(_interrupted_message(request, state, total)) from None
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


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
    pipe: Any, clip: Clip, plan: ClipPlan, request: EditRequest, has_mask: np.ndarray, sampling: dict
) -> None:
    frames_path, last_path = clip_files(request.work, clip.index)
    order = clip.order
    frames = request.source.frames(order)
    mask = request.masks.frames(order)
    keyframe, last_keyframe = clip_keyframes(
        clip, request, lambda: read_image(clip_files(request.work, clip.index - 1)[1], "keyframe"),
        lambda: request.keyframe if request.keyframe is not None
        else read_image(clip_files(request.work, anchor_clip(plan))[1], "keyframe"))
    inner = order[1 if keyframe is not None else 0: -1 if last_keyframe is not None else None]
    needs_edit = has_mask[inner].any()
    coverage = float(mask.mean())
    full = coverage >= FULL_FRAME
    logger.log(logging.WARNING if full else logging.INFO, "clip %d of %d (frames %d..%d): the mask covers %.1f%% of "
               "the pixels%s", clip.index + 1, len(plan.clips), min(order), max(order), 100.0 * coverage,
               ": the whole frame is regenerated, the source kept nowhere" if full else "")
    if not needs_edit:
        edited = frames.copy()
    else:
        generator = torch.Generator(device="cpu").manual_seed(sampling["seed"] + clip.index)
        call = {k: v for k, v in sampling.items() if k not in ("seed", "fps")}
        extra = {"last_keyframe": last_keyframe} if last_keyframe is not None else {}
        if request.reference_images:  # as given for every clip (a base without them refuses them)
            extra["reference_images"] = list(request.reference_images)
        edited = pipe(video=frames, mask=mask, prompt=request.prompt, task=request.task, keyframe=keyframe,
                      generator=generator, output_type="uint8", **extra, **call).frames[0]
    if keyframe is not None:
        edited[0] = keyframe  # KIVE: the keyframe is the edit of its frame, exactly
    if last_keyframe is not None:
        edited[-1] = last_keyframe
    write_image(last_path, edited[-1])  # the keyframe of the next clip (chain order)
    if clip.reverse:
        edited = edited[::-1]
    lo, hi = clip.write_start - clip.start, clip.write_stop - clip.start + 1
    if hi > lo:
        write_video(frames_path, edited[lo:hi], sampling["fps"], lossless=True)


def anchor_clip(plan: ClipPlan) -> int:
    return next(c.index for c in plan.clips if c.anchor_only)
