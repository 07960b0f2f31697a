"""One prompt -> a mask file of the video's frame count, size and fps, white = edit, that `vivid edit --mask` reads
as it is (`vivid.io.masks`): a lossless mask video (.mp4/.mov/.m4v), a .npz (packed bits), or a folder of PNGs
(any other name).

Everything is checked before a model is loaded (`check_mask_job`). Frames are streamed: forward from the prompt
frame to the end, then backward from it to frame 0 (words: forward from frame 0, found on every frame). Per-frame
masks of each tracked object go to packed-bit memory maps in a temporary folder, so memory does not grow with
the video's length; the chosen objects' union is shaped (`shaping.shape_mask`) and written, and nothing is written
when nothing was found.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from vivid.io.files import VIDEO_OUT_SUFFIXES, MediaError
from vivid.io.masks import write_packed_mask_npz
from vivid.io.video import VideoSource, VideoWriter

from .prompts import Prompt, PromptError, check_prompt
from .shaping import SHAPES, shape_mask

SEGMENTERS = ("sam2", "sam3", "classic")
DEFAULT_MODELS = {"sam2": "facebook/sam2.1-hiera-large", "sam3": "facebook/sam3"}
CHUNK = 16  # frames decoded, shaped and written at a time


@dataclass
class MaskResult:
    path: Path
    frames: int
    instances: int  # objects in the mask (words: instances found and kept)
    empty_frames: int  # frames where the mask has no pixel (the object left or was lost)
    area: float  # mean masked fraction of the frame


def output_kind(out: str | os.PathLike) -> str:
    """"video", "npz" or "png" (a folder of PNGs), by the name's suffix."""
    suffix = Path(out).suffix.lower()
    return "video" if suffix in VIDEO_OUT_SUFFIXES else "npz" if suffix == ".npz" else "png"


