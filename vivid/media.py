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
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}
ARRAY_SUFFIXES = {".npy", ".npz"}
VIDEO_OUT_SUFFIXES = (".mp4", ".mov", ".m4v")  # the MP4 family: what the video writers write


class MediaError(ValueError):
    """A user-supplied file that cannot be used, with a message naming the file and the problem."""


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


@dataclass(frozen=True)
class FrameTiming:
    """When each frame of a video starts (seconds from the first frame) and the video's average fps."""

    starts: np.ndarray
    fps: float

    @property
    def count(self) -> int:
        return len(self.starts)

    @property
    def duration(self) -> float:
        return float(self.starts[-1]) + 1.0 / self.fps

    @property
    def variable(self) -> bool:
        """A variable frame rate: some frame lasts 10% more or less than the median frame."""
        if self.count < 3:
            return False
        lengths = np.diff(self.starts)
        median = float(np.median(lengths))
        return median > 0 and bool(np.abs(lengths - median).max() > 0.1 * median)

    def describe(self) -> str:
        text = f"{self.count} frames at {self.fps:.4g} fps"
        if self.variable:
            lengths = np.diff(self.starts)
            text += f" on average (variable frame rate, {1 / lengths.max():.3g} to {1 / lengths.min():.3g} fps)"
        return text


def frame_timing(path: str | os.PathLike, what: str = "video") -> FrameTiming:
    """Every frame's start time as the container gives it (decord's index; frames are not decoded)."""
    vr, _ = _open_video(Path(path), what)
    starts = np.asarray(vr.get_frame_timestamp(list(range(len(vr)))), np.float64)[:, 0]
    return FrameTiming(starts - starts[0], float(vr.get_avg_fps()))


def constant_timing(count: int, fps: float) -> FrameTiming:
    return FrameTiming(np.arange(count) / fps, fps)


def variable_rate_note(timing: FrameTiming, name: str) -> str | None:
    """The warning for a variable-frame-rate source (None for a constant rate): how its frames are edited."""
    if not timing.variable:
        return None
    return (f"video {name} has {timing.describe()}: its frames are edited one by one and the output is written at "
            f"a constant {timing.fps:.4g} fps, so frame times in the output are even")


def match_mask_frames(video: FrameTiming, mask: FrameTiming, mask_name: str) -> tuple[np.ndarray | None, str | None]:
    """Which frame of a mask video goes with each video frame, and the warning saying how they were matched.

    Returns (None, note) for frame i <-> frame i, or (mask index per video frame, note); note is None when the two
    agree (same frame count and frame rate). A mask with the video's frame count is matched by index, whatever its
    fps says (a mask made frame by frame for the video); one with another count but the same duration (within a
    frame) by timestamp: each video frame takes the mask frame shown at its start time. Other counts are refused.
    """
    if mask.count == 1:
        return None, None
    if mask.count == video.count:
        if abs(mask.fps - video.fps) <= 0.01 * video.fps and not (mask.variable or video.variable):
            return None, None
        return None, (f"mask {mask_name} ({mask.describe()}) and the video ({video.describe()}) have the same frame "
                      "count: frames matched by index (mask frame i for video frame i)")
    tolerance = max(1.0 / mask.fps, 1.0 / video.fps)
    if abs(mask.duration - video.duration) > tolerance:
        raise MediaError(
            f"mask has {mask.count} frames but the video has {video.count} ({mask.duration:.2f} s against "
            f"{video.duration:.2f} s): give one mask per frame, a single mask, or a mask video as long as the video"
        )
    early = 0.25 / max(mask.fps, video.fps)  # timestamps are rounded: a mask frame starting just after still counts
    index = np.searchsorted(mask.starts, video.starts + early, side="right") - 1
    index = np.clip(index, 0, mask.count - 1)
    return index, (f"mask {mask_name} ({mask.describe()}) and the video ({video.describe()}) differ in frame count: "
                   "frames matched by timestamp (each video frame takes the mask frame shown at its start time)")


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


