"""The pixel limit on inputs, checked from the header before decoding, in the CLI and the app (issue 31, item 5)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from vivid.cli import main
from vivid.io.files import MediaError
from vivid.io.limits import DEFAULT_MAX_FRAME_PIXELS, PixelLimits, check_pixel_limits, header_size
from vivid.io.video import video_info, write_video


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    frames = np.random.default_rng(0).integers(0, 256, (9, 32, 64, 3), np.uint8)
    return write_video(tmp_path_factory.mktemp("v") / "clip.mp4", frames, 8.0, lossless=True)


@pytest.fixture(scope="module")
def mask(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("m") / "mask.png"
    m = np.zeros((32, 64), np.uint8)
    m[8:24, 16:48] = 255
    cv2.imwrite(str(path), m)
    return path


@pytest.fixture
def no_decoding(monkeypatch):
    """Any decoding of a video fails the test: the limit is checked from the header."""
    import vivid.io.video

    def decoded(*args, **kwargs):
        raise AssertionError("a video was decoded before the size check")

    monkeypatch.setattr(vivid.io.video, "_open_video", decoded)
    monkeypatch.setattr(vivid.io.video.ForwardReader, "frames", decoded)


def test_the_header_gives_the_size_without_decoding(clip, mask):
    assert header_size(clip) == (9, 32, 64) == (video_info(clip)[0], *video_info(clip)[2:])
    assert header_size(mask) == (1, 32, 64)


@pytest.mark.parametrize("argv, message", [
    (["--max-frame-pixels", "2000"], "--video {clip} is 64x32 (2,048 pixels a frame), over the limit of 2,000 "
                                     "(--max-frame-pixels; 0 for no limit)"),
    (["--max-pixels", "18000"], "--video {clip} has 9 frames of 64x32 (18,432 pixels), over the limit of 18,000 "
                                "(--max-pixels; 0 for no limit)"),
])
@pytest.mark.parametrize("command", ["edit", "keyframe"])
def test_the_cli_refuses_a_video_over_the_limit_before_decoding(clip, mask, tmp_path, capsys, no_decoding, argv,
                                                                 message, command):
    common = ["--model", "no-model-needed", "--video", str(clip), "--mask", str(mask), "--task", "add",
              "--prompt", "a ball"]
    out = ["--out", str(tmp_path / "out.mp4")] if command == "edit" else ["--out-dir", str(tmp_path / "c"),
                                                                         "--frame", "0"]
    assert main([command, *common, *out, *argv]) == 2
    assert capsys.readouterr().err == f"vivid {command}: error: {message.format(clip=clip)}\n"
    assert not (tmp_path / "out.mp4").exists()


def test_a_mask_over_the_limit_is_refused_too(clip, mask):
    with pytest.raises(MediaError, match=r"--mask .* is 64x32 .*--max-frame-pixels"):
        check_pixel_limits(mask, PixelLimits(frame=100), "--mask")


def test_zero_means_no_limit_and_the_defaults_accept_ordinary_videos(clip):
    check_pixel_limits(clip, PixelLimits(frame=0, total=0))
    check_pixel_limits(clip)
    assert DEFAULT_MAX_FRAME_PIXELS < 8000 * 8000  # the 190 KB 8000x8000 video is refused by default


def test_the_app_refuses_an_upload_over_the_limit(clip, tmp_path, no_decoding):
    from vivid.apps.gradio_app import EditSession, VividApp

    app = VividApp(pipe=None, workdir=tmp_path, limits=PixelLimits(frame=2000))
    with pytest.raises(MediaError, match=r"video .* is 64x32 \(2,048 pixels a frame\), over the limit of 2,000 "
                                         r"\(--max-frame-pixels"):
        app.load_video(EditSession(tmp_path / "s"), str(clip))
