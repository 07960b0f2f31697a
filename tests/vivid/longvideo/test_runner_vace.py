"""A long edit with the tiny Wan2.1-VACE through the clip runner (issue 36): chained clips, each carrying the last
written frame of the one before as its kept keyframe, with the source's frame count, size, fps and background."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from vivid.conditioning.preprocess import paste_weights
from vivid.io.images import read_image
from vivid.io.video import read_video, write_video
from vivid.longvideo.request import edit_request
from vivid.longvideo.runner import chain_edit

from tests.vivid.longvideo.test_runner import H, W, _pattern


def test_a_long_vace_edit_chains_clips_and_keeps_the_source_outside_the_mask(tiny_vace_pipe, tmp_path):
    source = _pattern(20)
    video = write_video(tmp_path / "in.mp4", source, 12.0, lossless=True)
    m = np.zeros((H, W), np.uint8)
    m[10:22, 20:44] = 255
    cv2.imwrite(str(tmp_path / "mask.png"), m)
    out = tmp_path / "out.mp4"
    result = chain_edit(tiny_vace_pipe, edit_request(video, tmp_path / "mask.png", "a red box", "modify", out,
                                                     boundaries="fixed", num_inference_steps=1, guidance_scale=1.0,
                                                     lossless=True, keep_work=True))
    clips = [(c.start, c.stop) for c in result.plan.clips]
    assert len(clips) >= 2 and clips[0][0] == 0 and clips[-1][1] == 19  # the tiny VACE's 13-frame clips
    frames, fps = read_video(out)
    assert frames.shape == (20, H, W, 3) and abs(fps - 12.0) < 1e-3
    work = out.parent / "out.mp4.work"
    for clip in result.plan.clips[:-1]:  # the next clip's kept frame is this clip's last written frame
        last = read_image(work / f"clip_{clip.index:05d}_last.png")
        assert np.abs(frames[clip.stop].astype(int) - last).max() <= 3
    outside = paste_weights((m > 127)[None], 8)[0] == 0
    assert np.abs(frames[:, outside].astype(int) - source[:, outside]).max() <= 3  # lossless H.264 rounding
    assert (np.abs(frames[1:, 10:22, 20:44].astype(int) - source[1:, 10:22, 20:44]) > 8).any()


def test_a_long_vace_edit_gives_every_clip_the_reference_images(tiny_vace_pipe, tmp_path, monkeypatch):
    """--reference-image of a long edit: every clip's pipeline call gets the references (read once); the output
    keeps the source's frames, size and fps; the references are part of the edit's identity (its work folder)."""
    from vivid.pipeline import VIVIDPipeline

    source = _pattern(20)
    video = write_video(tmp_path / "in.mp4", source, 12.0, lossless=True)
    m = np.zeros((H, W), np.uint8)
    m[10:22, 20:44] = 255
    cv2.imwrite(str(tmp_path / "mask.png"), m)
    reference = np.random.default_rng(0).integers(0, 256, (30, 20, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "ref.png"), reference[..., ::-1])
    calls: list[dict] = []
    original = VIVIDPipeline.__call__
    monkeypatch.setattr(VIVIDPipeline, "__call__", lambda self, **kw: calls.append(kw) or original(self, **kw))
    out = tmp_path / "out.mp4"
    request = edit_request(video, tmp_path / "mask.png", "a red box", "modify", out, boundaries="fixed",
                           num_inference_steps=1, guidance_scale=1.0, lossless=True, keep_work=True,
                           reference_images=[tmp_path / "ref.png"])
    result = chain_edit(tiny_vace_pipe, request)
    assert len(calls) == len(result.plan.clips) >= 2
    for call in calls:
        assert len(call["reference_images"]) == 1 and np.array_equal(call["reference_images"][0], reference)
    frames, fps = read_video(out)
    assert frames.shape == (20, H, W, 3) and abs(fps - 12.0) < 1e-3
    again = edit_request(video, tmp_path / "mask.png", "a red box", "modify", tmp_path / "out2.mp4",
                         boundaries="fixed", num_inference_steps=1, guidance_scale=1.0, lossless=True,
                         work_dir=out.parent / "out.mp4.work")
    with pytest.raises(ValueError, match="belongs to a different edit .*reference_images"):
        chain_edit(tiny_vace_pipe, again)  # the same edit without the reference is another edit
