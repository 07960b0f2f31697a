"""The app with the tiny Wan2.1-VACE, through VIVIDPipeline unchanged (issue 36): keyframe candidates, then the
chosen one propagated through the whole video, with the source's frame count, size and fps and its background."""

from __future__ import annotations

import numpy as np

from vivid.apps.gradio_app import VividApp
from vivid.io.images import read_image
from vivid.io.video import read_video, video_info, write_video

from tests.vivid.apps.test_gradio_app import _square_video


def test_the_app_previews_and_propagates_a_vace_edit(tiny_vace_pipe, tmp_path):
    app = VividApp(pipe=tiny_vace_pipe, workdir=tmp_path, steps=1, guidance=1.0)
    frames, _ = _square_video(n=9)
    video = write_video(tmp_path / "v.mp4", frames, 8, lossless=True)
    layer = np.zeros((64, 96, 4), np.uint8)
    layer[20:44, 8:32, 3] = 255
    session = app.new_session("local")
    app.load_video(session, str(video))
    candidates = app.preview(session, {"layers": [layer]}, "static", None, "add", "a red ball", 2, 0)
    assert len(candidates) == 2 and all(read_image(c).shape == (64, 96, 3) for c in candidates)
    out = app.propagate(session, "add", "a red ball", 0)
    n, fps, h, w = video_info(out)
    assert (n, h, w) == (9, 64, 96) and abs(fps - 8) < 1e-3
    edited, _ = read_video(out)
    error = np.abs(edited.astype(int) - frames).mean(axis=(0, 3))  # lossy H.264 of a noise texture: about 14
    assert 4 * error[:, 48:].mean() < error[20:44, 8:32].mean()  # the source pasted back far from the mask
