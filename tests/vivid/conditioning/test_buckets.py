"""Aspect-ratio buckets: the rule (multiples of 16, near the base area, nearest by aspect), configs, inference size."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from data_loaders.config import DataConfig
from vivid.conditioning.buckets import (
    DEFAULT_ASPECTS,
    bucket_for_aspect,
    bucket_index,
    check_buckets,
    default_buckets,
    nearest_bucket,
)
from vivid.conditioning.preprocess import model_size, working_size
from tests.conftest import REPO_ROOT

FIVE_B = [(768, 432), (720, 480), (656, 496), (576, 576), (496, 656), (480, 720), (432, 768)]


def test_default_buckets_of_480x720_are_multiples_of_16_near_its_area_one_per_aspect():
    buckets = default_buckets(480, 720)
    assert buckets == FIVE_B
    for (h, w), aspect in zip(buckets, DEFAULT_ASPECTS):
        assert h % 16 == 0 and w % 16 == 0
        assert 0.9 * 480 * 720 <= h * w <= 480 * 720
        assert abs(math.log(w / h / aspect)) < 0.01  # 4:3 and 3:4 are 1% off; the others exact
    assert (480, 720) in buckets and (432, 768) in buckets  # the base size, and exact 16:9


def test_bucket_for_aspect_prefers_the_exact_aspect_then_the_larger_area():
    assert bucket_for_aspect(1.0, 480 * 720) == (576, 576)
    assert bucket_for_aspect(16 / 9, 480 * 720) == (432, 768)
    assert bucket_for_aspect(1.5, 64 * 96) == (64, 96)
    with pytest.raises(ValueError, match="no multiple-of-16"):
        bucket_for_aspect(1.0, 200, min_area_fraction=1.0)


def test_nearest_bucket_by_aspect_ratio():
    assert nearest_bucket(720, 1280, FIVE_B) == (432, 768)  # 16:9 landscape
    assert nearest_bucket(1080, 1920, FIVE_B) == (432, 768)
    assert nearest_bucket(1920, 1080, FIVE_B) == (768, 432)  # phone portrait
    assert nearest_bucket(480, 640, FIVE_B) == (496, 656)  # 4:3
    assert nearest_bucket(144, 176, FIVE_B) == (496, 656)  # QCIF 11:9 is nearer 4:3 than 1:1
    assert nearest_bucket(1000, 1000, FIVE_B) == (576, 576)
    assert nearest_bucket(480, 720, [(64, 96)]) == (64, 96)
    # ultra-wide: the widest bucket; mirrored buckets tie exactly for a square source, the earlier one wins
    assert nearest_bucket(100, 400, FIVE_B) == (432, 768)
    assert nearest_bucket(64, 64, [(48, 64), (64, 48)]) == (48, 64)
    assert nearest_bucket(64, 64, [(64, 48), (48, 64)]) == (64, 48)
    assert bucket_index(720, 1280, FIVE_B) == FIVE_B.index((432, 768))
    with pytest.raises(ValueError):
        nearest_bucket(720, 1280, [])


@pytest.mark.parametrize("bad, message", [
    ([[480, 721]], "multiples of 16"), ([[480]], r"\[height, width\]"), ([[0, 16]], "positive"),
    ([[480, 720], [480, 720]], "twice"), ([["480", 720]], "multiples of 16"),
])
def test_bad_buckets_are_named(bad, message):
    with pytest.raises(ValueError, match=message):
        check_buckets(bad)
    with pytest.raises(ValueError, match=message):
        DataConfig(buckets=bad)


def test_data_config_sizes():
    assert DataConfig().sizes() == [(480, 720)]
    assert DataConfig(buckets=None).buckets == []
    assert DataConfig(buckets=[(64, 96), [96, 64]]).sizes() == [(64, 96), (96, 64)]


def test_model_size_is_the_nearest_bucket_when_the_weights_have_buckets():
    assert model_size(720, 1280, 480 * 720, FIVE_B) == (432, 768)
    assert model_size(480, 640, 480 * 720, FIVE_B) == (496, 656)  # keeping the aspect would give 480x640
    assert model_size(480, 640, 480 * 720) == working_size(480, 640, 480 * 720) == (480, 640)
    assert model_size(480, 640, 480 * 720, []) == (480, 640)


def test_the_5b_config_lists_the_default_buckets():
    from pathlib import Path

    from train.config import load_config

    c = load_config(REPO_ROOT / "configs" / "vivid-5b.yaml")
    assert sorted(c.data.sizes()) == sorted(default_buckets(c.data.height, c.data.width))


# --------------------------------------------------------------------------- weights config and inference


def test_weights_config_round_trip_and_old_configs(tmp_path):
    from vivid.constants import VIVID_CONFIG_NAME
    from vivid.model.weights import VIVIDWeightsConfig

    old = {"base_model": "THUDM/CogVideoX-5b", "lora_rank": 32, "lora_alpha": 32}  # written before buckets
    (tmp_path / VIVID_CONFIG_NAME).write_text(json.dumps(old))
    assert VIVIDWeightsConfig.load(tmp_path).buckets == []
    (tmp_path / VIVID_CONFIG_NAME).write_text(json.dumps({**old, "buckets": [[480, 720], [432, 768]]}))
    assert VIVIDWeightsConfig.load(tmp_path).buckets == [[480, 720], [432, 768]]
    (tmp_path / VIVID_CONFIG_NAME).write_text(json.dumps({**old, "buckets": [[480, 700]]}))
    with pytest.raises(ValueError, match="vivid_config.json buckets: bucket \\[480, 700\\]"):
        VIVIDWeightsConfig.load(tmp_path)


TINY_BUCKETS = [[64, 96], [48, 80], [64, 64]]  # 1280x720 (16:9) is nearest 48x80 (5:3)


def _tiny_weights(model_dir, folder, buckets):
    from vivid.model.tiny import build_tiny_components
    from vivid.model.cogvideox_spec import CogVideoXSpec
    from vivid.model.weights import VIVIDWeightsConfig, save_vivid_weights

    trained = CogVideoXSpec().make_vivid(build_tiny_components(0)["transformer"], rank=4, alpha=4)
    config = VIVIDWeightsConfig(str(model_dir), lora_rank=4, lora_alpha=4, buckets=buckets)
    return save_vivid_weights(trained, folder, config)


def test_edit_of_a_1280x720_clip_runs_at_the_weights_nearest_bucket(tiny_model_dir, tmp_path, monkeypatch):
    """`vivid edit` with weights trained on buckets edits a 16:9 clip at the nearest bucket and writes the source
    size; with weights without buckets the same clip keeps its aspect within the native area (working_size)."""
    import cv2

    import vivid.cli.edit as edit_cli
    from vivid.cli import main
    from vivid.io.video import video_info, write_video

    rng = np.random.default_rng(0)
    clip = tmp_path / "in.mp4"
    write_video(clip, rng.integers(0, 256, (5, 720, 1280, 3), dtype=np.uint8), 8.0)
    mask = np.zeros((720, 1280), np.uint8)
    mask[200:500, 400:900] = 255
    cv2.imwrite(str(tmp_path / "mask.png"), mask)
    grids: list[tuple[int, int]] = []
    real_load = edit_cli.load_pipeline

    def load_and_spy(args):
        pipe = real_load(args)
        pipe.transformer.register_forward_pre_hook(
            lambda module, a, kw: grids.append(tuple(kw["hidden_states"].shape[-2:])), with_kwargs=True)
        return pipe

    monkeypatch.setattr(edit_cli, "load_pipeline", load_and_spy)
    for name, buckets, expected in [("bucketed", TINY_BUCKETS, (48, 80)), ("plain", [], (48, 96))]:
        weights = _tiny_weights(tiny_model_dir, tmp_path / name, buckets)
        out = tmp_path / f"{name}.mp4"
        assert main(["edit", "--model", str(tiny_model_dir), "--weights", str(weights), "--video", str(clip),
                     "--mask", str(tmp_path / "mask.png"), "--out", str(out), "--task", "add", "--prompt",
                     "a red circle", "--steps", "1", "--guidance", "1"]) == 0
        assert grids[-1] == (expected[0] // 8, expected[1] // 8), name
        assert video_info(out)[0] == 5 and video_info(out)[2:] == (720, 1280)
    assert working_size(720, 1280, 64 * 96) == (48, 96)
