"""--steps and --guidance: rejected by argparse in `vivid edit`, and by the pipeline for `vivid keyframe`."""

from __future__ import annotations

import argparse

import cv2
import numpy as np
import pytest

from vivid.cli import main
from vivid.cli.edit import add_sampling_arguments


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="vivid edit")
    add_sampling_arguments(parser)
    return parser.parse_args(list(argv))


def test_sampling_arguments_accept_valid_values():
    args = _parse("--steps", "1", "--guidance", "0")
    assert (args.steps, args.guidance) == (1, 0.0)
    assert (_parse().steps, _parse().guidance) == (None, None)  # the base's


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--steps", "0"], "must be >= 1, got 0"),
        (["--steps", "-2"], "must be >= 1, got -2"),
        (["--steps", "2.5"], "must be a whole number >= 1, got '2.5'"),
        (["--guidance", "-0.5"], "must be a finite number >= 0, got -0.5"),
        (["--guidance", "inf"], "must be a finite number >= 0, got inf"),
        (["--guidance", "high"], "must be a number >= 0, got 'high'"),
    ],
)
def test_sampling_arguments_reject_bad_values(argv, message, capsys):
    with pytest.raises(SystemExit) as err:
        _parse(*argv)
    assert err.value.code == 2
    assert f"argument {argv[0]}: {message}" in capsys.readouterr().err


def test_keyframe_command_rejects_zero_steps_without_writing(tiny_model_dir, tmp_path, capsys):
    frames = np.full((64, 96, 3), 120, np.uint8)
    mask = np.zeros((64, 96), np.uint8)
    mask[16:48, 24:72] = 255
    cv2.imwrite(str(tmp_path / "frame.png"), frames)
    cv2.imwrite(str(tmp_path / "mask.png"), mask)
    out_dir = tmp_path / "candidates"
    with pytest.raises(SystemExit) as exit_info:  # refused while parsing, before the model loads
        main(["keyframe", "--model", str(tiny_model_dir), "--video", str(tmp_path / "frame.png"), "--mask",
              str(tmp_path / "mask.png"), "--task", "add", "--prompt", "a red circle", "--out-dir", str(out_dir),
              "--steps", "0"])
    assert exit_info.value.code == 2
    assert "argument --steps: must be >= 1, got 0" in capsys.readouterr().err
    assert not out_dir.exists()
