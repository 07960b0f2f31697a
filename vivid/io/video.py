"""Videos: probing, frame timing, forward-only clip reading, decoding and the atomic video writer.

Videos are decoded with decord (random access) or, for clips read in order, forward with OpenCV (`ForwardReader`:
memory stays that of the frames requested), and written as H.264 with the ffmpeg that imageio-ffmpeg ships: by
default yuv420p at crf 17 (small, plays everywhere, a few levels of codec error), or `lossless` as RGB H.264 at
qp 0, which decodes to exactly the frames written. Writers go through `vivid.io.atomic.atomic_path`, so a failed
run never leaves a partial output. Every problem is a one-line `MediaError` naming the file.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from vivid.io.atomic import atomic_path
from vivid.io.files import MediaError, check_out_suffix, error_line, is_image_path, require_file
from vivid.io.images import read_image
from vivid.io.resize import Geometry, crop, resize_frames

logger = logging.getLogger(__name__)

FEATURE_SIDE = 160  # `VideoSource.small_frames`: at most this large on the long side (clip-boundary features)


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

    require_file(path, what)
    if path.is_dir():
        raise MediaError(f"{what} {path} is a folder, not a video file", path=path)
    with _quiet_native_stderr():
        try:
            vr = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1)
        except Exception as err:  # decord raises its own DECORDError or RuntimeError
            detail = f"cannot be opened as a video: {error_line(err)}"
            raise MediaError(f"{what} {path} could not be opened as a video: {error_line(err)}", path=path,
                             detail=detail) from None
        if len(vr) == 0:
            raise MediaError(f"{what} {path} has no frames", reason="no_frames", path=path,
                             detail="video has no frames")
        try:
            size = tuple(vr[0].shape[:2])
        except Exception as err:
            raise MediaError(f"{what} {path} could not be decoded as a video: {error_line(err)}", path=path) from None
    return vr, size


def decode_frames(reader, indices: list[int], path: str | os.PathLike | None, what: str = "video") -> np.ndarray:
    """Frames `indices` (uint8 (n, H, W, 3)) of an open decord reader; a decoding failure is a MediaError."""
    indices = list(indices)
    try:
        return reader.get_batch(indices).asnumpy()
    except Exception as err:
        span = f"{indices[0]}..{indices[-1]}" if indices else "(none)"
        detail = f"frames {span} could not be decoded: {error_line(err)}"
        raise MediaError(f"{what} {path}: {detail}", path=path, detail=detail) from None


def video_info(path: str | os.PathLike, what: str = "video") -> tuple[int, float, int, int]:
    """(frame count, fps, height, width), decoding only the first frame (which proves the file is a video)."""
    vr, (h, w) = _open_video(Path(path), what)
    return len(vr), float(vr.get_avg_fps()), h, w


def video_size(path: str | os.PathLike, what: str = "video") -> tuple[int, int]:
    """(height, width) of a video from the container, without decoding (one decoded frame where OpenCV has no
    video backend or the container does not say)."""
    path = Path(path)
    require_file(path, what)
    cap = cv2.VideoCapture(str(path))
    try:
        if cap.isOpened():
            w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
            if w > 0 and h > 0:
                return h, w
    finally:
        cap.release()
    return video_info(path, what)[2:]


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


class _NotExact(Exception):
    """OpenCV cannot give this file's frames exactly as decord decodes them: read it with decord instead."""


