"""The work folder's finished clips are re-checked on resume: a damaged one is redone (issue 31, item 1)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from vivid.io.video import read_video, write_video
from vivid.longvideo.request import edit_request
from vivid.longvideo.runner import chain_edit

H, W = 32, 64


@pytest.fixture(scope="module")
def clip17(tmp_path_factory) -> Path:
    y, x = np.mgrid[0:H, 0:W]
    frames = np.stack([np.stack([(x * 5 + t * 3) % 256, (y * 6 + t) % 256, (x + y) % 256], -1) for t in range(17)])
    return write_video(tmp_path_factory.mktemp("v") / "clip17.mp4", frames.astype(np.uint8), 12.0, lossless=True)


@pytest.fixture(scope="module")
def mask_png(tmp_path_factory) -> Path:
    m = np.zeros((H, W), np.uint8)
    m[8:24, 20:44] = 255
    path = tmp_path_factory.mktemp("m") / "mask.png"
    cv2.imwrite(str(path), m)
    return path


def _edit(pipe, video, mask, out, **kw):
    return chain_edit(pipe, edit_request(video, mask, "a red ball", "add", out, boundaries="fixed", clip_frames=9,
                                         num_inference_steps=1, lossless=True, **kw))


@pytest.mark.parametrize("damage", ["truncated", "frames_short", "last_frame"])
def test_a_damaged_finished_clip_is_redone_on_resume(tiny_pipe, clip17, mask_png, tmp_path, damage, caplog):
    """As a write cut short by `ulimit -f` or a full disk left it, marked done in state.json: before the fix every
    later run failed on it (only --restart recovered)."""
    out = tmp_path / "out.mp4"
    _edit(tiny_pipe, clip17, mask_png, out, keep_work=True)
    reference = read_video(out)[0]
    work = tmp_path / "out.mp4.work"
    clip0 = work / "clip_00000.mp4"
    if damage == "truncated":
        clip0.write_bytes(clip0.read_bytes()[:600])
    elif damage == "frames_short":  # a video that opens, with fewer frames than the clip writes
        frames, fps = read_video(clip0)
        write_video(clip0, frames[:3], fps, lossless=True)
    else:
        (work / "clip_00000_last.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    out.unlink()
    result = _edit(tiny_pipe, clip17, mask_png, out)
    assert result.resumed_clips == 0 and len(result.seconds_per_clip) == 2
    np.testing.assert_array_equal(read_video(out)[0], reference)
    assert "finished clip 0" in caplog.text and "cannot be used" in caplog.text


def test_an_intact_finished_clip_is_kept(tiny_pipe, clip17, mask_png, tmp_path):
    out = tmp_path / "out.mp4"
    _edit(tiny_pipe, clip17, mask_png, out, keep_work=True)
    (tmp_path / "out.mp4.work" / "clip_00001_last.png").unlink()
    out.unlink()
    assert _edit(tiny_pipe, clip17, mask_png, out).resumed_clips == 1
