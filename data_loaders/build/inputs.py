"""Input videos of `vivid data build`: files, folders (searched recursively) and globs, each with a stable id."""

from __future__ import annotations

import glob
import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

VIDEO_SUFFIXES = {".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".ts"}


@dataclass(frozen=True)
class InputVideo:
    id: str  # `<stem>-<8 hex of the absolute path>`: unique, stable across runs and processes
    path: Path  # absolute


def video_id(path: Path) -> str:
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", path.stem)[:48] or "video"
    return f"{stem}-{hashlib.sha1(str(path).encode()).hexdigest()[:8]}"


def expand_inputs(inputs: list[str]) -> list[InputVideo]:
    """The videos named by `inputs`, sorted by id and without repeats; FileNotFoundError names an input that
    matches nothing. A folder contributes the files with a video suffix below it; a file named directly is kept
    whatever its suffix (an unreadable one is reported by the build, not here)."""
    found: dict[Path, None] = {}
    for item in inputs:
        matches = sorted(glob.glob(item, recursive=True)) if glob.has_magic(item) else [item]
        if not matches or not all(os.path.exists(m) for m in matches):
            raise FileNotFoundError(f"input {item} not found")
        for m in matches:
            p = Path(m).resolve()
            if p.is_dir():
                for f in sorted(p.rglob("*")):
                    if f.is_file() and f.suffix.lower() in VIDEO_SUFFIXES:
                        found[f] = None
            else:
                found[p] = None
    if not found:
        raise FileNotFoundError(f"no video files in {', '.join(inputs)}")
    return sorted((InputVideo(video_id(p), p) for p in found), key=lambda v: v.id)