class ForwardReader:
    """Frames of a video file decoded forward with OpenCV (FFmpeg, one thread), for clip-by-clip reading.

    Requests that go forward (clips in order) decode each frame once; the last frame decoded is kept, so the
    frame that two neighbouring clips share is not decoded twice. Only a request for a frame before the last
    one decoded (the reversed first clip before a keyframe inside it, or the feature pass after the mask scan)
    reopens the file and decodes forward from its start. Memory stays that of the frames requested: decord's
    random-access `get_batch` keeps memory that grows with the file's length.

    The frames are decord's (`read_video`) exactly: OpenCV's and decord's FFmpeg convert 8-bit
    video to RGB alike, and on opening, frame 0 is checked against decord's. Where they differ (e.g. 10-bit
    video) or OpenCV cannot open or finish the file, `frames` raises `_NotExact` and the caller reads with decord.
    """

    def __init__(self, path: Path, num_frames: int, what: str = "video"):
        self.path, self.num_frames, self.what = Path(path), num_frames, what
        self._cap = None
        self._next = 0  # the index of the frame the capture decodes next
        self._last: tuple[int, np.ndarray] | None = None  # the last frame decoded: clips share it
        self._checked = False  # frame 0 compared with decord's
        self.opens = 0  # times the file was (re)opened

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
        self._cap, self._next = None, 0

    def _open(self) -> None:
        self.close()
        cap = cv2.VideoCapture(str(self.path), cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, 1])
        if not cap.isOpened():
            raise _NotExact(f"OpenCV cannot open {self.path}")
        self._cap = cap
        self.opens += 1

    def _decode(self, keep: bool) -> np.ndarray | None:
        """The next frame (RGB), or None when only skipped (`keep` False)."""
        index = self._next
        keep = keep or not self._checked
        ok = self._cap.read() if keep else (self._cap.grab(), None)
        if not ok[0]:
            self.close()
            raise _NotExact(f"OpenCV's decoding of {self.path} ended at frame {index} of {self.num_frames}")
        self._next += 1
        if not keep:
            return None
        frame = cv2.cvtColor(ok[1], cv2.COLOR_BGR2RGB)
        if not self._checked:
            if not np.array_equal(frame, _decord_frame(self.path, 0, self.what)):
                self.close()
                raise _NotExact(f"OpenCV decodes {self.path} differently from decord")
            self._checked = True
        return frame

    def frames(self, indices: Sequence[int]) -> np.ndarray:
        """uint8 (n, H, W, 3) frames `indices`, in the order given."""
        indices = list(indices)
        if not indices:
            raise ValueError("no frames requested")
        outside = [i for i in indices if not 0 <= i < self.num_frames]
        if outside:
            raise MediaError(f"{self.what} {self.path}: frames {indices[0]}..{indices[-1]} could not be decoded: "
                             f"frame {outside[0]} is outside the video (frames 0..{self.num_frames - 1})")
        positions: dict[int, list[int]] = {}
        for pos, i in enumerate(indices):
            positions.setdefault(i, []).append(pos)
        out = None

        def put(i: int, frame: np.ndarray) -> None:
            nonlocal out
            if out is None:
                out = np.empty((len(indices), *frame.shape), frame.dtype)
            out[positions[i]] = frame

        missing = sorted(positions)
        if self._last is not None and self._last[0] in positions:
            put(*self._last)
            missing.remove(self._last[0])
        if missing:
            if self._cap is None or missing[0] < self._next:
                self._open()  # a backward request: decode again from the start
            wanted = set(missing)
            frame = None
            while self._next <= missing[-1]:
                i = self._next
                frame = self._decode(keep=i in wanted)
                if i in wanted:
                    put(i, frame)
            self._last = (missing[-1], frame)
        return out


def _decord_frame(path: Path, index: int, what: str) -> np.ndarray:
    reader = _decord_reader(path, what)
    return decode_frames(reader, [index], path, what)[0]


def _decord_reader(path: Path, what: str, **size: int):
    import decord

    try:
        return decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1, **size)
    except Exception as err:
        at = f" at {size['width']}x{size['height']}" if size else ""
        raise MediaError(f"{what} {path} could not be opened{at}: {error_line(err)}", path=path) from None


def _opencv_frames(path: Path, indices: Sequence[int]) -> np.ndarray | None:
    """The frames at `indices` read sequentially with OpenCV, or None if OpenCV cannot read them all."""
    wanted = sorted({int(i) for i in indices})
    cap = cv2.VideoCapture(str(path))
    got: dict[int, np.ndarray] = {}
    try:
        i = 0
        while cap.isOpened() and i <= wanted[-1]:
            ok, frame = cap.read()
            if not ok:
                return None
            if i in wanted:
                got[i] = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            i += 1
    finally:
        cap.release()
    if len(got) != len(wanted):
        return None
    return np.stack([got[int(i)] for i in indices])