def binarize_mask(frames: np.ndarray) -> np.ndarray:
    """Mask frames -> bool (F, H, W), True = edit: the one rule of every mask vivid reads, in editing (`vivid edit`,
    `vivid keyframe`, the app) and in data loading (`vivid data check`, training), so a file means the same to all.

    `frames` is (H, W) or (F, H, W) values, or (F, H, W, C) with C channels. Each frame is judged on its own, so
    the result does not depend on which frames are read together:
    - channels: an RGBA frame (C = 4) whose alpha is not fully opaque everywhere is read from its alpha (a mask
      drawn in alpha, a transparent background); otherwise the brightest colour channel (grey, white or any
      colour on black);
    - bool: as is; floats: >= 0.5;
    - integers: >= 128 (half the 8-bit range), except a frame whose values are all 0 or 1 (a label array such as
      `mask.astype(np.uint8)`, saved as .npy or PNG): there 1 = edit.
    """
    frames = np.asarray(frames)
    if frames.ndim == 2:
        frames = frames[None]
    if frames.ndim == 4:
        channels = frames.shape[-1]
        if channels not in (1, 3, 4):
            raise MediaError(f"mask frames must have 1, 3 or 4 channels, got {channels}")
        values = frames[..., :3].max(axis=-1) if channels > 1 else frames[..., 0]
        if channels == 4:
            alpha = frames[..., 3]
            opaque = True if alpha.dtype == np.bool_ else 1.0 if np.issubdtype(alpha.dtype, np.floating) else 255
            in_alpha = (alpha < opaque).reshape(len(alpha), -1).any(axis=1)
            if in_alpha.any():
                values = np.where(in_alpha[:, None, None], alpha, values)
        frames = values
    if frames.ndim != 3:
        raise MediaError(f"mask must be frames (F, H, W), got shape {frames.shape}")
    if frames.dtype == np.bool_:
        return frames
    if not np.issubdtype(frames.dtype, np.integer):
        return frames >= 0.5
    labels = frames.reshape(len(frames), -1).max(axis=1, initial=0) <= 1  # 0/1 label frames
    return frames >= np.where(labels, 1, 128)[:, None, None]


def read_mask_image(path: str | os.PathLike, what: str = "mask") -> np.ndarray:
    """The raw values (H, W, C) uint8 of a mask image, alpha kept (C = 1 grey, 3 RGB, 4 RGBA), for
    `binarize_mask`; 16-bit images are scaled to 8 bits."""
    path = Path(path)
    _require_file(path, what)
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise MediaError(f"{what} {path} could not be decoded as an image")
    if img.dtype == np.uint16:
        img = (img // 257).astype(np.uint8)
    elif img.dtype != np.uint8:
        raise MediaError(f"{what} {path} has {img.dtype} pixels; give an 8- or 16-bit image")
    if img.ndim == 2:
        return img[..., None]
    if img.shape[-1] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2RGBA)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def read_mask(path: str | os.PathLike) -> np.ndarray:
    """A mask sequence (F, H, W) bool from a mask video, a folder of images, one image, or a .npy/.npz array
    (`binarize_mask`'s rule)."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise MediaError(f"mask folder {path} holds no image files")
        frames = [binarize_mask(read_mask_image(f, "mask frame")[None])[0] for f in files]
        shapes = {fr.shape for fr in frames}
        if len(shapes) > 1:
            raise MediaError(f"mask folder {path} mixes frame sizes {sorted(shapes)}")
        return np.stack(frames)
    if is_image_path(path):
        return binarize_mask(read_mask_image(path)[None])
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
        return binarize_mask(arr)
    frames, _ = read_video(path, what="mask")
    return binarize_mask(frames)


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


def _temporary_affixes(path: Path) -> tuple[str, str]:
    """The prefix and suffix of `atomic_path`'s temporary names for `path`: `.STEM.XXXXXXXX.SUFFIX.part`."""
    return f".{path.stem}.", f"{path.suffix}.part"


def stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """The temporary files a killed `atomic_path(path)` left beside `path`: only names of exactly the form it
    creates (mkstemp's 8 random characters between the prefix and the suffix), so nothing else is matched."""
    path = Path(path)
    prefix, suffix = _temporary_affixes(path)
    pattern = re.compile(re.escape(prefix) + r"[a-z0-9_]{8}" + re.escape(suffix))
    try:
        entries = list(os.scandir(path.parent))
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted(Path(e.path) for e in entries if pattern.fullmatch(e.name) and e.is_file(follow_symlinks=False))


def remove_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Delete `stale_temporaries(path)`: called before a run writes `path` again. Returns what was removed."""
    removed = stale_temporaries(path)
    for tmp in removed:
        tmp.unlink(missing_ok=True)
    return removed


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it to `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    prefix, suffix = _temporary_affixes(path)
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=path.parent)
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
        check_out_suffix(self.path, image=False, what="video")  # MP4 is written: never under another format's name
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
