"""The committed tiny base (vivid/model/tiny_base) draws the synthetic world from text: its text-to-video samples
show the caption's colour far above chance, where the same architecture with random weights shows none."""

from __future__ import annotations

import numpy as np
import pytest

from vivid.evaluation.text_to_video import evaluate_text_to_video, grid_image, score_text_to_video
from vivid.model.tiny import TINY_BASE_DIR, write_tiny_model
from vivid.synthetic_world import COLORS, SHAPES


def test_score_reads_a_drawn_shape_anywhere_in_the_frame():
    frames = np.full((3, 64, 96, 3), 128, np.uint8)
    frames[:, 20:40, 50:70] = COLORS["red"]
    found = score_text_to_video(frames, "red", "square")
    assert found["color_match"] and found["shape_match"] and found["match"]
    assert not score_text_to_video(frames, "blue", "square")["match"]


@pytest.fixture(scope="module")
def pretrained_base(tmp_path_factory):
    if not (TINY_BASE_DIR / "transformer" / "config.json").is_file():
        pytest.skip("no committed tiny base")
    return write_tiny_model(tmp_path_factory.mktemp("base") / "model", pretrained="base")


def test_committed_base_draws_the_caption_and_a_random_one_does_not(pretrained_base, tmp_path):
    report, videos = evaluate_text_to_video(pretrained_base, per_caption=1, steps=10)
    assert report["overall"]["n"] == len(COLORS) * len(SHAPES)
    assert report["overall"]["color_match"] >= 0.6  # chance is 1 in 6
    random = write_tiny_model(tmp_path / "random", pretrained="vae")  # same architecture, VAE and T5; random DiT
    untrained, _ = evaluate_text_to_video(random, per_caption=1, steps=10)
    assert untrained["overall"]["color_match"] <= 0.2
    grid = grid_image(videos, scale=1)
    assert grid.shape == (len(COLORS) * 66, len(SHAPES) * 98 + (len(SHAPES) - 1) * 4, 3)


def test_the_command_samples_at_the_size_given_and_refuses_other_sizes(monkeypatch, tmp_path, capsys):
    from vivid.evaluation import text_to_video

    seen = {}
    frames = np.full((1, 32, 48, 3), 128, np.uint8)

    def evaluate(model, **kwargs):
        seen.update(kwargs)
        return {"overall": {}, "per_shape": {}}, {(c, s): [frames] for c in COLORS for s in SHAPES}

    monkeypatch.setattr(text_to_video, "evaluate_text_to_video", evaluate)
    assert text_to_video.main(["M", "--out", str(tmp_path), "--height", "128", "--width", "192"]) == 0
    assert (seen["height"], seen["width"]) == (128, 192) and (tmp_path / "text_to_video.json").is_file()
    with pytest.raises(SystemExit):
        text_to_video.main(["M", "--out", str(tmp_path), "--height", "100"])
    assert "--height must be a positive multiple of 16, got 100" in capsys.readouterr().err