class FrameFile:
    """A video file's frames decoded two ways (the base of `VideoSource` and of a mask video's `MaskSource`):

    - `_forward_frames`: forward, for clips read in order (`ForwardReader`), or with decord's random access
      (`_reader`) once OpenCV proved unable to give decord's frames exactly;
    - `_sampled_frames`: decord's random access, optionally scaled by decord while decoding (cheaper than
      converting full-size RGB frames first), for frames sampled across the file (training samples); where decord
      cannot decode (it rejects some small frame widths, e.g. 48 px) they are read with OpenCV at full size.
    """

    def _open_file(self, path: Path, num_frames: int, what: str) -> None:
        self.path, self.what = path, what
        self._forward = ForwardReader(path, num_frames, what)
        self._reader = None  # decord at full size
        self._sized: tuple[tuple[int, int], object] | None = None  # decord at a scaled size

    def _forward_frames(self, indices: Sequence[int]) -> np.ndarray:
        if self._reader is None and self._forward is not None:
            try:
                return self._forward.frames(indices)
            except _NotExact as why:
                logger.info("%s; reading %s %s with decord's random access instead", why, self.what, self.path)
                self._forward = None
        return decode_frames(self._full_reader(), list(indices), self.path, self.what)

    def _full_reader(self):
        if self._reader is None:
            self._reader = _decord_reader(self.path, self.what)
        return self._reader

    def _sampled_frames(self, indices: Sequence[int], size: tuple[int, int] | None = None) -> np.ndarray:
        """uint8 frames `indices` by random access, decoded at `size` (height, width; None = full size) where
        decord can; at full size where OpenCV had to read them."""
        indices = [int(i) for i in indices]
        if size is None:
            reader = self._full_reader()
        else:
            if self._sized is None or self._sized[0] != tuple(size):
                self._sized = (tuple(size), _decord_reader(self.path, self.what, width=size[1], height=size[0]))
            reader = self._sized[1]
        try:
            return decode_frames(reader, indices, self.path, self.what)
        except MediaError:
            frames = _opencv_frames(self.path, indices)
            if frames is None:
                raise
            return frames


