"""The app's pieces without a browser: mask propagation by optical flow, the editor's mask, error messages."""

from __future__ import annotations

import numpy as np
import pytest

from vivid.app import VividApp, editor_mask, propagate_mask, write_mask_video
from vivid.media import read_mask, write_video


def _square_video(n: int = 12, step: int = 3) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """A textured square moving right over a textured background; returns frames and the square's corners."""
    rng = np.random.default_rng(0)
    background = (rng.random((64, 96, 3)) * 80).astype(np.uint8)
    square = (rng.random((20, 20, 3)) * 100 + 150).astype(np.uint8)
    frames, corners = [], []
    for t in range(n):
        f = background.copy()
        top, left = 22, 10 + step * t
        f[top : top + 20, left : left + 20] = square
        frames.append(f)
        corners.append((top, left))
    return np.stack(frames), corners


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def test_optical_flow_carries_the_mask_with_the_object():
    frames, corners = _square_video()
    first = np.zeros((64, 96), bool)
    first[22:42, 10:30] = True
    masks = list(propagate_mask(iter(frames), first))
    assert len(masks) == len(frames)
    top, left = corners[-1]
    truth = np.zeros((64, 96), bool)
    truth[top : top + 20, left : left + 20] = True
    assert _iou(masks[-1], truth) > 0.6
    assert _iou(masks[-1], first) < 0.2  # it moved; a static mask would not


def test_mask_video_static_and_flow(tmp_path):
    frames, _ = _square_video()
    video = write_video(tmp_path / "v.mp4", frames, 8, lossless=True)
    first = np.zeros((64, 96), bool)
    first[22:42, 10:30] = True
    static = read_mask(write_mask_video(tmp_path / "static.mp4", str(video), first, "static"))
    flow = read_mask(write_mask_video(tmp_path / "flow.mp4", str(video), first, "optical flow"))
    assert static.shape == flow.shape == (12, 64, 96)
    assert (static == first).all()
    assert _iou(flow[-1], first) < 0.2
    with pytest.raises(ValueError, match="mask mode"):
        write_mask_video(tmp_path / "x.mp4", str(video), first, "magic")


def test_editor_mask_reads_painted_layers_and_refuses_empty_ones():
    layer = np.zeros((64, 96, 4), np.uint8)
    layer[10:20, 30:50, 3] = 255
    mask = editor_mask({"background": None, "layers": [layer], "composite": None}, 64, 96)
    assert mask.sum() == 200 and mask[15, 40]
    small = np.zeros((32, 48, 4), np.uint8)
    small[5:10, 15:25, 3] = 255  # the editor may send a scaled canvas
    assert editor_mask({"layers": [small]}, 64, 96)[15, 40]
    with pytest.raises(ValueError, match="paint"):
        editor_mask({"background": None, "layers": [], "composite": None}, 64, 96)
    with pytest.raises(ValueError, match="empty"):
        editor_mask({"layers": [np.zeros((64, 96, 4), np.uint8)]}, 64, 96)


def test_app_actions_fail_with_messages_in_the_wrong_order(tmp_path):
    app = VividApp(pipe=None, workdir=tmp_path)
    session = app.new_session()
    with pytest.raises(ValueError, match="upload a video first"):
        app.preview(session, None, "static", None, "add", "a ball", 2, 0)
    frames, _ = _square_video()
    video = write_video(tmp_path / "v.mp4", frames, 8, lossless=True)
    app.load_video(session, str(video))
    assert session.summary == "Loaded: 12 frames at 8 fps, 96x64."
    with pytest.raises(ValueError, match="preview keyframe candidates"):
        app.propagate(session, "add", "a ball", 0)
    with pytest.raises(ValueError, match="paint the mask"):
        app.preview(session, {"layers": []}, "static", None, "add", "a ball", 2, 0)
    bad = write_video(tmp_path / "m.mp4", np.full((3, 64, 96, 3), 255, np.uint8), 8, lossless=True)
    with pytest.raises(ValueError, match="mask has 3 frames but the video has 12"):
        app.preview(session, None, "static", str(bad), "add", "a ball", 2, 0)
