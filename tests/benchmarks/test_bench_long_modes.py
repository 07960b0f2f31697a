"""The chain-against-parallel drift benchmark: synthetic TA per clip, whether parallel ran its clips between two
keyframes, and the agreement of keyframes edited jointly against one by one."""

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import bench_long_modes as bench  # noqa: E402


def _keyframes(specs: list[tuple[str, str]]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """One 48x64 keyframe per (colour, shape) on one background, each shape at its own place, and its box mask."""
    from data_loaders.synthetic import Entity, background, entity_masks, render

    bg = background(np.random.default_rng(0), 1, 48, 64)
    frames, masks = [], []
    for i, (color, shape) in enumerate(specs):
        entity = Entity(color, shape, "large", None, np.array([[20.0 + 4 * i, 24.0]]), 10.0)
        frames.append(render(bg, [entity])[0])
        masks.append(bench.bounding_box(entity_masks(entity, 48, 64))[0])
    return frames, masks


def test_keyframe_agreement_tells_agreeing_keyframes_from_disagreeing():
    agree = bench.keyframe_agreement(*_keyframes([("red", "square")] * 3), "a red square")
    assert agree["keyframes"] == 3 and agree["synthetic_ta"] == 1.0
    assert agree["colour_agreement"] == agree["shape_agreement"] == 1.0
    assert agree["found"] == ["red square"] * 3
    mixed = bench.keyframe_agreement(*_keyframes([("red", "square"), ("green", "circle"), ("red", "circle")]),
                                     "a red square")
    assert mixed["synthetic_ta"] == round(1 / 3, 2)
    assert mixed["colour_agreement"] == mixed["shape_agreement"] == round(2 / 3, 2)
    assert mixed["colour_distance_pairs"] > agree["colour_distance_pairs"] + 50
    assert mixed["colour_distance_to_first"] > agree["colour_distance_to_first"] + 50


def test_synthetic_ta_per_clip_of_the_long_video():
    frames, masks = bench.synthetic_long_video(17, 48, 64, seed=0)
    clips = [{"write_start": 0, "write_stop": 8}, {"write_start": 9, "write_stop": 16}]
    assert [f["match"] for f in bench.clip_alignment(frames, masks, clips, "a blue circle")] == [True, True]
    assert [f["match"] for f in bench.clip_alignment(frames, masks, clips, "a red square")] == [False, False]


def test_parallel_says_whether_its_clips_ran_between_keyframes_and_keyframes_compare(tiny_model_dir, tmp_path):
    from vivid.io.video import write_video
    from vivid.model.weights import VIVIDWeightsConfig
    from vivid.pipeline import VIVIDPipeline

    pipe = VIVIDPipeline.from_pretrained(tiny_model_dir)
    frames, masks = bench.synthetic_long_video(17, 64, 96, seed=0)
    video = write_video(tmp_path / "source.mp4", frames, 24.0, lossless=True)
    args = argparse.Namespace(prompt="a red square", steps=1, guidance=1.0, seed=0, kv_budget=None, out_dir=tmp_path)
    fallback = bench.run_mode(pipe, "parallel", video, masks, tmp_path, args)
    assert fallback["clips"] == 2 and fallback["between_keyframes"] == 0
    assert len(fallback["synthetic_ta_per_clip"]) == 2 and len(fallback["drift_per_clip"]) == 2
    pipe.vivid_config = VIVIDWeightsConfig(kive_last_frame_prob=0.5)
    assert bench.run_mode(pipe, "parallel", video, masks, tmp_path, args)["between_keyframes"] == 2
    keyframes = bench.compare_keyframes(pipe, frames, masks, [0, 8, 16], args)
    assert keyframes["frames"] == [0, 8, 16]
    assert keyframes["joint"]["keyframes"] == keyframes["one_by_one"]["keyframes"] == 3
    assert (tmp_path / "keyframes_joint.mp4").is_file() and (tmp_path / "keyframes_one_by_one.mp4").is_file()
