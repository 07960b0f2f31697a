"""The edit request: checked once, frozen, in the caller's words; the CLI and the runner take it."""

from __future__ import annotations

import dataclasses
import inspect
import json

import cv2
import numpy as np
import pytest

from vivid.cli import main
from vivid.io.edit_inputs import EditInputError
from vivid.io.video import VideoSource, write_video
from vivid.longvideo.request import EditOptions, edit_request
from vivid.longvideo.runner import chain_edit

H, W = 64, 96


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (17, H, W, 3), dtype=np.uint8)
    return write_video(tmp_path_factory.mktemp("v") / "in.mp4", frames, 12.0, lossless=True)


@pytest.fixture(scope="module")
def mask(tmp_path_factory):
    m = np.zeros((H, W), np.uint8)
    m[16:48, 24:72] = 255
    path = tmp_path_factory.mktemp("m") / "mask.png"
    cv2.imwrite(str(path), m)
    return path


def test_the_request_is_frozen_and_its_options_checked_in_the_callers_words(video, mask, tmp_path):
    request = edit_request(video, mask, None, "delete", tmp_path / "o.mp4", clip_frames=9, seed=3)
    assert request.options == EditOptions(clip_frames=9, seed=3) and len(request.source) == 17
    assert request.work == tmp_path / "o.mp4.work" and request.prompt  # deletion's caption
    with pytest.raises(dataclasses.FrozenInstanceError):
        request.out = tmp_path / "x.mp4"
    with pytest.raises(EditInputError, match="^clip_frames: clip length must be 4k\\+1"):
        edit_request(video, mask, None, "delete", tmp_path / "o.mp4", clip_frames=8)
    with pytest.raises(EditInputError, match="^--clip-frames: clip length"):
        edit_request(video, mask, None, "delete", tmp_path / "o.mp4", clip_frames=8, labels={"clip_frames": "--clip-frames"})
    with pytest.raises(EditInputError, match="^keyframe_frame must be a frame index >= 0 or 'auto', got -1"):
        edit_request(video, mask, None, "delete", tmp_path / "o.mp4", keyframe_frame=-1)
    with pytest.raises(EditInputError, match=r"needs a caption of what should be in the mask \(prompt\)"):
        edit_request(video, mask, None, "add", tmp_path / "o.mp4")
    with pytest.raises(EditInputError, match=r"^out .*in.mp4 is the input video"):
        edit_request(video, mask, "x", "add", video)
    with pytest.raises(TypeError, match="unknown options max_frames"):
        edit_request(video, mask, "x", "add", tmp_path / "o.mp4", max_frames=9)


def test_no_function_of_the_edit_path_takes_more_than_12_parameters():
    from vivid.longvideo import request, runner

    for module in (request, runner):
        for name, fn in inspect.getmembers(module, inspect.isfunction):
            if fn.__module__ == module.__name__:
                params = [p for p in inspect.signature(fn).parameters.values() if p.kind is not p.VAR_KEYWORD]
                assert len(params) <= 12, f"{module.__name__}.{name} takes {len(params)} parameters"


def test_a_cli_edit_opens_its_sources_once(tiny_model_dir, video, mask, tmp_path, monkeypatch):
    """Checked once: `vivid edit` builds the request (opening the video) and the runner checks nothing again."""
    opened = []
    real_init = VideoSource.__init__

    def counted(self, *args, **kwargs):
        opened.append(args[0] if args else kwargs.get("video"))
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(VideoSource, "__init__", counted)
    out = tmp_path / "o.mp4"
    assert main(["edit", "--model", str(tiny_model_dir), "--video", str(video), "--mask", str(mask), "--out",
                 str(out), "--task", "delete", "--steps", "1"]) == 0
    assert len(opened) == 1, opened


def test_library_messages_name_keywords_and_the_cli_its_flags(tiny_pipe, tiny_model_dir, video, mask, tmp_path,
                                                             capsys):
    out = tmp_path / "o.mp4"
    work = tmp_path / "o.mp4.work"
    work.mkdir()
    (work / "state.json").write_text(json.dumps({"version": 2, "fingerprint": {"prompt": "another"}}))
    with pytest.raises(ValueError, match=r"restart the edit \(restart=True\)"):
        chain_edit(tiny_pipe, edit_request(video, mask, None, "delete", out, num_inference_steps=1))
    assert main(["edit", "--model", str(tiny_model_dir), "--video", str(video), "--mask", str(mask), "--out",
                 str(out), "--task", "delete", "--steps", "1"]) == 2
    assert "restart the edit (--restart)" in capsys.readouterr().err


def test_no_cli_flag_in_the_messages_of_the_long_video_runner():
    import re
    from pathlib import Path

    import vivid.longvideo

    for path in Path(vivid.longvideo.__file__).parent.glob("*.py"):
        for line in path.read_text().splitlines():
            if "raise" in line or "Error(" in line or 'f"' in line:
                assert not re.search(r"--[a-z]", line), f"{path.name}: {line.strip()}"


def test_no_cli_flag_in_the_messages_raised_from_train():
    """The trainer's library modules name config keys and Python keywords; flags belong to its CLI."""
    import re
    from pathlib import Path

    import train

    cli = {"cli.py", "arguments.py", "__main__.py"}
    for path in Path(train.__file__).parent.glob("*.py"):
        if path.name in cli:
            continue
        lines = path.read_text().splitlines()
        for i, line in enumerate(lines):
            if re.search(r"raise \w+\(|Error\(", line):
                statement = " ".join(lines[i : i + 4])
                flags = [f for f in re.findall(r"(?<![\w-])--[a-z][\w-]*", statement.split(")\n")[0])
                         if f != "--gradient_accumulation_steps"]  # accelerate launch's own flag
                assert not flags, f"{path.name}:{i + 1}: {line.strip()}"
