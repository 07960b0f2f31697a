"""Editing videos of any length clip by clip, with KIVE chaining, streaming I/O and resume.

A long video is cut into clips of 4k+1 frames (at most the model's clip length, `sample_frames` of its
transformer: 49 for CogVideoX-5B). Neighbouring clips of one shot share their boundary frame: the last edited
frame of a clip is the keyframe (KIVE) of the next, so the edit is carried through the video. A clip after a
hard cut starts afresh. The first clip's keyframe can be given by the user, or chosen (the most representative
frame of the first clip, `vivid.keyframes.representative_frame`) and edited alone first; a keyframe inside the
first clip is propagated backward (the clip's frames reversed) and forward from there.

Frames are decoded per clip and each finished clip is written at once to a work folder beside the output
(`<out>.work/`: one lossless video and the clip's last edited frame as PNG per clip, and `state.json`, all
written atomically). A killed edit run again with the same arguments resumes after its last finished clip;
the output is assembled by streaming the clip files into the final video, so memory does not grow with length.
Clip i is sampled with seed `seed + i`, so a resumed edit is the edit that would have run uninterrupted.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vivid.constants import VAE_TEMPORAL
from vivid.keyframes import (
    BoundaryConfig,
    BoundaryPlan,
    check_clip_frames,
    compute_features,
    plan_boundaries,
    representative_frame,
)
from vivid.io.atomic import atomic_path, remove_stale_temporaries
from vivid.io.images import read_image, write_image
from vivid.io.masks import MaskSource
from vivid.io.video import VideoSource, VideoWriter, read_video, variable_rate_note, write_video

logger = logging.getLogger(__name__)

STATE_VERSION = 2  # 2: the state records the files the edit writes
FEATURE_CHUNK = 16


# ---------------------------------------------------------------------------------------------- plans
@dataclass(frozen=True)
class Clip:
    """One pipeline call. Source frames [start, stop] (inclusive) are fed in order, or reversed when `reverse`
    (backward propagation from a keyframe inside the first clip). `key` is where frame 0's keyframe comes
    from: "none" (a plain edit), "given" (the first shot's keyframe), "previous" (the previous clip's last
    edited frame). `anchor_only`: the single-frame edit that makes the first shot's keyframe (writes nothing).
    The clip writes source frames [write_start, write_stop] to the output."""

    index: int
    start: int
    stop: int
    key: str = "none"
    reverse: bool = False
    anchor_only: bool = False
    write_start: int = 0
    write_stop: int = -1

    @property
    def order(self) -> list[int]:
        frames = list(range(self.start, self.stop + 1))
        return frames[::-1] if self.reverse else frames

    @property
    def num_frames(self) -> int:
        return self.stop - self.start + 1


@dataclass
class ClipPlan:
    num_frames: int
    max_frames: int
    clips: list[Clip]
    cuts: list[int] = field(default_factory=list)
    boundaries: list[int] = field(default_factory=list)
    anchor: int = 0

    def to_json(self) -> dict:
        return {
            "num_frames": self.num_frames, "max_frames": self.max_frames, "cuts": self.cuts,
            "boundaries": self.boundaries, "anchor": self.anchor, "clips": [asdict(c) for c in self.clips],
        }

    @classmethod
    def from_json(cls, d: dict) -> "ClipPlan":
        return cls(
            num_frames=d["num_frames"], max_frames=d["max_frames"], cuts=list(d["cuts"]),
            boundaries=list(d["boundaries"]), anchor=d["anchor"], clips=[Clip(**c) for c in d["clips"]],
        )

    def seams(self) -> list[int]:
        """Frames t where output pair (t, t+1) comes from two clips carried over by a keyframe (not a hard cut):
        what `vivid.metrics.boundary.boundary_tc` compares against the pairs inside clips."""
        return sorted(c.start for c in self.clips if not c.reverse and not c.anchor_only and c.write_start == c.start + 1)


def _windows(start: int, last: int, max_frames: int, boundaries: Sequence[int]) -> list[tuple[int, int]]:
    """Clips covering [start, last] that share boundary frames, split at `boundaries` and at `max_frames`."""
    windows = []
    stops = sorted(b for b in set(boundaries) if start < b < last) + [last]
    s = start
    for b in stops:
        while b - s + 1 > max_frames:
            windows.append((s, s + max_frames - 1))
            s += max_frames - 1
        if b > s or not windows:
            windows.append((s, b))
        s = b
    return windows


def plan_clips(
    num_frames: int,
    max_frames: int,
    boundaries: BoundaryPlan | None = None,
    anchor: int = 0,
    keyframe_given: bool = False,
) -> ClipPlan:
    """The clips of a long edit. `anchor` is the frame the first shot's keyframe shows (0 = first frame);
    when `keyframe_given` is False and anchor > 0, that frame is edited alone first (an `anchor_only` clip)."""
    check_clip_frames(max_frames)
    boundaries = boundaries or BoundaryPlan()
    edges = [0, *sorted(c for c in set(boundaries.cuts) if 0 < c < num_frames), num_frames]
    if not 0 <= anchor < edges[1]:
        raise ValueError(f"keyframe frame {anchor} is outside the first shot (frames 0..{edges[1] - 1})")
    if anchor > max_frames - 1:
        raise ValueError(f"keyframe frame {anchor} must lie in the first clip (frames 0..{max_frames - 1})")
    clips: list[Clip] = []

    for shot, (seg_start, seg_stop) in enumerate(zip(edges[:-1], edges[1:])):
        last = seg_stop - 1
        first_key = "given" if shot == 0 and (keyframe_given or anchor > 0) else "none"
        begin = seg_start
        if shot == 0 and anchor > 0:
            if not keyframe_given:
                clips.append(Clip(len(clips), anchor, anchor, "none", anchor_only=True, write_start=anchor + 1, write_stop=anchor))
            clips.append(Clip(len(clips), 0, anchor, "given", reverse=True, write_start=0, write_stop=anchor))
            begin = anchor
        if begin == last and shot == 0 and anchor > 0:
            continue
        for i, (s, e) in enumerate(_windows(begin, last, max_frames, boundaries.boundaries)):
            if i == 0:
                skip = shot == 0 and anchor > 0
                clips.append(Clip(len(clips), s, e, first_key, write_start=s + 1 if skip else s, write_stop=e))
            else:
                clips.append(Clip(len(clips), s, e, "previous", write_start=s + 1, write_stop=e))
    plan = ClipPlan(num_frames, max_frames, clips, list(boundaries.cuts), [], anchor)
    plan.boundaries = plan.seams()
    return plan


# ---------------------------------------------------------------------------------------------- running
@dataclass
class LongEditResult:
    path: Path
    num_frames: int
    fps: float
    plan: ClipPlan
    resumed_clips: int  # clips found finished in the work folder
    seconds_per_clip: list[float]  # of the clips run now


def _fingerprint(**parts: Any) -> dict:
    out = {}
    for k, v in parts.items():
        if isinstance(v, np.ndarray):
            v = hashlib.sha1(np.ascontiguousarray(v).tobytes()).hexdigest()
        elif isinstance(v, Path):
            st = v.stat() if v.exists() else None
            v = {"path": str(v.resolve()), "size": st.st_size if st else None, "mtime_ns": st.st_mtime_ns if st else None}
        elif isinstance(v, BoundaryConfig):
            v = asdict(v)
        out[k] = v
    return json.loads(json.dumps(out, default=str))


def _write_json(path: Path, data: dict) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=1))


def default_work_dir(out: str | os.PathLike) -> Path:
    out = Path(out)
    return out.parent / f"{out.name}.work"


def model_clip_frames(transformer: Any) -> int:
    """The model's native clip length (frames), from its transformer config (`sample_frames`)."""
    n = int(transformer.config.sample_frames)
    return VAE_TEMPORAL * ((n - 1) // VAE_TEMPORAL) + 1


def _load_keyframe(keyframe: Any, height: int, width: int) -> np.ndarray | None:
    if keyframe is None:
        return None
    key = read_image(keyframe, "keyframe") if isinstance(keyframe, (str, os.PathLike)) else np.asarray(keyframe)
    if key.ndim == 4 and key.shape[0] == 1:
        key = key[0]
    if key.ndim != 3 or key.shape[-1] != 3 or key.dtype != np.uint8:
        raise ValueError(f"keyframe must be one uint8 RGB frame (H, W, 3), got {key.dtype} {key.shape}")
    if key.shape[:2] != (height, width):
        raise ValueError(f"keyframe size {key.shape[1]}x{key.shape[0]} differs from the video's {width}x{height} (WxH)")
    return key


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
    """Edit a video of any length into `out` (a video file), clip by clip.

    Args:
        keyframe: an edited frame (path or uint8 (H, W, 3)) showing source frame `keyframe_frame`.
        keyframe_frame: the frame the first shot's keyframe shows: an index in the first clip, or "auto" (the
            most representative frame of the first clip; edited alone first when no keyframe is given).
        max_frames: clip length, 4k+1 (default: the model's `sample_frames`).
        height, width: the model's working size (multiples of 16; default: the pipeline's choice, the training
            bucket nearest the source's aspect or the source's aspect within the native area).
        boundaries: "adaptive" (hard cuts and content changes, `vivid.keyframes`) or "fixed" windows.
        work_dir: where finished clips and the state live (default `<out>.work`); removed on success unless
            `keep_work`. An existing work folder of the same edit is resumed; `restart` discards it.
        progress: called with (finished clips, total clips) after each clip.
    """
    from vivid.inputs import check_edit_options, check_outputs, check_sampling, resolve_prompt

    out = Path(out)
    work = Path(work_dir) if work_dir else default_work_dir(out)
    check_outputs(out, False, {"--video": video, "--mask": mask, "--keyframe": keyframe}, work_dir=work)
    check_edit_options(height, width, paste_back_dilation)
    prompt = resolve_prompt(prompt, task)
    check_sampling(num_inference_steps, guidance_scale)
    source = VideoSource(video, fps=fps)
    n = len(source)
    masks = MaskSource(mask, n, source.height, source.width, timing=source.timing() if source.path else None)
    if source.path:
        note = variable_rate_note(source.timing(), str(source.path))
        if note:
            logger.warning("%s", note)
    key = _load_keyframe(keyframe, source.height, source.width)
    max_frames = max_frames or model_clip_frames(pipe.transformer)
    check_clip_frames(max_frames)
    config = boundary_config or BoundaryConfig()

    fingerprint = _fingerprint(
        video=source.path if source.path else np.asarray(video), mask=masks.path if masks.path else np.asarray(mask),
        keyframe=key, keyframe_frame=keyframe_frame, prompt=prompt, task=task, max_frames=max_frames,
        boundaries=boundaries, boundary_config=config, steps=num_inference_steps, guidance=guidance_scale, seed=seed,
        negative_prompt=negative_prompt, paste_back=paste_back_source, dilation=paste_back_dilation, size=[height, width],
        model=str(getattr(pipe, "name_or_path", "")) or type(pipe.transformer).__name__,
        weights=str(getattr(pipe, "vivid_config", None)),
    )
    for path in (out, clip_plan_path(out)):  # what a run killed while writing them left (`atomic_path`)
        remove_stale_temporaries(path)
    state_path = work / "state.json"
    state = _read_state(work) if state_path.exists() else None
    made_work = not work.exists()
    if state is not None and restart:
        made_work = bool(state.get("made_work"))
        _remove_work_files(work, state)  # only what that edit recorded writing; other files stay
        state = None
    elif state is not None and (state.get("version") != STATE_VERSION or state.get("fingerprint") != fingerprint):
        differ = sorted(k for k in fingerprint if state.get("fingerprint", {}).get(k) != fingerprint[k])
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
        files = [name for clip in plan.clips for name in _clip_names(clip)]
        taken = [name for name in files if (work / name).exists()]
        if taken:
            raise ValueError(f"work folder {work} holds {taken[0]}, which this edit did not write; "
                             "give another --work-dir")
        # every file the edit will write, recorded before the first is written: cleaning up removes exactly these
        state = {"version": STATE_VERSION, "fingerprint": fingerprint, "plan": plan.to_json(), "done": 0,
                 "fps": source.fps, "has_mask": np.flatnonzero(has_mask).tolist(), "files": files,
                 "made_work": made_work}
        work.mkdir(parents=True, exist_ok=True)
        _write_json(state_path, state)
    plan = ClipPlan.from_json(state["plan"])
    for name in _state_files(state):
        remove_stale_temporaries(work / name)
    has_mask = np.zeros(n, bool)
    has_mask[state["has_mask"]] = True
    done = _finished_clips(plan, work, int(state["done"]))
    resumed = done
    if done:
        logger.info("resuming %s: %d of %d clips already finished in %s", out, done, len(plan.clips), work)

    from tqdm.auto import tqdm

    previous_config = dict(getattr(pipe, "_progress_bar_config", {}))
    pipe.set_progress_bar_config(**{**previous_config, "disable": True})  # one bar, over clips
    seconds: list[float] = []
    try:
        with tqdm(total=len(plan.clips), initial=done, unit="clip", desc="clips") as bar:
            for clip in plan.clips[done:]:
                t0 = time.perf_counter()
                _run_clip(pipe, clip, plan, source, masks, has_mask, key, work, prompt, task, dict(
                    num_inference_steps=num_inference_steps, guidance_scale=guidance_scale, seed=seed,
                    negative_prompt=negative_prompt, paste_back_source=paste_back_source,
                    paste_back_dilation=paste_back_dilation, height=height, width=width))
                state["done"] = clip.index + 1
                _write_json(state_path, state)
                seconds.append(time.perf_counter() - t0)
                bar.update()
                if progress is not None:
                    progress(clip.index + 1, len(plan.clips))
    finally:
        pipe.set_progress_bar_config(**previous_config)

    _assemble(plan, work, out, source.fps, lossless)
    sidecar = clip_plan_path(out)
    _write_json(sidecar, {"fps": source.fps, **plan.to_json(), "seams": plan.seams()})
    if not keep_work:
        _remove_work_files(work, state)
        if state.get("made_work"):
            with contextlib.suppress(OSError):  # not empty: it holds files this edit did not write
                work.rmdir()
    return LongEditResult(out, n, source.fps, plan, resumed, seconds)


def clip_plan_path(out: str | os.PathLike) -> Path:
    """The JSON written beside a chained edit's output: its clips, cuts and seams (for the boundary metric)."""
    out = Path(out)
    return out.parent / f"{out.stem}.clips.json"


def load_clip_plan(path: str | os.PathLike) -> ClipPlan:
    """The clip plan of a chained edit, from its output video or its `.clips.json`."""
    path = Path(path)
    if path.suffix != ".json":
        path = clip_plan_path(path)
    return ClipPlan.from_json(json.loads(path.read_text()))


def _release_free_memory() -> None:
    """Give the heap pages freed by the feature pass back to the OS (glibc), so that they do not stay in the
    resident set under the model's working memory: peak memory then does not grow with the video's length."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        if libc is not None and hasattr(libc, "malloc_trim"):
            libc.malloc_trim(0)
    except OSError:  # not glibc: nothing to do
        pass


def _feature_chunks(source: VideoSource, masks: MaskSource):
    """(small frames, their masks) in chunks, for `compute_features`."""
    from vivid.io.resize import resize_mask

    size = source.small_size()
    static = resize_mask(masks.frames([0]), size) if masks.count == 1 else None
    for start in range(0, len(source), FEATURE_CHUNK):
        idx = range(start, min(start + FEATURE_CHUNK, len(source)))
        small = source.small_frames(idx)
        mask = np.repeat(static, len(idx), axis=0) if static is not None else resize_mask(masks.frames(idx), size)
        yield small, mask


def _clip_files(work: Path, index: int) -> tuple[Path, Path]:
    return work / f"clip_{index:05d}.mp4", work / f"clip_{index:05d}_last.png"


def _clip_names(clip: Clip) -> list[str]:
    """The files `_run_clip` writes for `clip`: its last edited frame, and its frames unless it writes none."""
    frames, last = _clip_files(Path(), clip.index)
    return [last.name] + ([frames.name] if clip.write_stop >= clip.write_start else [])


def _read_state(work: Path) -> dict:
    """The state of the edit that owns `work`; a state.json that is not one is refused, never replaced."""
    path = work / "state.json"
    try:
        state = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        state = None
    if not isinstance(state, dict) or not {"version", "fingerprint"} <= state.keys():
        raise ValueError(f"work folder {work} holds a state.json that is not a vivid edit's; give another --work-dir")
    return state


def _state_files(state: dict) -> list[str]:
    """The files an edit's state records as its own: `files`, or for a state written before that was recorded
    (version 1) the clip files its plan names."""
    if "files" in state:
        return [str(name) for name in state["files"]]
    try:
        return [name for clip in ClipPlan.from_json(state["plan"]).clips for name in _clip_names(clip)]
    except (KeyError, TypeError, ValueError):
        return []


def _remove_work_files(work: Path, state: dict) -> None:
    """Delete the files an edit recorded writing (and what killed writes of them left), the state last, so that
    an interrupted cleanup is finished by the next run; files it did not write are left alone."""
    for name in _state_files(state):
        if Path(name).name != name:  # a bare file name in the work folder, never a path elsewhere
            continue
        (work / name).unlink(missing_ok=True)
        remove_stale_temporaries(work / name)
    (work / "state.json").unlink(missing_ok=True)


def _finished_clips(plan: ClipPlan, work: Path, done: int) -> int:
    """Clips to keep from `done` finished ones: up to the first whose files are missing (a cleanup that was
    interrupted, a file deleted by hand), so the edit reruns from there as it would have run."""
    for clip in plan.clips[:done]:
        if not all((work / name).is_file() for name in _clip_names(clip)):
            return clip.index
    return done


def _run_clip(
    pipe: Any, clip: Clip, plan: ClipPlan, source: VideoSource, masks: MaskSource, has_mask: np.ndarray,
    key: np.ndarray | None, work: Path, prompt: str, task: str, sampling: dict,
) -> None:
    import torch

    frames_path, last_path = _clip_files(work, clip.index)
    order = clip.order
    frames = source.frames(order)
    mask = masks.frames(order)
    if clip.key == "given":
        keyframe = key if key is not None else read_image(_clip_files(work, _anchor_clip(plan))[1], "keyframe")
    elif clip.key == "previous":
        keyframe = read_image(_clip_files(work, clip.index - 1)[1], "keyframe")
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


def _anchor_clip(plan: ClipPlan) -> int:
    return next(c.index for c in plan.clips if c.anchor_only)


def _assemble(plan: ClipPlan, work: Path, out: Path, fps: float, lossless: bool) -> None:
    """Stream the finished clips into the output video (atomic: the file appears complete or not at all)."""
    written = 0
    with VideoWriter(out, fps, lossless=lossless) as writer:
        for clip in plan.clips:
            if clip.write_stop < clip.write_start:
                continue
            if clip.write_start != written:
                raise RuntimeError(f"clip plan writes frame {clip.write_start} after {written - 1} (internal error)")
            frames, _ = read_video(_clip_files(work, clip.index)[0], what="finished clip")
            writer.write(frames)
            written += len(frames)
    if written != plan.num_frames:
        raise RuntimeError(f"assembled {written} frames, expected {plan.num_frames} (internal error)")


def compare_boundary_modes(
    pipe: Any,
    video: str | os.PathLike,
    mask: str | os.PathLike | np.ndarray,
    prompt: str | None,
    task: str,
    out_dir: str | os.PathLike,
    cuts: Sequence[int] = (),
    modes: Sequence[str] = ("fixed", "adaptive"),
    **kwargs: Any,
) -> dict[str, dict]:
    """Edit `video` once per boundary mode and measure each output's boundary TC (pixel features): TC at the
    seams against TC inside clips, with the pairs across `cuts` (true hard cuts) left out for every mode.
    The source's TC at the same pairs is reported too, since seams at content changes are less alike anyway, and
    `cut_spanning` (`vivid.metrics.boundary.cut_spanning`): the clips that span one of `cuts`, which TC cannot see."""
    from vivid.metrics.boundary import boundary_tc, cut_spanning, pixel_features

    out_dir = Path(out_dir)
    reader = VideoSource(video)  # one forward pass over the source
    source = np.concatenate([pixel_features(reader.frames(range(s, min(s + 64, len(reader)))))
                             for s in range(0, len(reader), 64)])
    del reader
    report = {}
    for mode in modes:
        out = out_dir / f"{mode}.mp4"
        t0 = time.perf_counter()
        result = chain_edit(pipe, video, mask, prompt, task, out, boundaries=mode, **kwargs)
        seconds = time.perf_counter() - t0
        frames, _ = read_video(out)
        edited = pixel_features(frames)
        seams = result.plan.seams()
        report[mode] = {
            "clips": len(result.plan.clips), "seams": seams, "seconds": seconds,
            "edited": boundary_tc(edited, seams, cuts).as_dict(), "source": boundary_tc(source, seams, cuts).as_dict(),
            "cut_spanning": cut_spanning(result.plan.clips, cuts).as_dict(),
        }
    return report
