"""Reading and writing videos, images and masks for the CLI and the pipeline.

Frames are uint8 RGB arrays (F, H, W, 3); masks are bool arrays (F, H, W) with True = edit.
Videos are decoded with decord and written as H.264 with the ffmpeg that imageio-ffmpeg ships: by default
yuv420p at crf 17 (small, plays everywhere, a few levels of codec error), or `lossless` as RGB H.264 at qp 0,
which decodes to exactly the frames written. Writers go through a temporary file renamed into place, so a
failed run never leaves a partial output.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}
ARRAY_SUFFIXES = {".npy", ".npz"}


class MediaError(ValueError):
    """A user-supplied file that cannot be used, with a message naming the file and the problem."""


def is_image_path(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def _require_file(path: Path, what: str) -> None:
    if not path.exists():
        raise MediaError(f"{what} {path} does not exist")
    if path.is_file() and path.stat().st_size == 0:
        raise MediaError(f"{what} {path} is empty (0 bytes)")


def read_image(path: str | os.PathLike, what: str = "image") -> np.ndarray:
    path = Path(path)
    _require_file(path, what)
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise MediaError(f"{what} {path} could not be decoded as an image")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def video_info(path: str | os.PathLike, what: str = "video") -> tuple[int, float, int, int]:
    """(frame count, fps, height, width), decoding only the first frame (which proves the file is a video)."""
    vr, (h, w) = _open_video(Path(path), what)
    return len(vr), float(vr.get_avg_fps()), h, w


def error_line(err: BaseException) -> str:
    """The first line of an exception's message, without the `[hh:mm:ss] file.cc:N:` prefix of decord's log."""
    lines = [line for line in str(err).splitlines() if line.strip()]
    line = lines[0] if lines else type(err).__name__
    return re.sub(r"^\[\d\d:\d\d:\d\d\] \S+:\d+: ", "", line.strip())


_quiet_lock = threading.Lock()
_quiet_depth = 0
_quiet_saved_fd: int | None = None


@contextlib.contextmanager
def _quiet_native_stderr() -> Iterator[None]:
    """Send what decord's C++ logger and ffmpeg print to file descriptor 2 to /dev/null while a file is probed
    (their failures become one MediaError line). Thread-safe: descriptor 2 is restored when the last
    concurrent probe ends; other threads' output during a probe (milliseconds) is lost."""
    global _quiet_depth, _quiet_saved_fd
    with _quiet_lock:
        if _quiet_depth == 0:
            try:
                saved = os.dup(2)  # native code writes to descriptor 2 whatever sys.stderr is
                with contextlib.suppress(AttributeError, OSError, ValueError):
                    sys.stderr.flush()
                with open(os.devnull, "wb") as null:
                    os.dup2(null.fileno(), 2)
                _quiet_saved_fd = saved
            except OSError:
                _quiet_saved_fd = None
        _quiet_depth += 1
    try:
        yield
    finally:
        with _quiet_lock:
            _quiet_depth -= 1
            if _quiet_depth == 0 and _quiet_saved_fd is not None:
                os.dup2(_quiet_saved_fd, 2)
                os.close(_quiet_saved_fd)
                _quiet_saved_fd = None


def _open_video(path: Path, what: str):
    """An open decord reader and the (height, width) of the first frame, decoded to prove the file is a video:
    decord opens some non-video files (e.g. text) as a 1-frame "video" that fails only on decoding."""
    import decord

    _require_file(path, what)
    if path.is_dir():
        raise MediaError(f"{what} {path} is a folder, not a video file")
    with _quiet_native_stderr():
        try:
            vr = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1)
        except Exception as err:  # decord raises its own DECORDError or RuntimeError
            raise MediaError(f"{what} {path} could not be opened as a video: {error_line(err)}") from None
        if len(vr) == 0:
            raise MediaError(f"{what} {path} has no frames")
        try:
            size = tuple(vr[0].shape[:2])
        except Exception as err:
            raise MediaError(f"{what} {path} could not be decoded as a video: {error_line(err)}") from None
    return vr, size


def decode_frames(reader, indices: list[int], path: str | os.PathLike | None, what: str = "video") -> np.ndarray:
    """Frames `indices` (uint8 (n, H, W, 3)) of an open decord reader; a decoding failure is a MediaError."""
    indices = list(indices)
    try:
        return reader.get_batch(indices).asnumpy()
    except Exception as err:
        span = f"{indices[0]}..{indices[-1]}" if indices else "(none)"
        raise MediaError(f"{what} {path}: frames {span} could not be decoded: {error_line(err)}") from None


def read_video(
    path: str | os.PathLike, what: str = "video", start: int = 0, stop: int | None = None
) -> tuple[np.ndarray, float]:
    """Frames [start, stop) of a video (or the single frame of an image) and the fps (0.0 for an image)."""
    path = Path(path)
    if is_image_path(path):
        return read_image(path, what)[None], 0.0
    vr, _ = _open_video(path, what)
    stop = len(vr) if stop is None else min(stop, len(vr))
    return decode_frames(vr, list(range(start, stop)), path, what), float(vr.get_avg_fps())