class VideoSource(FrameFile):
    """The frames of a video file (decoded on demand: forward for clips, `frames`; by random access for sampled
    frames, `read_resized`) or of an in-memory array. Opening decodes the first frame (proof it is a video)."""

    def __init__(self, video: str | os.PathLike | np.ndarray, fps: float | None = None):
        self._reader = self._small_reader = self._forward = self._sized = None
        self._timing: FrameTiming | None = None
        if isinstance(video, np.ndarray):
            if video.ndim != 4 or video.shape[-1] != 3 or video.dtype != np.uint8:
                raise ValueError(f"video array must be uint8 (F, H, W, 3), got {video.dtype} {video.shape}")
            self._array, self.path = video, None
            self.num_frames, self.height, self.width = video.shape[:3]
            self.fps = float(fps or 8.0)
            return
        path = Path(video)
        self.num_frames, self.fps, self.height, self.width = video_info(path)
        self._array = None
        self._open_file(path, self.num_frames, "video")
        if fps:
            self.fps = float(fps)

    def __len__(self) -> int:
        return self.num_frames

    @property
    def count(self) -> int:
        """The frame count, by the name `MaskSource` gives it (a mask and its video are read alike)."""
        return self.num_frames

    def timing(self) -> FrameTiming:
        """Every frame's start time: the container's for a file (variable frame rates show), even for an array."""
        if self._timing is None:
            self._timing = frame_timing(self.path) if self.path else constant_timing(self.num_frames, self.fps)
        return self._timing

    def small_size(self, max_side: int = FEATURE_SIDE) -> tuple[int, int]:
        """(height, width) of the frames scaled down to at most `max_side`, for features."""
        scale = min(1.0, max_side / max(self.height, self.width))
        return max(2, round(self.height * scale / 2) * 2), max(2, round(self.width * scale / 2) * 2)

    def release_small_reader(self) -> None:
        """Close the small-frame decoder of the feature pass (its buffers would stay resident otherwise)."""
        self._small_reader = None

    def small_frames(self, indices: Sequence[int], max_side: int = FEATURE_SIDE) -> np.ndarray:
        """Frames decoded at `small_size`: cheap, and small allocations keep the memory of a long pass flat."""
        h, w = self.small_size(max_side)
        indices = list(indices)
        if self._array is not None:
            return np.stack([cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA) for f in self._array[indices]])
        if self._small_reader is None:
            self._small_reader = _decord_reader(self.path, "video", width=w, height=h)
        return decode_frames(self._small_reader, indices, self.path, "video")

    def frames(self, indices: Sequence[int]) -> np.ndarray:
        """uint8 (n, H, W, 3) frames `indices` at full size, decoded forward (clips in order)."""
        indices = list(indices)
        if self._array is not None:
            return self._array[indices]
        return self._forward_frames(indices)

    def read(self, indices: Sequence[int]) -> np.ndarray:
        """uint8 (n, H, W, 3) frames `indices` at full size, by random access (frames sampled across the file)."""
        if self._array is not None:
            return self._array[list(indices)]
        return self._sampled_frames(indices)

    def read_resized(self, indices: Sequence[int], geometry: Geometry) -> np.ndarray:
        """uint8 frames `indices` by random access, scaled to cover the geometry and cropped: decord scales while
        decoding when the frames shrink, the area filter (`resize_frames`) does otherwise."""
        g = geometry
        if self._array is not None:
            return resize_frames(self._array[list(indices)], g, cv2.INTER_AREA)
        shrink = (g.scaled_h, g.scaled_w) != (g.src_h, g.src_w) and g.scaled_h <= g.src_h and g.scaled_w <= g.src_w
        frames = self._sampled_frames(indices, (g.scaled_h, g.scaled_w) if shrink else None)
        if frames.shape[1:3] == (g.scaled_h, g.scaled_w):
            return np.ascontiguousarray(crop(frames, g))
        return resize_frames(frames, g, cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


class FfmpegEncoder:
    """ffmpeg (the binary imageio-ffmpeg ships) encoding raw RGB frames from its stdin to an MP4 file.

    imageio-ffmpeg's `write_frames` generator hides its process: closing it neither reports ffmpeg's exit status
    nor its errors (a full disk shows only as "Error writing trailer" on the terminal), so the process is run here
    and `finish` raises a one-line MediaError unless ffmpeg exited 0. ffmpeg's messages go to a temporary file (a
    pipe could fill up and block it) and the last one is the error's reason."""

    def __init__(self, path: Path, size: tuple[int, int], fps: float, lossless: bool, name: Path | None = None):
        import subprocess
        import tempfile
        from fractions import Fraction

        import imageio_ffmpeg

        self.path, self.name = Path(path), Path(name or path)
        width, height = size
        rate = Fraction(fps).limit_denominator(100000)
        # lossless: RGB H.264 at qp 0 decodes to exactly the frames sent (yuv444p at crf 0 does not: the RGB <-> YUV
        # conversion rounds); not every player plays RGB H.264, so the default is yuv420p
        codec = ["-vcodec", "libx264rgb", "-pix_fmt", "rgb24", "-qp", "0"] if lossless else [
            "-vcodec", "libx264", "-pix_fmt", "yuv420p", "-crf", "17"]
        cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-nostdin", "-v", "error", "-f", "rawvideo",
               "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-r", str(rate), "-i", "-", "-an", *codec,
               "-f", "mp4", str(self.path)]
        self._log = tempfile.TemporaryFile()
        try:
            # a session of its own: Ctrl-C reaches vivid, which stops ffmpeg (`kill`), not ffmpeg mid-file
            self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=self._log,
                                          start_new_session=True)
        except OSError as err:
            self._log.close()
            raise MediaError(f"could not start ffmpeg to write {self.name}: {error_line(err)}", path=self.name) from None

    def send(self, frame: np.ndarray) -> None:
        try:
            self._proc.stdin.write(memoryview(np.ascontiguousarray(frame)).cast("B"))
        except OSError:  # ffmpeg stopped reading (it failed): its own message says why
            self.finish()
            raise MediaError(f"ffmpeg stopped while writing {self.name} (internal error)", path=self.name) from None

    def finish(self) -> None:
        """Wait for ffmpeg to write the file; MediaError naming the file and ffmpeg's last message unless it
        exited 0."""
        with contextlib.suppress(OSError):
            self._proc.stdin.close()
        code = self._proc.wait()
        self._log.seek(0)
        lines = [line.strip() for line in self._log.read().decode("utf-8", "replace").splitlines() if line.strip()]
        self._log.close()
        if code != 0:
            # "[out#0/mp4 @ 0x55...] Error closing file: No space left on device": the message without the address
            if lines:
                reason = re.sub(r"^\[[^]]* @ 0x[0-9a-f]+\] *", "", lines[-1])
            elif code < 0:
                reason = f"killed by {_signal_name(-code)}"
            else:
                reason = f"exit status {code}"
            raise MediaError(f"could not write {self.name}: ffmpeg failed ({reason})", path=self.name,
                             detail=f"ffmpeg failed ({reason})")

    def kill(self) -> None:
        """Stop ffmpeg at once (the file is abandoned)."""
        with contextlib.suppress(OSError):
            self._proc.kill()
        with contextlib.suppress(OSError):
            self._proc.stdin.close()
        self._proc.wait()
        self._log.close()


