"""The strip of a parallel long edit's keyframes: the edited keyframes side by side, each under its frame number, to
look over (and accept) before the clips between them run (`vivid keyframe --long-mode parallel`, the app)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from vivid.io.images import write_image

STRIP_HEIGHT = 240  # keyframes taller than this are scaled down to it: a strip of many keyframes stays viewable
LABEL_HEIGHT = 24  # the band above each keyframe with its frame number
GAP = 4  # white pixels between two keyframes


def keyframe_strip(keyframes: Sequence[tuple[int, np.ndarray]], height: int = STRIP_HEIGHT) -> np.ndarray:
    """uint8 (H, W, 3): the keyframes (source frame, (h, w, 3) uint8 image) left to right, each under a white band
    that reads "frame N", scaled to at most `height` pixels high."""
    if not keyframes:
        raise ValueError("a keyframe strip needs at least one keyframe")
    tiles = []
    for frame, image in keyframes:
        image = np.asarray(image, np.uint8)
        h, w = image.shape[:2]
        if h > height:
            image = cv2.resize(image, (max(1, round(w * height / h)), height), interpolation=cv2.INTER_AREA)
        band = np.full((LABEL_HEIGHT, image.shape[1], 3), 255, np.uint8)
        cv2.putText(band, f"frame {frame}", (3, LABEL_HEIGHT - 7), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1,
                    cv2.LINE_AA)
        tiles.append(np.concatenate([band, image]))
    tall = max(t.shape[0] for t in tiles)
    gap = np.full((tall, GAP, 3), 255, np.uint8)
    row = []
    for tile in tiles:
        if tile.shape[0] < tall:  # keyframes of one edit share a size; pad anything else at the bottom
            tile = np.concatenate([tile, np.full((tall - tile.shape[0], *tile.shape[1:]), 255, np.uint8)])
        row += [tile, gap]
    return np.concatenate(row[:-1], axis=1)


def write_keyframe_strip(path: str | os.PathLike, keyframes: Sequence[tuple[int, np.ndarray]]) -> Path:
    """`keyframe_strip` written atomically to `path` (an image file)."""
    return write_image(path, keyframe_strip(keyframes))