def iter_video_chunks(path: str | os.PathLike, chunk: int, what: str = "video") -> Iterator[np.ndarray]:
    """Stream a video in chunks of `chunk` frames, so memory does not grow with its length."""
    vr, _ = _open_video(Path(path), what)
    for start in range(0, len(vr), chunk):
        yield decode_frames(vr, list(range(start, min(start + chunk, len(vr)))), path, what)


def binarize(mask: np.ndarray) -> np.ndarray:
    """Threshold a grey or colour mask at 0.5 of its range (uint8: >= 128; float: >= 0.5)."""
    if mask.ndim == 4:
        mask = mask.max(axis=-1)
    if mask.dtype == np.bool_:
        return mask
    threshold = 128 if np.issubdtype(mask.dtype, np.integer) else 0.5
    return mask >= threshold


def read_mask(path: str | os.PathLike) -> np.ndarray:
    """A mask sequence (F, H, W) bool from a mask video, a folder of images, one image, or a .npy/.npz array."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise MediaError(f"mask folder {path} holds no image files")
        frames = [cv2.imread(str(f), cv2.IMREAD_GRAYSCALE) for f in files]
        bad = [str(f) for f, fr in zip(files, frames) if fr is None]
        if bad:
            raise MediaError(f"mask frame {bad[0]} could not be decoded as an image")
        shapes = {fr.shape for fr in frames}
        if len(shapes) > 1:
            raise MediaError(f"mask folder {path} mixes frame sizes {sorted(shapes)}")
        return binarize(np.stack(frames))
    if path.suffix.lower() in ARRAY_SUFFIXES:
        _require_file(path, "mask")
        try:
            data = np.load(path)
            arr = data[data.files[0]] if isinstance(data, np.lib.npyio.NpzFile) else data
        except Exception as err:
            raise MediaError(f"mask {path} could not be read as a NumPy array: {err}") from None
        if arr.ndim == 2:
            arr = arr[None]
        if arr.ndim != 3:
            raise MediaError(f"mask array {path} must be (frames, height, width), got shape {arr.shape}")
        return binarize(arr)
    frames, _ = read_video(path, what="mask")
    return binarize(frames)


def _ffmpeg_writer(path: Path, size: tuple[int, int], fps: float, lossless: bool):
    import imageio_ffmpeg

    # lossless: RGB H.264 at qp 0 decodes to exactly the frames sent (yuv444p at crf 0 does not: the RGB <-> YUV
    # conversion rounds); not every player plays RGB H.264, so the default is yuv420p
    writer = imageio_ffmpeg.write_frames(
        str(path),
        size,  # (width, height)
        fps=fps,
        codec="libx264rgb" if lossless else "libx264",
        pix_fmt_out="rgb24" if lossless else "yuv420p",
        macro_block_size=1,
        output_params=(["-qp", "0"] if lossless else ["-crf", "17"]) + ["-f", "mp4"],
        ffmpeg_log_level="error",
    )
    writer.send(None)
    return writer


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it to `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix + ".part", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files; give the output ordinary permissions
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class VideoWriter:
    """Streamed, atomic video writer: frames are appended chunk by chunk; the file appears on `close()`."""

    def __init__(self, path: str | os.PathLike, fps: float, lossless: bool = False):
        self.path = Path(path)
        self.fps = fps if fps and fps > 0 else 8.0
        self.lossless = lossless
        self._ctx = atomic_path(self.path)
        self._tmp = self._ctx.__enter__()
        self._writer = None
        self.frames_written = 0

    def write(self, frames: np.ndarray) -> None:
        frames = np.ascontiguousarray(frames, dtype=np.uint8)
        if self._writer is None:
            self._writer = _ffmpeg_writer(self._tmp, (frames.shape[2], frames.shape[1]), self.fps, self.lossless)
        for frame in frames:
            self._writer.send(frame)
        self.frames_written += len(frames)

    def close(self) -> Path:
        if self._writer is None:
            self.abort()
            raise MediaError(f"no frames were written to {self.path}")
        self._writer.close()
        self._writer = None
        self._ctx.__exit__(None, None, None)
        return self.path

    def abort(self) -> None:
        if self._writer is not None:
            with contextlib.suppress(Exception):
                self._writer.close()
        self._ctx.__exit__(RuntimeError, RuntimeError("aborted"), None)

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_video(path: str | os.PathLike, frames: np.ndarray, fps: float, lossless: bool = False) -> Path:
    with VideoWriter(path, fps, lossless) as writer:
        writer.write(frames)
    return Path(path)


def write_image(path: str | os.PathLike, frame: np.ndarray) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        ok, buf = cv2.imencode(path.suffix.lower() or ".png", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        if not ok:
            raise MediaError(f"could not encode an image for {path} (unsupported suffix {path.suffix!r}?)")
        tmp.write_bytes(buf.tobytes())
    return path
