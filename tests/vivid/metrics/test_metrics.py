"""BP, TA, TC, synthetic text alignment and resampling on hand-built arrays."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from vivid.metrics import (
    CLIPScorer,
    background_preservation,
    color_remnant,
    dominant_color,
    mask_bbox,
    resample_fps,
    resample_indices,
    shape_of,
    synthetic_alignment,
)
from vivid.synthetic_world import COLORS


def gray_video(frames=3, h=32, w=48, value=120) -> np.ndarray:
    return np.full((frames, h, w, 3), value, np.uint8)


# ------------------------------------------------------------------ BP
def test_bp_zero_when_background_identical_whatever_happens_inside():
    src = gray_video()
    mask = np.zeros(src.shape[:3], bool)
    mask[:, 8:16, 10:20] = True
    out = src.copy()
    out[mask] = 255  # the edit itself is excluded
    assert background_preservation(src, out, mask) == 0.0


def test_bp_known_value_on_0_255_scale():
    src = gray_video(frames=2, h=4, w=4, value=100)
    mask = np.zeros((2, 4, 4), bool)
    mask[:, :2, :] = True  # top half is the edit region: 2 * 8 = 16 background pixels
    out = src.copy()
    out[0, 2, 0] = 130  # one pixel, all 3 channels, +30
    out[1, 3, 3, 0] = 40  # one channel -60
    out[0, 0, 0] = 0  # inside the region: ignored
    expected = (3 * 30 + 60) / (16 * 3)
    assert background_preservation(src, out, mask) == pytest.approx(expected)


def test_bp_one_mask_for_all_frames_and_bad_inputs():
    src = gray_video()
    out = src.copy()
    out[..., 0] = 130
    mask = np.zeros(src.shape[1:3], bool)
    mask[:4, :4] = True
    assert background_preservation(src, out, mask) == pytest.approx(10 / 3)
    with pytest.raises(ValueError, match="does not match"):
        background_preservation(src, out[:2], mask)
    with pytest.raises(ValueError, match="covers every pixel"):
        background_preservation(src, out, np.ones(src.shape[:3], bool))
    with pytest.raises(ValueError, match="uint8"):
        background_preservation(src.astype(np.float32), out, mask)


# ------------------------------------------------------------------ resampling
def test_resample_to_7_5_fps():
    assert resample_indices(30, 30.0).tolist() == [0, 4, 8, 12, 16, 20, 24, 28]
    assert resample_indices(10, 25.0).tolist() == [0, 3, 7]
    assert resample_indices(5, 5.0).tolist() == [0, 1, 2, 3, 4]  # slower than 7.5 fps: all kept
    frames = np.arange(30)[:, None]
    assert resample_fps(frames, 30.0)[:, 0].tolist() == [0, 4, 8, 12, 16, 20, 24, 28]
    with pytest.raises(ValueError):
        resample_indices(10, 0.0)


# ------------------------------------------------------------------ CLIP (tiny, random, built in code)
@pytest.fixture(scope="module")
def scorer() -> CLIPScorer:
    from transformers import CLIPConfig, CLIPModel

    from vivid.model.tiny import build_tiny_tokenizer

    tok = build_tiny_tokenizer(16)
    cfg = CLIPConfig(
        text_config=dict(
            vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
            max_position_embeddings=16, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
            bos_token_id=tok.eos_token_id,
        ),
        vision_config=dict(
            image_size=32, patch_size=8, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
            num_attention_heads=2,
        ),
        projection_dim=16,
    )
    torch.manual_seed(0)
    return CLIPScorer(CLIPModel(cfg), tokenizer=tok)


def test_tc_identical_frames_is_100_and_noise_is_lower(scorer):
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)
    assert scorer.temporal_consistency(np.stack([frame] * 4)) == pytest.approx(100.0, abs=1e-3)
    noise = rng.integers(0, 256, (4, 40, 56, 3), dtype=np.uint8)
    assert scorer.temporal_consistency(noise) < 99.9
    assert np.isnan(scorer.temporal_consistency(frame[None]))


def test_ta_runs_is_deterministic_and_reads_only_the_bbox_crop(scorer):
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 256, (3, 40, 56, 3), dtype=np.uint8)
    mask = np.zeros((3, 40, 56), bool)
    mask[:, 10:25, 20:30] = True
    mask[:, 12, 40] = True  # bbox: rows 10..25, cols 20..41
    assert mask_bbox(mask[0]) == (10, 20, 25, 41)
    a = scorer.text_alignment(frames, mask, "a red circle")
    assert a == scorer.text_alignment(frames, mask, "a red circle")
    assert -100.0 <= a <= 100.0
    outside = frames.copy()
    outside[:, :10] = 0
    outside[:, :, 45:] = 255
    assert scorer.text_alignment(outside, mask, "a red circle") == pytest.approx(a, abs=1e-5)
    inside = frames.copy()
    inside[:, 15:20, 25:35] = 255 - inside[:, 15:20, 25:35]
    assert scorer.text_alignment(inside, mask, "a red circle") != pytest.approx(a, abs=1e-5)
    assert scorer.text_alignment(frames, mask, "a blue square") != pytest.approx(a, abs=1e-5)
    with pytest.raises(ValueError, match="empty"):
        scorer.text_alignment(frames, np.zeros_like(mask), "a red circle")


def test_ta_skips_frames_with_empty_mask(scorer):
    rng = np.random.default_rng(2)
    frames = rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    mask = np.zeros((2, 32, 32), bool)
    mask[0, 4:20, 4:20] = True
    both = scorer.text_alignment(frames, mask, "a green triangle")
    first = scorer.text_alignment(frames[:1], mask[:1], "a green triangle")
    assert both == pytest.approx(first, abs=1e-5)


# ------------------------------------------------------------------ synthetic world
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
