"""Masks: the one rule that turns mask values into edit / keep (`binarize_mask`) and reading masks in every
encoding vivid accepts, for editing, long videos and data loading alike (`MaskSource`, `read_mask`).

Encodings: a mask video (grey, >= 128 = edit; write it lossless), a folder of images (one per frame, sorted by
name), one image (one frame, used for every frame of a video), a .npy array (F, H, W) or (H, W) (memory-mapped),
a .npz archive holding `mask`, its first array, or `packed` + `shape` (np.packbits of the bool array along the
last axis: `write_mask_npz`), or an in-memory array. Arrays are never unpickled.
"""

from __future__ import annotations

import logging
import math
import os
import zipfile
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from vivid.io.atomic import atomic_path
from vivid.io.files import ARRAY_SUFFIXES, IMAGE_SUFFIXES, MediaError, error_line, require_file
from vivid.io.images import read_mask_image
from vivid.io.resize import Geometry, resize_frames
from vivid.io.video import FrameFile, FrameTiming, frame_timing, match_mask_frames, video_info

logger = logging.getLogger(__name__)

SCAN_CHUNK = 16  # frames per read when a whole mask is scanned (`any_per_frame`)


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


def _load_array(path: Path) -> np.ndarray | tuple[np.ndarray, tuple[int, int, int]]:
    """A mask array from .npy (memory-mapped) or .npz (`mask` or the first array), or (packed bits, shape) of a
    packed .npz (unpacked frame by frame as read, so memory stays an eighth of the bool array's)."""
    try:
        if path.suffix.lower() == ".npy":
            return np.load(path, mmap_mode="r")
        with np.load(path) as data:
            if "packed" in data.files and "shape" in data.files:
                shape = tuple(int(s) for s in data["shape"])
                if len(shape) != 3:
                    raise ValueError(f"'shape' must have 3 entries, got {shape}")
                packed = data["packed"]
                if packed.shape != (shape[0], shape[1], math.ceil(shape[2] / 8)):
                    raise ValueError(f"'packed' has shape {packed.shape}, expected for {shape}")
                return packed, shape
            if not data.files:
                raise ValueError("archive holds no arrays")
            return data["mask"] if "mask" in data.files else data[data.files[0]]
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as err:
        what = "a NumPy array" if path.suffix.lower() == ".npy" else "a mask archive"
        detail = f"cannot be read as {what}: {error_line(err)}"
        raise MediaError(f"mask {path} {detail}", path=path, detail=detail) from None


