"""The app with the tiny Wan2.1-VACE, through VIVIDPipeline unchanged (issue 36): keyframe candidates, then the
chosen one propagated through the whole video, with the source's frame count, size and fps and its background."""

from __future__ import annotations

import numpy as np

from vivid.io.video import read_video, video_info

from tests.vivid.apps.test_gradio_app import keyframes_then_accept, preview_and_propagate


def test_the_app_previews_and_propagates_a_vace_edit(tiny_vace_pipe, tmp_path):
    frames, out = preview_and_propagate(tiny_vace_pipe, tmp_path)
    n, fps, h, w = video_info(out)
    assert (n, h, w) == (9, 64, 96) and abs(fps - 8) < 1e-3
    edited, _ = read_video(out)
    error = np.abs(edited.astype(int) - frames).mean(axis=(0, 3))  # lossy H.264 of a noise texture: about 14
    assert 4 * error[:, 48:].mean() < error[20:44, 8:32].mean()  # the source pasted back far from the mask


def test_the_app_shows_a_parallel_vace_edits_keyframes_to_accept(tiny_vace_pipe, tmp_path, monkeypatch):
    keyframes_then_accept(tiny_vace_pipe, tmp_path, monkeypatch)  # VACE keeps a given last frame: clips between
