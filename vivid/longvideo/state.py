"""The work folder of a chained edit (`<out>.work/`): the finished clips' files and `state.json`, which records the
edit (its fingerprint, plan and progress) and every file it writes, so that a killed edit resumes where it stopped
and cleaning up removes exactly what the edit wrote."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from vivid.longvideo.boundaries import BoundaryConfig
from vivid.io.atomic import remove_stale_temporaries
from vivid.io.files import MediaError
from vivid.io.images import read_image
from vivid.io.video import check_written_video
from vivid.longvideo.plan import Clip, ClipPlan, default_work_dir  # noqa: F401 (default_work_dir: also imported from here)

logger = logging.getLogger(__name__)

STATE_VERSION = 2  # 2: the state records the files the edit writes
STATE_NAME = "state.json"


def fingerprint(**parts: Any) -> dict:
    """The parts of an edit as JSON values (arrays by hash, files by path, size and time): equal for the same edit."""
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


def clip_files(work: Path, index: int) -> tuple[Path, Path]:
    return work / f"clip_{index:05d}.mp4", work / f"clip_{index:05d}_last.png"


def clip_names(clip: Clip) -> list[str]:
    """The files `vivid.longvideo.runner` writes for `clip`: its last edited frame, and its frames unless it writes none."""
    frames, last = clip_files(Path(), clip.index)
    return [last.name] + ([frames.name] if clip.write_stop >= clip.write_start else [])


def read_state(work: Path, name: str = "work_dir") -> dict:
    """The state of the edit that owns `work`; a state.json that is not one is refused, never replaced. `name`:
    the caller's word for the work folder, in the message."""
    path = work / STATE_NAME
    try:
        state = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        state = None
    if not isinstance(state, dict) or not {"version", "fingerprint"} <= state.keys():
        raise ValueError(f"work folder {work} holds a state.json that is not a vivid edit's; give another {name}")
    return state


def state_files(state: dict) -> list[str]:
    """The files an edit's state records as its own: `files`, or for a state written before that was recorded
    (version 1) the clip files its plan names."""
    if "files" in state:
        return [str(name) for name in state["files"]]
    try:
        return [name for clip in ClipPlan.from_json(state["plan"]).clips for name in clip_names(clip)]
    except (KeyError, TypeError, ValueError):
        return []


def remove_work_files(work: Path, state: dict) -> None:
    """Delete the files an edit recorded writing (and what killed writes of them left), the state last, so that
    an interrupted cleanup is finished by the next run; files it did not write are left alone."""
    for name in state_files(state):
        if Path(name).name != name:  # a bare file name in the work folder, never a path elsewhere
            continue
        (work / name).unlink(missing_ok=True)
        remove_stale_temporaries(work / name)
    (work / STATE_NAME).unlink(missing_ok=True)


def clip_problem(work: Path, clip: Clip) -> str | None:
    """Why the files of a clip marked finished cannot be used (missing, or a video that does not probe with the
    clip's frame count, or a last frame that does not decode: a write cut short by a full disk or a file-size
    limit), or None when they can."""
    frames, last = clip_files(work, clip.index)
    for name in clip_names(clip):
        if not (work / name).is_file():
            return f"{name} is missing"
    try:
        read_image(last, "finished clip's last frame")
        if clip.write_stop >= clip.write_start:
            check_written_video(frames, clip.write_stop - clip.write_start + 1)
    except MediaError as err:
        return str(err)
    return None


def finished_clips(plan: ClipPlan, work: Path, done: int) -> int:
    """Clips to keep from `done` finished ones: up to the first whose files are missing (a cleanup that was
    interrupted, a file deleted by hand) or damaged (`clip_problem`), so the edit reruns from there as it would
    have run."""
    for clip in plan.clips[:done]:
        problem = clip_problem(work, clip)
        if problem is not None:
            logger.warning("finished clip %d in %s cannot be used (%s): the edit runs again from it", clip.index,
                           work, problem)
            return clip.index
    return done
