"""`--long-mode parallel` with the tiny Wan2.1-VACE (issue 36): VACE keeps the frames its mask leaves out, so every
clip runs between joint keyframes at both ends, each given as a kept frame; the source's frames, size and fps."""

from __future__ import annotations

import numpy as np

from vivid.io.video import read_video, video_info
from vivid.longvideo.parallel import JOINT
from vivid.longvideo.runner import chain_edit
from vivid.pipeline import VIVIDPipeline

from tests.vivid.longvideo.test_parallel import _request, clip33  # noqa: F401 (fixture)


def test_a_parallel_vace_edit_gives_each_clip_both_ends_as_kept_frames(tiny_vace_pipe, clip33, tmp_path,  # noqa: F811
                                                                       monkeypatch):
    calls: list[dict] = []
    original = VIVIDPipeline.__call__
    monkeypatch.setattr(VIVIDPipeline, "__call__", lambda self, **kw: calls.append(kw) or original(self, **kw))
    result = chain_edit(tiny_vace_pipe, _request(clip33, tmp_path / "o.mp4", num_inference_steps=1))
    assert [(c.key, c.last_key) for c in result.plan.clips] == [(JOINT, JOINT)] * 4
    clip_calls = [c for c in calls if c.get("last_keyframe") is not None]
    assert len(clip_calls) == 4 and all(c["keyframe"] is not None for c in clip_calls)
    source, fps = read_video(clip33)
    n, out_fps, h, w = video_info(result.path)
    assert (n, h, w) == (len(source), *source.shape[1:3]) and abs(out_fps - fps) < 1e-3
    frames, _ = read_video(result.path)
    outside = np.ones(source.shape[1:3], bool)
    outside[16:114, 36:144] = False  # the box (40..90 x 60..120) and its paste-back band (24 px)
    assert np.abs(frames[:, outside].astype(int) - source[:, outside]).max() <= 3


def test_a_parallel_vace_edit_gives_the_joint_keyframes_and_every_clip_the_references(tiny_vace_pipe, clip33,  # noqa: F811
                                                                                      tmp_path, monkeypatch):
    """With reference images, the joint keyframe pass (one batch, the references' latent frames first in each
    keyframe's) and every clip between the keyframes get them; the output is the source's frames, size and fps."""
    import dataclasses

    reference = np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    calls: list[dict] = []
    original = VIVIDPipeline.__call__
    monkeypatch.setattr(VIVIDPipeline, "__call__", lambda self, **kw: calls.append(kw) or original(self, **kw))
    joint_calls = []
    encode = VIVIDPipeline._encode_conditions
    monkeypatch.setattr(VIVIDPipeline, "_encode_conditions",
                        lambda self, inputs, *a: joint_calls.append(len(inputs.reference_images)) or encode(
                            self, inputs, *a))
    request = _request(clip33, tmp_path / "o.mp4", num_inference_steps=1)
    request = dataclasses.replace(request, reference_images=(reference,))
    result = chain_edit(tiny_vace_pipe, request)
    assert len(calls) == 4 and all(np.array_equal(c["reference_images"][0], reference) for c in calls)
    assert joint_calls == [1] * len(joint_calls) and len(joint_calls) == 5 + 4  # 5 joint keyframes, 4 clips
    source, fps = read_video(clip33)
    n, out_fps, h, w = video_info(result.path)
    assert (n, h, w) == (len(source), *source.shape[1:3]) and abs(out_fps - fps) < 1e-3
