"""Masks made in the app: clicks, a box or words on any frame, shown on that frame at once; tracked through the
video on demand; a frame that tracked wrong fixed by more clicks there and tracked again from it.

The segmenters are `vivid mask`'s (vivid.segmentation). They take prompts on one frame, so a fix on frame k
re-tracks from k to the end and keeps the tracked masks of the frames before k (the first track goes both ways from
its prompt frame; words are found on every frame from frame 0, so a words track always covers the whole video).

Clicks are written as text, one item per `;`: `+X,Y` (on the object), `-X,Y` (not the object), `box X0,Y0,X1,Y1`,
in the frame's pixels. The page shows and edits that text; an example fills it in.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from vivid.io.video import VideoSource, VideoWriter
from vivid.segmentation.make import frame_stream, overlay
from vivid.segmentation.prompts import Prompt, PromptError, check_prompt, parse_numbers
from vivid.segmentation.shaping import shape_mask

CLICK_KINDS = ("object", "not object", "box corner")


def parse_clicks(text: str | None) -> tuple[list, list, list]:
    """'+X,Y; -X,Y; box X0,Y0,X1,Y1' -> (points, negatives, boxes); a PromptError naming a bad item."""
    points, negatives, boxes = [], [], []
    for item in (text or "").split(";"):
        item = item.strip()
        if not item:
            continue
        if item.lower().startswith("box"):
            boxes.append(parse_numbers(item[3:], 4, "box"))
        elif item[0] in "+-":
            (points if item[0] == "+" else negatives).append(parse_numbers(item[1:], 2, "click"))
        else:
            raise PromptError(f"click {item!r} is not +X,Y (object), -X,Y (not object) or box X0,Y0,X1,Y1")
    return points, negatives, boxes


def format_clicks(points: list, negatives: list, boxes: list) -> str:
    """The text `parse_clicks` reads."""
    items = [f"+{x:g},{y:g}" for x, y in points] + [f"-{x:g},{y:g}" for x, y in negatives]
    items += ["box " + ",".join(f"{v:g}" for v in box) for box in boxes]
    return "; ".join(items)


def add_click(text: str | None, x: float, y: float, kind: str, corner: tuple | None) -> tuple[str, tuple | None]:
    """`text` with a click at (x, y) added; a box needs two corner clicks: (new text, the pending first corner)."""
    if kind not in CLICK_KINDS:
        raise ValueError(f"a click is one of {', '.join(CLICK_KINDS)}, got {kind!r}")
    points, negatives, boxes = parse_clicks(text)
    if kind == "box corner":
        if corner is None:
            return format_clicks(points, negatives, boxes), (x, y)
        boxes.append((min(x, corner[0]), min(y, corner[1]), max(x, corner[0]) + 1, max(y, corner[1]) + 1))
        corner = None
    else:
        (points if kind == "object" else negatives).append((x, y))
    return format_clicks(points, negatives, boxes), corner


def draw_prompt(image: np.ndarray, prompt: Prompt | None, corner: tuple | None = None) -> np.ndarray:
    """The clicks drawn on `image`: green dots on the object, red dots off it, boxes in yellow."""
    out = image.copy()
    r = max(2, round(0.012 * min(out.shape[:2])))
    for x, y in prompt.points if prompt else []:
        cv2.circle(out, (int(x), int(y)), r, (0, 255, 0), -1)
    for x, y in prompt.negatives if prompt else []:
        cv2.circle(out, (int(x), int(y)), r, (255, 0, 0), -1)
    for x0, y0, x1, y1 in prompt.boxes if prompt else []:
        cv2.rectangle(out, (int(x0), int(y0)), (int(x1) - 1, int(y1) - 1), (255, 255, 0), 1)
    if corner is not None:
        cv2.drawMarker(out, (int(corner[0]), int(corner[1])), (255, 255, 0), cv2.MARKER_CROSS, 2 * r + 2)
    return out


def _union(masks: dict[int, np.ndarray], height: int, width: int) -> np.ndarray:
    out = np.zeros((height, width), bool)
    for mask in masks.values():
        out |= mask
    return out


class MaskMaker:
    """One video's clicked, tracked mask. `load_tracker()` gives the segmenter's tracker (`make.load_tracker`),
    shared and used one call at a time by the caller."""

    def __init__(self, video: str | os.PathLike, segmenter: str, load_tracker: Callable[[], Any]):
        self.source = VideoSource(video)
        self.segmenter, self._load = segmenter, load_tracker
        self.prompts: dict[int, Prompt] = {}  # frame -> its clicks or words, as last segmented
        self.fixed: dict[int, np.ndarray] = {}  # frame -> its mask from its own prompt, not yet tracked from
        self.last_prompted: int | None = None
        self.tracked: np.ndarray | None = None  # packed bits (F, H, ceil(W / 8)) after a track

    def prompt(self, frame: int, clicks: str | None, words: str | None) -> Prompt:
        """The prompt on `frame`, checked against the video and the segmenter (one-line PromptError)."""
        points, negatives, boxes = parse_clicks(clicks)
        words = (words or "").strip() or None
        prompt = Prompt(frame=int(frame), points=points, negatives=negatives, boxes=boxes,
                        text=None if points or boxes or negatives else words)
        if not prompt.is_text and not (points or boxes) and words is None:
            raise PromptError("click on the object (or type words, or click two box corners) first")
        check_prompt(prompt, self.source.num_frames, self.source.height, self.source.width)
        if prompt.is_text and self.segmenter != "sam3":
            raise PromptError(f"words need the sam3 segmenter (this app runs {self.segmenter}: click instead, "
                              f"or start it with --segmenter sam3)")
        if not prompt.is_text and self.segmenter == "sam3":
            raise PromptError("the sam3 segmenter takes words: type them (clicks go to sam2 or classic)")
        return prompt

    def frame(self, index: int) -> np.ndarray:
        if not 0 <= index < self.source.num_frames:
            raise PromptError(f"frame {index} is past the video's end: it has {self.source.num_frames} frames")
        return self.source.read([index])[0]

    def segment(self, prompt: Prompt) -> np.ndarray:
        """bool (H, W): the mask of `prompt` on its frame; kept as that frame's fix for the next track."""
        masks = self._load().begin(self.frame(prompt.frame), prompt)
        mask = _union(masks, self.source.height, self.source.width)
        if not mask.any():
            raise PromptError(f"{prompt.describe()} segmented nothing: click elsewhere or add clicks")
        self.prompts[prompt.frame], self.fixed[prompt.frame] = prompt, mask
        self.last_prompted = prompt.frame
        return mask

    def mask_on(self, index: int) -> np.ndarray | None:
        """The mask shown on frame `index`: its own fix if it has one since the last track, else the tracked one."""
        if index in self.fixed:
            return self.fixed[index]
        if self.tracked is None:
            return None
        return np.unpackbits(self.tracked[index], axis=-1, count=self.source.width).astype(bool)

    def track(self, progress: Callable[[int, int], None] | None = None) -> None:
        """Track the last segmented frame's prompt: both ways the first time (words: from frame 0), from that frame
        to the end after a fix there (the frames before it keep their masks)."""
        if self.last_prompted is None:
            raise PromptError("click on the object on some frame first, then track")
        tracker, prompt = self._load(), self.prompts[self.last_prompted]
        n, h, w = self.source.num_frames, self.source.height, self.source.width
        first = prompt.frame if tracker.bidirectional else 0
        whole = self.tracked is None or not tracker.bidirectional
        packed = np.zeros((n, h, (w + 7) // 8), np.uint8) if whole else self.tracked.copy()
        done = 0
        for index, frame in frame_stream(self.source, first, n, reverse=False):
            masks = tracker.begin(frame, prompt) if index == first else tracker.step(frame, index, False)
            packed[index] = np.packbits(_union(masks, h, w), axis=-1)
            done += 1
            if progress:
                progress(done, n if whole else n - first)
        if whole and tracker.bidirectional and first > 0:
            tracker.rewind()
            for index, frame in frame_stream(self.source, first - 1, -1, reverse=True):
                packed[index] = np.packbits(_union(tracker.step(frame, index, True), h, w), axis=-1)
                done += 1
                if progress:
                    progress(done, n)
        self.tracked = packed
        self.fixed.clear()

    def masks(self, shape: str = "mask", grow: int = 0) -> np.ndarray:
        """bool (F, H, W): the tracked mask, shaped and grown."""
        if self.tracked is None:
            raise PromptError("track the mask through the video first (Track)")
        masks = np.unpackbits(self.tracked, axis=-1, count=self.source.width).astype(bool)
        return shape_mask(masks, shape, int(grow))

    def shown(self, index: int, shape: str = "mask", grow: int = 0, corner: tuple | None = None,
              clicks: str | None = None) -> np.ndarray:
        """Frame `index` with its mask tinted over it and its clicks drawn (`clicks`: these, not yet segmented)."""
        frame = self.frame(index)
        mask = self.mask_on(index)
        if mask is not None:
            frame = overlay(frame[None], shape_mask(mask[None], shape, int(grow)))[0]
        prompt = Prompt(index, *parse_clicks(clicks)) if clicks is not None else self.prompts.get(index)
        return draw_prompt(frame, prompt, corner)

    def write(self, mask_path: Path, preview_path: Path, shape: str = "mask", grow: int = 0,
              painted: np.ndarray | None = None) -> tuple[Path, Path]:
        """The mask video (lossless, white = edit) and the overlay video; `painted` (F, H, W) brush strokes are
        added to the tracked mask."""
        if self.tracked is None:
            raise PromptError("track the mask through the video first (Track)")
        chunk, n = 16, self.source.num_frames
        with VideoWriter(mask_path, self.source.fps, lossless=True) as writer, \
                VideoWriter(preview_path, self.source.fps) as shown:
            for start in range(0, n, chunk):  # a chunk at a time: the whole video is never unpacked
                stop = min(start + chunk, n)
                block = np.unpackbits(self.tracked[start:stop], axis=-1, count=self.source.width).astype(bool)
                block = shape_mask(block, shape, int(grow))
                if painted is not None:
                    block |= painted[start:stop]
                writer.write(np.repeat((block.astype(np.uint8) * 255)[..., None], 3, axis=-1))
                shown.write(overlay(self.source.frames(range(start, stop)), block))
        return mask_path, preview_path
