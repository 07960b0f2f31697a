"""The synthetic world's metrics (vivid/metrics/synthetic.py): shape and colour of a painted entity, synthetic
text alignment, colour remnant."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from vivid.metrics import (
    color_remnant,
    dominant_color,
    shape_of,
    synthetic_alignment,
)
from vivid.synthetic_world import COLORS


def textured(frames=2, h=64, w=96, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.uniform(70, 150, 3)
    small = rng.normal(0, 20, (h // 8, w // 8, 3)).astype(np.float32)
    tex = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    return np.stack([np.clip(base + tex, 0, 255).astype(np.uint8)] * frames)


def paint(frames, shape, color, cy=32, cx=48, r=12):
    frames = frames.copy()
    m = np.zeros(frames.shape[1:3], np.uint8)
    if shape == "circle":
        cv2.circle(m, (cx, cy), r, 1, -1)
    elif shape == "square":
        m[cy - r : cy + r, cx - r : cx + r] = 1
    else:
        cv2.fillPoly(m, [np.array([[cx, cy - r], [cx - r, cy + r], [cx + r, cy + r]], np.int32)], 1)
    frames[:, m.astype(bool)] = COLORS[color]
    return frames


def region(h=64, w=96, frames=2):
    mask = np.zeros((frames, h, w), bool)
    mask[:, 16:48, 30:66] = True  # a box around the painted shapes
    return mask


def test_red_circle_matches_its_caption_and_not_a_blue_square():
    frames = paint(textured(), "circle", "red")
    mask = region()
    hit = synthetic_alignment(frames, mask, "red", "circle")
    assert hit["match"] and hit["color"] == "red" and hit["shape"] == "circle" and hit["shape_match"]
    miss = synthetic_alignment(frames, mask, "blue", "square")
    assert not miss["match"] and not miss["color_match"] and miss["shape_match"] is False
    wrong_shape = synthetic_alignment(frames, mask, "red", "square")
    assert wrong_shape["color_match"] and not wrong_shape["match"]


@pytest.mark.parametrize("shape", ["circle", "square", "triangle"])
@pytest.mark.parametrize("color", ["green", "yellow", "cyan", "magenta"])
def test_every_painted_shape_and_colour_is_told(shape, color):
    frames = paint(textured(seed=3), shape, color, r=10)
    out = synthetic_alignment(frames, region(), color, shape)
    assert out["color"] == color and out["shape"] == shape and out["match"]


def test_background_only_has_no_dominant_colour_and_does_not_match():
    frames = textured(seed=4)
    assert dominant_color(frames, region()) is None
    assert not synthetic_alignment(frames, region(), "red", "circle")["match"]


def test_shape_cannot_be_told_when_tiny_or_cut_by_the_border():
    blob = np.zeros((32, 32), bool)
    blob[10:13, 10:13] = True
    assert shape_of(blob) is None
    blob = np.zeros((32, 32), bool)
    blob[0:12, 5:20] = True
    assert shape_of(blob) is None
    blob = np.zeros((32, 32), bool)
    blob[5:17, 5:20] = True
    assert shape_of(blob) == "square"


def test_deletion_colour_remnant():
    bg = textured(seed=5)
    mask = region()
    assert color_remnant(bg, mask, "red") == 0.0
    full = bg.copy()
    full[mask] = COLORS["red"]
    assert color_remnant(full, mask, "red") == 1.0
    half = bg.copy()
    half[:, 16:48, 30:48] = COLORS["red"]  # 18 of the region's 36 columns
    assert color_remnant(half, mask, "red") == pytest.approx(0.5)
    assert color_remnant(half, mask, "blue") == 0.0
    with pytest.raises(ValueError, match="unknown colour"):
        color_remnant(half, mask, "purple")
