"""TA and TC (vivid/metrics/clip_scores.py) with the tiny CLIP."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vivid.metrics import CLIPScorer, mask_bbox


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