def _signal_name(number: int) -> str:
    import signal

    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def check_written_video(path: Path, frames: int, name: Path | None = None) -> None:
    """MediaError unless `path` opens as a video of exactly `frames` frames: a writer's last check before its
    output is renamed into place (a full disk can cut a file short after ffmpeg has reported success)."""
    name = name or path
    try:
        count = video_info(path, "written video")[0]
    except MediaError as err:
        raise MediaError(f"could not write {name}: the written file does not open as a video ({err.detail})",
                         path=name) from None
    if count != frames:
        raise MediaError(f"could not write {name}: the written file has {count} frames, {frames} were written",
                         path=name)


class VideoWriter:
    """Streamed, atomic video writer: frames are appended chunk by chunk; the file appears on `close()`, only
    after ffmpeg exited 0 and the written file probes with every frame written (else the output, or the file
    it would have replaced, is left as it was)."""

    def __init__(self, path: str | os.PathLike, fps: float, lossless: bool = False):
        self.path = Path(path)
        check_out_suffix(self.path, image=False, what="video")  # MP4 is written: never under another format's name
        self.fps = fps if fps and fps > 0 else 8.0
        self.lossless = lossless
        self._ctx = atomic_path(self.path)
        self._tmp = self._ctx.__enter__()
        self._encoder: FfmpegEncoder | None = None
        self.frames_written = 0

    def write(self, frames: np.ndarray) -> None:
        frames = np.ascontiguousarray(frames, dtype=np.uint8)
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"frames must be uint8 (n, H, W, 3), got {frames.shape}")
        if self._encoder is None:
            size = (frames.shape[2], frames.shape[1])
            self._encoder = FfmpegEncoder(self._tmp, size, self.fps, self.lossless, name=self.path)
        for frame in frames:
            self._encoder.send(frame)
        self.frames_written += len(frames)

    def close(self) -> Path:
        if self._encoder is None:
            self.abort()
            raise MediaError(f"no frames were written to {self.path}")
        encoder, self._encoder = self._encoder, None
        try:
            encoder.finish()
            check_written_video(self._tmp, self.frames_written, name=self.path)
        except BaseException as err:
            self._ctx.__exit__(type(err), err, err.__traceback__)
            raise
        self._ctx.__exit__(None, None, None)
        return self.path

    def abort(self) -> None:
        if self._encoder is not None:
            self._encoder.kill()
            self._encoder = None
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


