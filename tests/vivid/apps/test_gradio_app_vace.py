"""The app with the tiny Wan2.1-VACE, through VIVIDPipeline unchanged (issue 36): keyframe candidates, then the
chosen one propagated through the whole video, with the source's frame count, size and fps and its background."""

from __future__ import annotations

import numpy as np
import pytest

from vivid.io.video import read_video, video_info

from tests.vivid.apps.test_gradio_app import keyframes_then_accept, preview_and_propagate


def test_the_app_previews_and_propagates_a_vace_edit(tiny_vace_pipe, tmp_path):
    frames, out = preview_and_propagate(tiny_vace_pipe, tmp_path)
    n, fps, h, w = video_info(out)
    assert (n, h, w) == (9, 64, 96) and abs(fps - 8) < 1e-3
    edited, _ = read_video(out)
    error = np.abs(edited.astype(int) - frames).mean(axis=(0, 3))  # lossy H.264 of a noise texture: about 14
    assert 4 * error[:, 48:].mean() < error[20:44, 8:32].mean()  # the source pasted back far from the mask


def test_the_app_gives_a_vace_edit_the_uploaded_reference_images(tiny_vace_pipe, tiny_pipe, tmp_path, monkeypatch):
    """Reference images uploaded beside the caption go, copied into the session, to every candidate of the preview
    and every clip of the propagation; the output keeps frames, size and fps. The upload shows for a VACE model
    only, and a model without reference images refuses them in one line before any model work."""
    import cv2

    from vivid.apps.gradio_app import VividApp, build_app
    from vivid.pipeline import VIVIDPipeline

    from tests.vivid.apps.test_gradio_app import _components, session_with_video

    upload = tmp_path / "upload" / "corgi.png"
    upload.parent.mkdir()
    cv2.imwrite(str(upload), np.full((30, 50, 3), 180, np.uint8))
    calls: list[dict] = []
    original = VIVIDPipeline.__call__
    monkeypatch.setattr(VIVIDPipeline, "__call__", lambda self, **kw: calls.append(kw) or original(self, **kw))
    app = VividApp(pipe=tiny_vace_pipe, workdir=tmp_path / "work", steps=1, guidance=1.0)
    session, video, _, layer = session_with_video(app, tmp_path, 9)
    app.preview(session, {"layers": [layer]}, "static", None, "add", "a red ball", 2, 0, [str(upload)])
    assert [p.parent for p in session.reference_images] == [session.dir]
    out = app.propagate(session, "add", "a red ball", 0)
    assert len(calls) == 3  # two candidates (given the session's copy), then one clip (given its pixels)
    assert all(call["reference_images"] == session.reference_images for call in calls[:2])
    image = cv2.imread(str(upload))[..., ::-1]
    assert len(calls[2]["reference_images"]) == 1 and np.array_equal(calls[2]["reference_images"][0], image)
    n, fps, h, w = video_info(out)
    assert (n, h, w) == (9, 64, 96) and abs(fps - 8) < 1e-3
    assert _components(build_app(app))["reference-images"].visible
    cog = VividApp(pipe=tiny_pipe, workdir=tmp_path / "cog", steps=1, guidance=1.0)
    assert not _components(build_app(cog))["reference-images"].visible
    other = cog.new_session("local")
    cog.load_video(other, str(video))
    calls.clear()
    with pytest.raises(ValueError, match="^reference images: CogVideoX takes no reference images") as err:
        cog.preview(other, {"layers": [layer]}, "static", None, "add", "a red ball", 1, 0, [str(upload)])
    assert "\n" not in str(err.value) and not calls


def test_the_app_shows_a_parallel_vace_edits_keyframes_to_accept(tiny_vace_pipe, tmp_path, monkeypatch):
    keyframes_then_accept(tiny_vace_pipe, tmp_path, monkeypatch)  # VACE keeps a given last frame: clips between