def _same(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    a, b = Path(a), Path(b)
    return a.resolve() == b.resolve() or (a.exists() and b.exists() and os.path.samefile(a, b))


def default_segmenter(prompt: Prompt) -> str:
    return "sam3" if prompt.is_text else "sam2"


def check_mask_job(video: str | os.PathLike, out: str | os.PathLike, prompt: Prompt, segmenter: str,
                   shape: str = "mask", grow: int = 0, preview: str | os.PathLike | None = None) -> VideoSource:
    """Every problem of a mask job as one line (MediaError / PromptError / ValueError) before any model is loaded;
    the opened video when there is none."""
    if segmenter not in SEGMENTERS:
        raise ValueError(f"unknown segmenter {segmenter!r} (known: {', '.join(SEGMENTERS)})")
    if shape not in SHAPES or grow < 0:
        raise ValueError(f"--shape must be one of {', '.join(SHAPES)} and --grow >= 0, got {shape!r}, {grow}")
    named = {"--video": video, "--out": out, **({"--preview": preview} if preview else {})}
    for (a, pa), (b, pb) in [(x, y) for i, x in enumerate(named.items()) for y in list(named.items())[i + 1:]]:
        if _same(pa, pb):
            raise MediaError(f"{b} {pb} is the same file as {a}: give another name (inputs are never overwritten)")
    if preview and Path(preview).suffix.lower() not in VIDEO_OUT_SUFFIXES:
        raise MediaError(f"--preview {preview}: a video is written as MP4; give a {', '.join(VIDEO_OUT_SUFFIXES)} name")
    if output_kind(out) == "png" and Path(out).exists() and (not Path(out).is_dir() or any(Path(out).iterdir())):
        raise MediaError(f"--out {out} exists and is not an empty folder: give a new folder for the PNG frames "
                         f"(or a .mp4 / .npz name)")
    source = VideoSource(video)  # an unreadable video is a MediaError here
    check_prompt(prompt, source.num_frames, source.height, source.width)
    if prompt.is_text and segmenter != "sam3":
        raise PromptError(f"--text needs --segmenter sam3 (the {segmenter} segmenter takes points and boxes)")
    if not prompt.is_text and segmenter == "sam3":
        raise PromptError("--segmenter sam3 takes words (--text); points and boxes go to sam2 or classic")
    return source


def load_tracker(segmenter: str, model: str | None, tiny_root: str | os.PathLike | None = None,
                 device: str | None = None):
    """The segmenter's frame tracker; `model` a hub id, a folder or "tiny" (written under `tiny_root`)."""
    if segmenter == "classic":
        from .classic import ClassicTracker

        return ClassicTracker()
    import torch

    from .loading import default_device, default_dtype, model_path
    from .sam_video import Sam2Tracker, Sam3Tracker

    dev = torch.device(device) if device else default_device()
    root = tiny_root or Path(tempfile.gettempdir()) / "vivid-tiny-models"
    name = model_path(segmenter, model or DEFAULT_MODELS[segmenter], root)
    cls = Sam3Tracker if segmenter == "sam3" else Sam2Tracker
    return cls(name, dev, default_dtype(dev))


class _PackedStore:
    """Per-object bool masks (F, H, W), stored as packed bits in memory maps under a temporary folder."""

    def __init__(self, folder: Path, frames: int, height: int, width: int):
        self.folder, self.shape = folder, (frames, height, (width + 7) // 8)
        self.width = width
        self.maps: dict[int, np.ndarray] = {}

    def put(self, index: int, masks: dict[int, np.ndarray]) -> None:
        for obj, mask in masks.items():
            if obj not in self.maps:
                self.maps[obj] = np.lib.format.open_memmap(self.folder / f"{obj}.npy", "w+", np.uint8, self.shape)
            self.maps[obj][index] = np.packbits(mask, axis=-1)

    def union(self, objects: list[int], start: int, stop: int) -> np.ndarray:
        out = np.zeros((stop - start, *self.shape[1:]), np.uint8)
        for obj in objects:
            out |= self.maps[obj][start:stop]
        return np.unpackbits(out, axis=-1, count=self.width).astype(bool)


def frame_stream(source: VideoSource, start: int, stop: int, reverse: bool) -> Iterator[tuple[int, np.ndarray]]:
    """(index, frame) from `start` to `stop` (exclusive), read in chunks; backward by random access."""
    step = -1 if reverse else 1
    for first in range(start, stop, step * CHUNK):
        last = max(first - CHUNK, stop) if reverse else min(first + CHUNK, stop)
        indices = list(range(first, last, step))
        chunk = source.read(indices) if reverse else source.frames(indices)
        yield from zip(indices, chunk)


def track(source: VideoSource, tracker, prompt: Prompt, store: _PackedStore, progress: Callable[[int], None]) -> None:
    """Every frame's masks into `store`: forward from the prompt frame, then backward from it."""
    first = prompt.frame if tracker.bidirectional else 0
    for index, frame in frame_stream(source, first, source.num_frames, reverse=False):
        store.put(index, tracker.begin(frame, prompt) if index == first else tracker.step(frame, index, False))
        progress(1)
    if tracker.bidirectional and first > 0:
        tracker.rewind()
        for index, frame in frame_stream(source, first - 1, -1, reverse=True):
            store.put(index, tracker.step(frame, index, True))
            progress(1)


def choose_objects(tracker, store: _PackedStore, prompt: Prompt, num_frames: int) -> list[int]:
    """The objects that make the mask: for words every instance found (best score first), or the `instance`-th,
    or the best `max_instances`; a PromptError when the words found nothing."""
    found = sorted((o for o, m in store.maps.items() if m.any()), key=lambda o: -tracker.scores.get(o, 0.0))
    if not found and prompt.is_text:
        raise PromptError(f"no instance of {prompt.text!r} found in frames 0-{num_frames - 1}")
    if not found:
        raise PromptError(f"{prompt.describe()} segmented nothing in frames 0-{num_frames - 1}")
    if not prompt.is_text:
        return found
    if prompt.instance is not None:
        if prompt.instance > len(found):
            raise PromptError(f"--instance {prompt.instance}: only {len(found)} instance(s) of {prompt.text!r} found")
        return [found[prompt.instance - 1]]
    return found[: prompt.max_instances] if prompt.max_instances else found


def overlay(frames: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Frames with the mask tinted red and outlined, for checking a mask before editing."""
    out = frames.copy()
    tint = np.array([255, 40, 40], np.float32)
    for frame, mask in zip(out, masks):
        frame[mask] = (0.5 * frame[mask] + 0.5 * tint).astype(np.uint8)
        contours, _ = cv2.findContours(mask.view(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(frame, contours, -1, (255, 255, 0), 1)
    return out


class _MaskWriter:
    """Writes the mask chunk by chunk in the output's format; the file or folder appears only on `close()`."""

    def __init__(self, out: Path, frames: int, height: int, width: int, fps: float, scratch: Path):
        self.out, self.kind = out, output_kind(out)
        self.shape = (frames, height, width)
        self.written = 0
        if self.kind == "video":
            self.video = VideoWriter(out, fps, lossless=True)  # decodes to exactly 0 / 255
        elif self.kind == "npz":
            packed_shape = (frames, height, (width + 7) // 8)
            self.packed = np.lib.format.open_memmap(scratch / "out.npy", "w+", np.uint8, packed_shape)
        else:
            out.parent.mkdir(parents=True, exist_ok=True)
            self.folder = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))

    def write(self, masks: np.ndarray) -> None:
        grey = masks.astype(np.uint8) * 255
        if self.kind == "video":
            self.video.write(np.repeat(grey[..., None], 3, axis=-1))
        elif self.kind == "npz":
            self.packed[self.written : self.written + len(masks)] = np.packbits(masks, axis=-1)
        else:
            for i, frame in enumerate(grey, self.written):
                if not cv2.imwrite(str(self.folder / f"{i:06d}.png"), frame):
                    raise MediaError(f"could not write a PNG frame into {self.folder}")
        self.written += len(masks)

    def close(self) -> Path:
        if self.kind == "video":
            return self.video.close()
        if self.kind == "npz":
            self.packed.flush()
            return write_packed_mask_npz(self.out, self.packed, self.shape)
        if self.out.is_dir():
            self.out.rmdir()  # empty: checked before the run
        os.rename(self.folder, self.out)
        return self.out

    def abort(self) -> None:
        if self.kind == "video":
            self.video.abort()
        elif self.kind == "png":
            shutil.rmtree(self.folder, ignore_errors=True)


def write_outputs(source: VideoSource, store: _PackedStore, objects: list[int], out: Path, scratch: Path,
                  shape: str, grow: int, preview: Path | None) -> tuple[int, float]:
    """The shaped union of `objects` as the mask file (and the preview); (empty frames, mean area)."""
    n, h, w = source.num_frames, source.height, source.width
    writer = _MaskWriter(out, n, h, w, source.fps, scratch)
    shown = VideoWriter(preview, source.fps) if preview else None
    empty, area = 0, 0.0
    try:
        for start in range(0, n, CHUNK):
            stop = min(start + CHUNK, n)
            masks = shape_mask(store.union(objects, start, stop), shape, grow)
            writer.write(masks)
            if shown is not None:
                shown.write(overlay(source.frames(range(start, stop)), masks))
            empty += int((~masks.reshape(len(masks), -1).any(axis=1)).sum())
            area += float(masks.mean()) * len(masks)
    except BaseException:
        writer.abort()
        if shown is not None:
            shown.abort()
        raise
    writer.close()
    if shown is not None:
        shown.close()
    return empty, area / n


def _quietly(fn, *args):
    """`fn(*args)` without transformers' loading and saving progress bars."""
    from transformers.utils import logging as hf_logging

    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        return fn(*args)
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


def make_mask(video: str | os.PathLike, out: str | os.PathLike, prompt: Prompt, segmenter: str | None = None,
              model: str | None = None, shape: str = "mask", grow: int = 0, preview: str | os.PathLike | None = None,
              tiny_root: str | os.PathLike | None = None, device: str | None = None,
              progress: bool = True) -> MaskResult:
    """`vivid mask`: the mask of what `prompt` points at in `video`, written to `out` (see the module's doc)."""
    from tqdm.auto import tqdm

    segmenter = segmenter or default_segmenter(prompt)
    source = check_mask_job(video, out, prompt, segmenter, shape, grow, preview)
    tracker = _quietly(load_tracker, segmenter, model, tiny_root, device) if not progress else \
        load_tracker(segmenter, model, tiny_root, device)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".vivid-mask-", dir=out.parent) as scratch:
        store = _PackedStore(Path(scratch), source.num_frames, source.height, source.width)
        with tqdm(total=source.num_frames, desc=f"{segmenter} masks", unit="frame", disable=not progress) as bar:
            track(source, tracker, prompt, store, bar.update)
        objects = choose_objects(tracker, store, prompt, source.num_frames)
        empty, area = write_outputs(source, store, objects, out, Path(scratch), shape, grow,
                                    Path(preview) if preview else None)
    return MaskResult(out, source.num_frames, len(objects), empty, area)