class MaskSource(FrameFile):
    """A mask sequence (any encoding above): its frame count and size up front, frames read on demand.

    `read(indices)` gives the mask's own frames at native size (a mask video by random access); `frames(indices)`
    gives the masks of video frames (a single mask for every frame; a mask video decoded forward, clip by clip).
    Given the video's `num_frames`, `height` and `width`, the mask is checked against them; with the video's
    `timing`, a mask video whose frame rate or count differs is matched to the video's frames
    (`vivid.io.video.match_mask_frames`: by index for the same count, else by timestamp) and a warning says how
    (`matching`, logged unless `warn` is False).
    """

    def __init__(self, mask: str | os.PathLike | np.ndarray, num_frames: int | None = None,
                 height: int | None = None, width: int | None = None, timing: FrameTiming | None = None,
                 warn: bool = True):
        self._array = self._packed = self._reader = self._files = self._forward = self._sized = None
        self.path = None
        self.what = "mask"
        self._index: np.ndarray | None = None  # mask frame of each video frame, when not frame i for frame i
        self.matching: str | None = None
        if isinstance(mask, np.ndarray):
            self._set_array(mask)
        else:
            self.path = path = Path(mask)
            require_file(path, "mask")
            suffix = path.suffix.lower()
            if path.is_dir():
                self._files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
                if not self._files:
                    raise MediaError(f"mask folder {path} holds no image files", reason="no_frames", path=path,
                                     detail="mask folder holds no image files")
                self.count, (self.height, self.width) = len(self._files), read_mask_image(self._files[0]).shape[:2]
            elif suffix in IMAGE_SUFFIXES:
                self._set_array(binarize_mask(read_mask_image(path)[None]))
            elif suffix in ARRAY_SUFFIXES:
                loaded = _load_array(path)
                if isinstance(loaded, tuple):
                    self._packed, (self.count, self.height, self.width) = loaded
                else:
                    self._set_array(loaded)
            else:
                self.count, _, self.height, self.width = video_info(path, what="mask")
                self._open_file(path, self.count, "mask")
                if timing is not None:
                    self._index, self.matching = match_mask_frames(timing, frame_timing(path, "mask"), str(path))
        if self.count == 0:
            raise MediaError(f"mask {self.path} has no frames", reason="no_frames", path=self.path,
                             detail="mask has no frames")
        if num_frames is not None:
            self._check(num_frames, height, width)
        if self.matching and warn:
            logger.warning("%s", self.matching)

    def _set_array(self, arr: np.ndarray) -> None:
        arr = arr[None] if arr.ndim == 2 else arr
        if arr.ndim != 3:
            where = f" {self.path}" if self.path else ""
            detail = f"mask array must be (frames, height, width), got shape {arr.shape}"
            raise MediaError(f"mask array{where} must be (frames, height, width), got shape {arr.shape}",
                             path=self.path, detail=detail)
        self._array = arr
        self.count, self.height, self.width = arr.shape

    def _check(self, num_frames: int, height: int, width: int) -> None:
        if self.count not in (1, num_frames) and self._index is None:
            raise MediaError(
                f"mask has {self.count} frames but the video has {num_frames}: give one mask per frame or a single mask"
            )
        if (self.height, self.width) != (height, width):
            raise MediaError(f"mask size {self.width}x{self.height} differs from the video's {width}x{height} (WxH)")

    def _file_frame(self, i: int) -> np.ndarray:
        frame = read_mask_image(self._files[i], "mask frame")
        if frame.shape[:2] != (self.height, self.width):
            raise MediaError(f"mask folder {self.path} mixes frame sizes", reason="size_mismatch", path=self.path,
                             detail="mask folder mixes frame sizes")
        return binarize_mask(frame[None])[0]

    def _raw(self, indices: list[int], forward: bool) -> np.ndarray:
        if self._packed is not None:
            return np.unpackbits(self._packed[indices], axis=-1, count=self.width).astype(bool)
        if self._array is not None:
            return binarize_mask(np.asarray(self._array[indices]))
        if self._files is not None:
            return np.stack([self._file_frame(i) for i in indices])
        return binarize_mask(self._forward_frames(indices) if forward else self._sampled_frames(indices))

    def read(self, indices: Sequence[int]) -> np.ndarray:
        """bool (len(indices), height, width): the mask's own frames `indices`, at native size."""
        return self._raw([int(i) for i in indices], forward=False)

    def read_resized(self, indices: Sequence[int], geometry: Geometry) -> np.ndarray:
        """bool (F, H, W): frames `indices` nearest-neighbour scaled and cropped like the video (`Geometry`)."""
        native = self.read(indices).view(np.uint8)
        return resize_frames(native, geometry, cv2.INTER_NEAREST).view(bool)

    def frames(self, indices: Sequence[int]) -> np.ndarray:
        """bool (n, H, W) masks of the given video frames (a mask video decoded forward)."""
        if self._index is not None:
            indices = [int(self._index[i]) for i in indices]
        indices = [0 if self.count == 1 else int(i) for i in indices]
        return self._raw(indices, forward=True)

    def given_values(self, index: int = 0) -> np.ndarray:
        """The mask's own frame `index` as given, before `binarize_mask` (one channel: the brightest colour, or the
        alpha): to tell a drawn mask from a photo given by mistake (`looks_like_a_photo`)."""
        if self._packed is not None:
            return self.read([index])[0].view(np.uint8)
        if self._array is not None and self.path is None:
            frame = np.asarray(self._array[index])
        elif self._files is not None:
            frame = read_mask_image(self._files[index], "mask frame")
        elif self.path is not None and self.path.suffix.lower() in IMAGE_SUFFIXES:
            frame = read_mask_image(self.path)
        elif self._array is not None:
            frame = np.asarray(self._array[index])
        else:
            frame = self._sampled_frames([index])[0]
        if frame.ndim == 3:
            has_alpha = frame.shape[-1] == 4 and frame[..., 3].min() < frame[..., 3].max()
            frame = frame[..., 3] if has_alpha else frame[..., :3].max(axis=-1)
        return frame

    def any_per_frame(self, num_frames: int) -> np.ndarray:
        """bool (F,): whether each video frame has any masked pixel (one streamed pass)."""
        if self.count == 1:
            return np.full(num_frames, bool(self.frames([0]).any()))
        out = np.zeros(num_frames, bool)
        for start in range(0, num_frames, SCAN_CHUNK):
            idx = range(start, min(start + SCAN_CHUNK, num_frames))
            out[start : idx.stop] = self.frames(idx).reshape(len(idx), -1).any(axis=1)
        return out


PHOTO_GREY_LEVELS = 32  # a drawn mask has two values (and a few more at anti-aliased or compressed edges) ...
PHOTO_MID_SHARE = 0.2  # ... and few pixels between dark and bright; a photo has many of both


def looks_like_a_photo(values: np.ndarray) -> bool:
    """Whether a mask frame as given (`MaskSource.given_values`) looks like a photo rather than a mask: many grey
    levels, and many pixels neither dark nor bright (between 10% and 90% of the range)."""
    values = np.asarray(values)
    if values.dtype == np.bool_:
        return False
    top = 1.0 if np.issubdtype(values.dtype, np.floating) else float(np.iinfo(values.dtype).max)
    scaled = values.astype(np.float32) / top
    mid = float(((scaled > 0.1) & (scaled < 0.9)).mean())
    return len(np.unique(values)) > PHOTO_GREY_LEVELS and mid > PHOTO_MID_SHARE


def read_mask(path: str | os.PathLike) -> np.ndarray:
    """A whole mask sequence (F, H, W) bool from a file or folder (`MaskSource`, `binarize_mask`'s rule)."""
    source = MaskSource(path)
    return source.read(range(source.count))


def write_mask_npz(path: str | os.PathLike, mask: np.ndarray) -> Path:
    """Write a bool mask sequence (F, H, W) as the compact .npz `MaskSource` reads (`packed` + `shape`), atomically."""
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim == 2:
        mask = mask[None]
    return write_packed_mask_npz(path, np.packbits(mask, axis=-1), mask.shape)


def write_packed_mask_npz(path: str | os.PathLike, packed: np.ndarray, shape: Sequence[int]) -> Path:
    """`write_mask_npz` from rows already packed (`np.packbits(mask, axis=-1)`; an array or a memory map, so a
    long mask is never unpacked whole), atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, packed=packed, shape=np.array(shape, np.int64))
    return Path(path)
