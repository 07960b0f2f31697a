"""`MediaError` and the rules on file names that every reader and writer shares."""

from __future__ import annotations

import os
import re
from pathlib import Path

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}
ARRAY_SUFFIXES = {".npy", ".npz"}
VIDEO_OUT_SUFFIXES = (".mp4", ".mov", ".m4v")  # the MP4 family: what the video writers write


class MediaError(ValueError):
    """A user-supplied file that cannot be used, with a message naming the file and the problem.

    `reason` says what kind of problem it is, in the data loader's terms ("missing_file", "unreadable",
    "no_frames", "size_mismatch"), so that a bad training sample is counted by reason; `path` is the file and
    `detail` the problem without the file's name."""

    def __init__(self, message: str, *, reason: str = "unreadable", path: str | os.PathLike | None = None,
                 detail: str | None = None):
        super().__init__(message)
        self.reason = reason
        self.path = None if path is None else str(path)
        self.detail = detail or message


def error_line(err: BaseException) -> str:
    """The first line of an exception's message, without the `[hh:mm:ss] file.cc:N:` prefix of decord's log."""
    lines = [line for line in str(err).splitlines() if line.strip()]
    line = lines[0] if lines else type(err).__name__
    return re.sub(r"^\[\d\d:\d\d:\d\d\] \S+:\d+: ", "", line.strip())


def require_file(path: Path, what: str) -> None:
    """MediaError("missing_file") unless `path` exists and, if a file, is not empty."""
    if not path.exists():
        raise MediaError(f"{what} {path} does not exist", reason="missing_file", path=path,
                         detail="file does not exist")
    if path.is_file() and path.stat().st_size == 0:
        raise MediaError(f"{what} {path} is empty (0 bytes)", reason="missing_file", path=path,
                         detail="file is empty (0 bytes)")


def is_image_path(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def is_video_file(path: str | os.PathLike) -> bool:
    """Whether a mask path names a video file (not a folder of images, an image or an array)."""
    path = Path(path)
    return not path.is_dir() and path.suffix.lower() not in IMAGE_SUFFIXES | ARRAY_SUFFIXES


def check_out_suffix(path: str | os.PathLike, image: bool, what: str = "--out") -> None:
    """Refuse an output name whose extension is not what is written: MP4 video (.mp4/.mov/.m4v) or, for an image,
    an image format (.png, .jpg, ...), so nothing is written in one format under another's name."""
    suffix = Path(path).suffix.lower()
    if image and suffix not in IMAGE_SUFFIXES:
        raise MediaError(f"{what} {path}: an image is written; give an image file name "
                         f"({', '.join(sorted(IMAGE_SUFFIXES))})")
    if not image and suffix not in VIDEO_OUT_SUFFIXES:
        raise MediaError(f"{what} {path}: a video is written as MP4; give a {', '.join(VIDEO_OUT_SUFFIXES)} file name")


def read_json(path: str | os.PathLike, what: str = "JSON file") -> object:
    """The JSON value of a file; a one-line MediaError naming the file for one that is missing, not UTF-8 or not
    JSON (json's own message names no file: "Expecting value: line 1 column 16")."""
    import json

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise MediaError(f"{what} {path} does not exist", reason="missing_file", path=path) from None
    except UnicodeDecodeError as err:
        raise MediaError(f"{what} {path} is not UTF-8 text (byte {err.start})", path=path) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise MediaError(f"{what} {path} is not valid JSON (line {err.lineno}, column {err.colno}: {err.msg})",
                         path=path) from None
