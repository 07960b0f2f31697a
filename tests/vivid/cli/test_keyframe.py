"""`vivid keyframe`: candidate one-frame edits (seeds x captions) written as PNGs with an index, on either base."""

from __future__ import annotations

import json

import cv2
import numpy as np

from tests.vivid.longvideo.test_runner import H, W, _pattern
from vivid.cli import main
from vivid.io.images import read_image
from vivid.io.video import write_video


def test_keyframe_candidates_over_seeds_and_captions(family_model_dir, family_pipe, tmp_path, capsys):
    video = write_video(tmp_path / "v.mp4", _pattern(20), 12.0, lossless=True)
    mask = np.zeros((H, W), np.uint8)
    mask[10:22, 20:44] = 255
    cv2.imwrite(str(tmp_path / "m.png"), mask)
    out_dir = tmp_path / "cands"
    rc = main(["keyframe", "--model", str(family_model_dir), "--video", str(video), "--mask", str(tmp_path / "m.png"),
               "--task", "add", "--prompt", "a red ball", "--prompt", "a blue cube", "--seed", "3", "7",
               "--frame", "auto", "--steps", "1", "--out-dir", str(out_dir)])
    assert rc == 0
    index = json.loads((out_dir / "candidates.json").read_text())
    assert [(c["caption"], c["seed"]) for c in index["candidates"]] == [
        ("a red ball", 3), ("a red ball", 7), ("a blue cube", 3), ("a blue cube", 7)]
    from vivid.longvideo.plan import model_clip_frames

    # the most representative frame of the first clip, of the base's length (tiny CogVideoX 9 frames, tiny Wan 13)
    assert 0 <= index["frame"] < model_clip_frames(family_pipe.transformer)
    images = [read_image(out_dir / c["file"]) for c in index["candidates"]]
    assert all(img.shape == (H, W, 3) for img in images)
    assert not np.array_equal(images[0], images[1])  # different seeds, different candidates
    assert f"--keyframe-frame {index['frame']}" in capsys.readouterr().out

    assert main(["keyframe", "--model", str(family_model_dir), "--video", str(video), "--mask", str(tmp_path / "m.png"),
                 "--task", "delete", "--frame", "25", "--out-dir", str(out_dir)]) == 2
    assert "--frame 25 is outside the video (frames 0..19)" in capsys.readouterr().err


def test_keyframe_and_app_share_the_edit_commands_sampling_arguments(capsys):
    """`vivid keyframe` takes `vivid edit`'s sampling arguments (same names, defaults and checks); `vivid app`
    checks its --steps and --guidance the same way."""
    import pytest

    from vivid.cli import build_parser

    parser = build_parser()
    base = ["keyframe", "--model", "m", "--video", "v.mp4", "--mask", "m.png", "--task", "add", "--out-dir", "o"]
    args = parser.parse_args(base)
    assert (args.steps, args.guidance, args.seed, args.negative_prompt) == (None, None, [0], None)  # the base's
    args = parser.parse_args(base + ["--steps", "3", "--guidance", "1", "--seed", "5", "--negative-prompt", "blur"])
    assert (args.steps, args.guidance, args.seed, args.negative_prompt) == (3, 1.0, [5], "blur")
    app = ["app", "--model", "m"]
    assert (parser.parse_args(app).steps, parser.parse_args(app).guidance) == (None, None)
    for command in (base, app):
        for bad, message in ((["--steps", "0"], "--steps: must be >= 1"), (["--guidance", "-1"], "--guidance: must be"),
                             (["--guidance", "nan"], "--guidance: must be a finite number")):
            with pytest.raises(SystemExit) as err:
                parser.parse_args(command + bad)
            assert err.value.code == 2 and message in capsys.readouterr().err
