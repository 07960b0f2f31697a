"""Decoding a sample's frames and masks with decord: 4k+1 frames at a target fps, resized and cropped to H x W.

Only the frames needed are decoded (decord's get_batch). Frames are scaled to cover H x W (keeping the aspect
ratio) and centre-cropped; video frames are scaled by decord's own scaler while decoding (bilinear, cheaper than
converting full-size RGB frames first), masks by nearest neighbour with exactly the same geometry.
Every problem raises `BadSample` with a reason key and the file named.
"""

from __future__ import annotations

import math
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from vivid.media import IMAGE_SUFFIXES, MediaError, binarize_mask, read_mask_image

from .errors import BadSample


@dataclass(frozen=True)
class Geometry:
    """Scale (h, w) to cover (height, width), then crop [top:top+height, left:left+width]."""

    src_h: int
    src_w: int
    scaled_h: int
    scaled_w: int
    top: int
    left: int
    height: int
    width: int


def cover_geometry(src_h: int, src_w: int, height: int, width: int) -> Geometry:
    scale = max(height / src_h, width / src_w)
    sh, sw = max(height, round(src_h * scale)), max(width, round(src_w * scale))
    return Geometry(src_h, src_w, sh, sw, (sh - height) // 2, (sw - width) // 2, height, width)


def sample_indices(
    total: int,
    src_fps: float,
    target_fps: float,
    frames: int,
    rng: np.random.Generator | None,
    start: int = 0,
    end: int | None = None,
) -> np.ndarray:
    """`frames` source frame indices at `target_fps`: stride src_fps / target_fps (at least 1, fractional strides
    are rounded per frame); a clip too short for that stride is sampled with the largest stride that fits; the
    start is uniform over the valid range (or the clip start when `rng` is None)."""
    end = total if end is None else min(end, total)
    n = end - start
    if n <= 0:
        raise BadSample("no_frames", f"clip range [{start}, {end}) holds no frames (the media has {total})")
    if n < frames:
        raise BadSample("too_short", f"{n} frames in the clip, {frames} needed")
    if frames == 1:
        offset = int(rng.integers(0, n)) if rng is not None else 0
        return np.array([start + offset])
    step = max(1.0, (src_fps / target_fps) if src_fps > 0 else 1.0)
    step = min(step, (n - 1) / (frames - 1))
    span = step * (frames - 1)
    offset = float(rng.uniform(0, n - 1 - span)) if rng is not None and n - 1 - span > 0 else 0.0
    idx = np.floor(offset + step * np.arange(frames) + 0.5).astype(np.int64)
    return np.clip(idx, 0, n - 1) + start


def _check_file(path: str) -> None:
    if not os.path.exists(path):
        raise BadSample("missing_file", "file does not exist", path=path)
    if os.path.isfile(path) and os.path.getsize(path) == 0:
        raise BadSample("missing_file", "file is empty (0 bytes)", path=path)


def _first_line(err: Exception) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def _opencv_size(path: str) -> tuple[int, int] | None:
    """(height, width) from the container, without decoding, or None if OpenCV cannot tell."""
    cap = cv2.VideoCapture(path)
    try:
        if cap.isOpened():
            w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
            if w > 0 and h > 0:
                return h, w
    finally:
        cap.release()
    return None


class VideoSource:
    """A video opened once for decoding at a target size: frame count and fps from decord, size from the
    container. `Geometry` is fixed at open time so decord can scale while decoding (one open, no full-size RGB
    frames when downscaling)."""

    def __init__(self, path: str, height: int | None = None, width: int | None = None):
        self.path = path
        self.height, self.width = _video_size(path)
        self.geometry = cover_geometry(self.height, self.width, height or self.height, width or self.width)
        g = self.geometry
        self._scaled = (g.scaled_h, g.scaled_w) != (g.src_h, g.src_w) and g.scaled_h <= g.src_h and g.scaled_w <= g.src_w
        self._vr = _open_decord(path, width=g.scaled_w, height=g.scaled_h) if self._scaled else _open_decord(path)
        self.count = len(self._vr)
        self.fps = float(self._vr.get_avg_fps())

    def read(self, indices: np.ndarray | list[int]) -> np.ndarray:
        """The frames at `indices`, scaled and cropped: uint8 (F, H, W, 3) RGB."""
        g = self.geometry
        frames = _decord_batch(self._vr, indices, self.path)
        if frames.shape[1:3] == (g.scaled_h, g.scaled_w):
            return np.ascontiguousarray(_crop(frames, g))
        return resize_frames(frames, g, cv2.INTER_AREA if self._scaled else cv2.INTER_LINEAR)


def _video_size(path: str) -> tuple[int, int]:
    """(height, width) of a video: from the container, else (OpenCV without a video backend) one decoded frame."""
    _check_file(path)
    size = _opencv_size(path)
    if size is None:
        size = _decord_batch(_open_decord(path), [0], path).shape[1:3]
    return int(size[0]), int(size[1])


# EXIF orientations that rotate an image by 90 degrees (cv2.imread applies them, PIL's header size does not)
_EXIF_TRANSPOSED = (5, 6, 7, 8)


def media_size(path: str, kind: str) -> tuple[int, int]:
    """(height, width) of a video or image file (kind "video" | "image") as the loader decodes it, from the
    header where the format allows (no frames decoded); BadSample if the file cannot be read."""
    if kind != "image":
        return _video_size(path)
    _check_file(path)
    from PIL import Image

    try:
        with Image.open(path) as image:
            w, h = image.size
            transposed = image.getexif().get(0x0112) in _EXIF_TRANSPOSED
        return (w, h) if transposed else (h, w)
    except Exception:  # a format PIL does not read: decode it as the loader does
        return read_image(path).shape[:2]


def probe_video(path: str) -> tuple[int, float, int, int]:
    """(frame count, fps, height, width) of a video file, without decoding frames."""
    src = VideoSource(path)
    return src.count, src.fps, src.height, src.width


def _open_decord(path: str, width: int = -1, height: int = -1):
    import decord

    _check_file(path)
    try:
        vr = decord.VideoReader(path, ctx=decord.cpu(0), width=width, height=height, num_threads=1)
    except Exception as err:  # decord raises DECORDError / RuntimeError with ffmpeg's text
        raise BadSample("unreadable", f"cannot be opened as a video: {_first_line(err)}", path=path) from None
    if len(vr) == 0:
        raise BadSample("no_frames", "video has no frames", path=path)
    return vr


def _decord_batch(vr, indices, path: str) -> np.ndarray:
    try:
        return vr.get_batch([int(i) for i in indices]).asnumpy()
    except Exception as err:
        frames = _opencv_frames(path, indices)  # decord rejects some small frame widths (e.g. 48 px)
        if frames is None:
            raise BadSample("unreadable", f"frames could not be decoded: {_first_line(err)}", path=path) from None
        return frames


def _opencv_frames(path: str, indices) -> np.ndarray | None:
    """The frames at `indices` read sequentially with OpenCV, or None if OpenCV cannot read them all."""
    wanted = sorted({int(i) for i in indices})
    cap = cv2.VideoCapture(path)
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


def _crop(frames: np.ndarray, g: Geometry) -> np.ndarray:
    return frames[:, g.top : g.top + g.height, g.left : g.left + g.width]


def resize_frames(frames: np.ndarray, g: Geometry, interpolation: int) -> np.ndarray:
    """Resize (F, h, w[, C]) to the geometry's scaled size and crop, frame by frame (cv2 is fastest per frame)."""
    if frames.shape[1:3] == (g.scaled_h, g.scaled_w):
        return np.ascontiguousarray(_crop(frames, g))
    out = np.empty((len(frames), g.height, g.width) + frames.shape[3:], frames.dtype)
    for i, frame in enumerate(frames):
        scaled = cv2.resize(frame, (g.scaled_w, g.scaled_h), interpolation=interpolation)
        out[i] = scaled[g.top : g.top + g.height, g.left : g.left + g.width]
    return out


def read_image(path: str) -> np.ndarray:
    """uint8 (H, W, 3) RGB."""
    _check_file(path)
    img = cv2.imread(path, cv2.IMREAD_COLOR)
    if img is None:
        raise BadSample("unreadable", "cannot be decoded as an image", path=path)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


# --------------------------------------------------------------------------- masks


class MaskSource:
    """A mask sequence on disk: its frame count and size up front, frames read on demand.

    Encodings: a mask video (grey, >= 128 = edit; write it lossless), a folder of images (one per frame, sorted
    by name), one image (one frame), a .npy array (F, H, W) or (H, W) (memory-mapped), or a .npz archive holding
    either `mask` (bool/uint8 (F, H, W)) or `packed` + `shape` (np.packbits of the bool array along the last axis,
    the compact form `data_loaders.synthetic` writes). Values become bool by `vivid.media.binarize_mask`, the
    rule `vivid edit` uses (alpha where it carries the mask, >= 128, 0/1 label frames), so a mask file means the
    same to training and to editing.
    """

    def __init__(self, path: str):
        self.path = path
        _check_file(path)
        p = Path(path)
        self._files: list[str] | None = None
        self._array = None
        self._packed = None
        self._vr = None
        suffix = p.suffix.lower()
        if p.is_dir():
            self._files = sorted(str(f) for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
            if not self._files:
                raise BadSample("no_frames", "mask folder holds no image files", path=path)
            first = self._read_image(self._files[0])
            self.count, (self.height, self.width) = len(self._files), first.shape[:2]
        elif suffix in IMAGE_SUFFIXES:
            self._files = [path]
            self.count, (self.height, self.width) = 1, self._read_image(path).shape[:2]
        elif suffix == ".npy":
            try:
                arr = np.load(path, mmap_mode="r")
            except Exception as err:
                raise BadSample("unreadable", f"cannot be read as a NumPy array: {_first_line(err)}", path=path) from None
            self._set_array(arr)
        elif suffix == ".npz":
            try:
                with np.load(path) as data:
                    if "packed" in data.files and "shape" in data.files:
                        shape = tuple(int(s) for s in data["shape"])
                        if len(shape) != 3:
                            raise ValueError(f"'shape' must have 3 entries, got {shape}")
                        self._packed = data["packed"]
                        self.count, self.height, self.width = shape
                        if self._packed.shape != (shape[0], shape[1], math.ceil(shape[2] / 8)):
                            raise ValueError(f"'packed' has shape {self._packed.shape}, expected for {shape}")
                    elif data.files:
                        self._set_array(data["mask"] if "mask" in data.files else data[data.files[0]])
                    else:
                        raise ValueError("archive holds no arrays")
            except BadSample:
                raise
            except (ValueError, OSError, zipfile.BadZipFile, EOFError) as err:
                raise BadSample("unreadable", f"cannot be read as a mask archive: {_first_line(err)}", path=path) from None
        else:
            self._vr = _open_decord(path)
            self.count = len(self._vr)
            self.height, self.width = _decord_batch(self._vr, [0], path).shape[1:3]
        if self.count == 0:
            raise BadSample("no_frames", "mask has no frames", path=path)

    def _set_array(self, arr: np.ndarray) -> None:
        if arr.ndim == 2:
            arr = arr[None]
        if arr.ndim != 3:
            raise BadSample("unreadable", f"mask array must be (frames, height, width), got shape {arr.shape}", path=self.path)
        self._array = arr
        self.count, self.height, self.width = arr.shape

    def _read_image(self, file: str) -> np.ndarray:
        """Raw values (H, W, C) of one mask image, alpha kept."""
        try:
            return read_mask_image(file, "mask frame")
        except MediaError:
            raise BadSample("unreadable", "mask frame cannot be decoded as an image", path=file) from None

    def read(self, indices: np.ndarray | list[int]) -> np.ndarray:
        """bool (len(indices), height, width) at native size."""
        indices = [int(i) for i in indices]
        if self._files is not None:
            frames = [self._read_image(self._files[i]) for i in indices]
            if any(f.shape[:2] != (self.height, self.width) for f in frames):
                raise BadSample("size_mismatch", "mask folder mixes frame sizes", path=self.path)
            return np.stack([binarize_mask(f[None])[0] for f in frames])
        if self._packed is not None:
            return np.unpackbits(self._packed[indices], axis=-1, count=self.width).astype(bool)
        if self._array is not None:
            return binarize_mask(np.asarray(self._array[indices]))
        return binarize_mask(_decord_batch(self._vr, indices, self.path))

    def read_resized(self, indices: np.ndarray | list[int], g: Geometry) -> np.ndarray:
        """bool (F, H, W): nearest-neighbour scaled and cropped like the video."""
        native = self.read(indices).view(np.uint8)
        return resize_frames(native, g, cv2.INTER_NEAREST).view(bool)


def write_mask_npz(path: str | os.PathLike, mask: np.ndarray) -> Path:
    """Write a bool mask sequence (F, H, W) as the compact .npz MaskSource reads (`packed` + `shape`), atomically."""
    from vivid.media import atomic_path

    mask = np.asarray(mask, dtype=bool)
    if mask.ndim == 2:
        mask = mask[None]
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, packed=np.packbits(mask, axis=-1), shape=np.array(mask.shape, np.int64))
    return Path(path)
