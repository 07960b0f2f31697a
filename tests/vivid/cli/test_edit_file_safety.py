"""Users' files are never lost: the long edit's work folder, inputs named as outputs, killed writes' temporaries,
and output names or options that are refused before any model work (docs/reliability.md)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from vivid.cli import main
from vivid.longvideo.request import edit_request
from vivid.longvideo.runner import chain_edit
from vivid.io.atomic import stale_temporaries
from vivid.io.files import MediaError
from vivid.io.video import read_video, video_info, write_video

from tests.conftest import REPO_ROOT as REPO
H, W = 32, 64  # below the tiny model's native size: it works at the source size


def _frames(n: int) -> np.ndarray:
    y, x = np.mgrid[0:H, 0:W]
    return np.stack([np.stack([(x * 5 + t * 3) % 256, (y * 6 + t) % 256, (x + y) % 256], -1) for t in range(n)]
                    ).astype(np.uint8)


@pytest.fixture(scope="module")
def clip17(tmp_path_factory) -> Path:
    """17 frames: two clips of the tiny model (9 frames), so `vivid edit` takes the long path."""
    return write_video(tmp_path_factory.mktemp("v") / "clip17.mp4", _frames(17), 12.0, lossless=True)


@pytest.fixture(scope="module")
def clip9(tmp_path_factory) -> Path:
    """9 frames: one clip, the short path."""
    return write_video(tmp_path_factory.mktemp("v9") / "clip9.mp4", _frames(9), 12.0, lossless=True)


@pytest.fixture(scope="module")
def mask_png(tmp_path_factory) -> Path:
    m = np.zeros((H, W), np.uint8)
    m[8:24, 20:44] = 255
    path = tmp_path_factory.mktemp("m") / "mask.png"
    cv2.imwrite(str(path), m)
    return path


def _edit(pipe, video, mask, out, **kw):
    progress = kw.pop("progress", None)
    return chain_edit(pipe, edit_request(video, mask, "a red ball", "add", out, boundaries="fixed", clip_frames=9,
                                         num_inference_steps=1, lossless=True, **kw), progress=progress)


def _user_files(folder: Path) -> dict[str, bytes]:
    """Files a user keeps in a folder, named like the runner's own (the prefixes it used to claim)."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {"clip_art.png": b"\x89PNG my drawing", "statement.pdf": b"%PDF-1.4 my bank statement",
             "clip_notes/todo.txt": b"keep me", ".state.notes": b"hidden but mine"}
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    return files


def _assert_kept(folder: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        assert (folder / name).read_bytes() == data, f"{name} was changed or deleted"


# ---------------------------------------------------------------------------------------- #1 the work folder
def test_a_work_dir_holding_user_files_survives_a_run_and_its_cleanup(tiny_pipe, clip17, mask_png, tmp_path):
    work = tmp_path / "my folder"
    files = _user_files(work)
    out = tmp_path / "out.mp4"
    result = _edit(tiny_pipe, clip17, mask_png, out, work_dir=work, keep_work=True)
    assert video_info(out)[0] == 17 and len(result.plan.clips) == 2
    _assert_kept(work, files)
    state = json.loads((work / "state.json").read_text())
    assert sorted(state["files"]) == ["clip_00000.mp4", "clip_00000_last.png", "clip_00001.mp4",
                                      "clip_00001_last.png", "clips.json"]  # recorded before the first is written
    assert state["made_work"] is False  # the user's folder: never removed, even when empty
    # a restart of the same edit discards that edit's files only, then its cleanup removes what it wrote
    _edit(tiny_pipe, clip17, mask_png, out, work_dir=work, restart=True)
    _assert_kept(work, files)
    assert sorted(p.name for p in work.iterdir()) == sorted({n.split("/")[0] for n in files})


def test_a_work_folder_holding_a_user_file_is_kept(tiny_pipe, clip17, mask_png, tmp_path):
    out = tmp_path / "out.mp4"
    work = tmp_path / "out.mp4.work"
    _edit(tiny_pipe, clip17, mask_png, out, keep_work=True)
    (work / "clip_art.png").write_bytes(b"dropped in by the user")
    _edit(tiny_pipe, clip17, mask_png, out)  # resumes (all clips finished), assembles, cleans up its own files
    assert sorted(p.name for p in work.iterdir()) == ["clip_art.png"]


def test_a_work_dir_file_the_edit_would_write_but_did_not_is_refused(tiny_pipe, clip17, mask_png, tmp_path):
    out = tmp_path / "out.mp4"
    work = tmp_path / "work"
    work.mkdir()
    (work / "clip_00001.mp4").write_bytes(b"someone else's clip")
    with pytest.raises(ValueError, match=r"holds clip_00001.mp4, which this edit did not write"):
        _edit(tiny_pipe, clip17, mask_png, out, work_dir=work)
    assert (work / "clip_00001.mp4").read_bytes() == b"someone else's clip"
    (work / "clip_00001.mp4").unlink()
    (work / "state.json").write_text('{"my": "settings"}')
    for restart in (False, True):
        with pytest.raises(ValueError, match=r"holds a state.json that is not a vivid edit's"):
            _edit(tiny_pipe, clip17, mask_png, out, work_dir=work, restart=restart)
    assert (work / "state.json").read_text() == '{"my": "settings"}' and not out.exists()


def test_an_interrupted_cleanup_is_rerun_from_the_first_missing_clip(tiny_pipe, clip17, mask_png, tmp_path):
    out = tmp_path / "out.mp4"
    _edit(tiny_pipe, clip17, mask_png, out, keep_work=True)
    reference = read_video(out)[0]
    (tmp_path / "out.mp4.work" / "clip_00001_last.png").unlink()  # as a cleanup killed half-way leaves it
    out.unlink()
    result = _edit(tiny_pipe, clip17, mask_png, out)
    assert result.resumed_clips == 1 and len(result.seconds_per_clip) == 1
    np.testing.assert_array_equal(read_video(out)[0], reference)


# ------------------------------------------------------------------------- #5 temporaries of killed writes
def _killed_write(path: Path) -> Path:
    """The 0-byte temporary that `atomic_path` leaves when its process is killed mid-write (SIGKILL)."""
    before = set(stale_temporaries(path))
    script = ("import os, signal, sys; from vivid.io.atomic import atomic_path; ctx = atomic_path(sys.argv[1]); ctx.__enter__(); "
              "os.kill(os.getpid(), signal.SIGKILL)")
    proc = subprocess.run([sys.executable, "-c", script, str(path)], env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == -signal.SIGKILL
    (left,) = set(stale_temporaries(path)) - before
    return left


def test_a_resumed_run_removes_the_temporaries_a_killed_assembly_left(tiny_pipe, clip17, mask_png, tmp_path,
                                                                       monkeypatch):
    import vivid.longvideo.runner as runner

    out = tmp_path / "out.mp4"
    decoys = {name: b"mine" for name in (".out.mp4.part", "out.mp4.part", ".out.backup01.mp4.part.keep",
                                         ".out.abcdefghi.mp4.part", ".other.abcdefgh.mp4.part")}
    for name, data in decoys.items():
        (tmp_path / name).write_bytes(data)

    class Killed(BaseException):
        pass

    def killed_assembly(plan, work, out, fps, lossless):
        left = _killed_write(out)
        assert left.stat().st_size == 0
        raise Killed

    monkeypatch.setattr(runner, "assemble", killed_assembly)
    with pytest.raises(Killed):
        _edit(tiny_pipe, clip17, mask_png, out)
    work = tmp_path / "out.mp4.work"
    state_tmp = _killed_write(work / "state.json")
    assert len(stale_temporaries(out)) == 1 and not out.exists()
    monkeypatch.undo()
    result = _edit(tiny_pipe, clip17, mask_png, out)
    assert result.resumed_clips == 2 and video_info(out)[0] == 17
    assert stale_temporaries(out) == [] and not state_tmp.exists() and not work.exists()
    for name, data in decoys.items():
        assert (tmp_path / name).read_bytes() == data, f"{name} is not vivid's and was removed"


def test_the_short_path_removes_its_own_killed_output_temporary(tiny_model_dir, clip9, mask_png, tmp_path):
    out = tmp_path / "edit.mp4"
    left = _killed_write(out)
    decoy = tmp_path / ".edit.notes.txt"
    decoy.write_text("mine")
    assert main(["edit", "--model", str(tiny_model_dir), "--video", str(clip9), "--mask", str(mask_png), "--out",
                 str(out), "--task", "add", "--prompt", "x", "--steps", "1"]) == 0
    assert not left.exists() and decoy.read_text() == "mine" and video_info(out)[0] == 9


# ------------------------------------------------------------------------ #2 an output that is an input
def _cli(model: Path, video: Path, mask: Path, out: Path, *extra: str) -> list[str]:
    return ["edit", "--model", str(model), "--video", str(video), "--mask", str(mask), "--out", str(out),
            "--task", "add", "--prompt", "x", "--steps", "1", *extra]


@pytest.mark.parametrize("case", ["image_out_is_video", "short_out_is_mask", "long_out_is_mask", "long_out_is_video",
                                  "out_is_keyframe", "hard_link", "symlink", "work_dir_in_mask_folder"])
def test_an_output_that_is_an_input_is_refused_in_one_line(tiny_model_dir, clip9, clip17, case, tmp_path, capsys):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    video = Path(write_video(inputs / "v.mp4", read_video(clip17 if case.startswith("long") else clip9)[0], 12,
                             lossless=True))
    mask = write_video(inputs / "m.mp4", np.full((1, H, W, 3), 255, np.uint8), 12, lossless=True)
    extra: list[str] = []
    if case == "image_out_is_video":
        video = inputs / "frame.png"
        cv2.imwrite(str(video), _frames(1)[0])
        out = video
    elif case in ("short_out_is_mask", "long_out_is_mask"):
        out = mask
    elif case == "long_out_is_video":
        out = video
    elif case == "out_is_keyframe":
        key = inputs / "key.mp4"  # a keyframe named like a video: still an input
        key.write_bytes(b"not really a keyframe")
        out, extra = key, ["--keyframe", str(key)]
    elif case == "hard_link":
        out = tmp_path / "link.mp4"
        os.link(video, out)
    elif case == "symlink":
        out = tmp_path / "alias.mp4"
        out.symlink_to(video)
    else:
        folder = inputs / "masks"
        folder.mkdir()
        for i in range(9):
            cv2.imwrite(str(folder / f"{i:03d}.png"), np.full((H, W), 255, np.uint8))
        mask, out = folder, tmp_path / "o.mp4"
        video = write_video(inputs / "v17.mp4", read_video(clip17)[0][:9], 12, lossless=True)
        extra = ["--work-dir", str(folder / "work"), "--keyframe-frame", "2"]  # the long path, with a work folder
    before = {p: p.read_bytes() for p in inputs.rglob("*") if p.is_file()}
    assert main(_cli(tiny_model_dir, video, mask, out, *extra)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and ("vivid never overwrites an input" in err[0] or "inside the input folder" in err[0]), err
    assert {p: p.read_bytes() for p in inputs.rglob("*") if p.is_file()} == before
    assert not (inputs / "masks" / "work").exists()


def test_chain_edit_refuses_an_output_that_is_an_input(clip17, tmp_path):
    video = write_video(tmp_path / "v.mp4", read_video(clip17)[0], 12, lossless=True)
    data = video.read_bytes()
    with pytest.raises(ValueError, match="vivid never overwrites an input"):
        edit_request(video, np.ones((17, H, W), bool), "x", "add", video)  # before the model is touched
    assert video.read_bytes() == data


# ------------------------------------------------------------- #12 names and options checked before model work
@pytest.mark.parametrize(
    "argv,message,argparse_error",
    [
        (["--out", "{tmp}/o.avi"], r"--out .*o.avi: a video is written as MP4; give a .mp4, .mov, .m4v file name", False),
        (["--out", "{tmp}/o"], r"a video is written as MP4", False),
        (["--out", "{tmp}/o.png"], r"--out .*o.png: a video is written as MP4", False),
        (["--video", "{image}", "--out", "{tmp}/o.mp4"], r"--out .*o.mp4: an image is written; give an image file", False),
        (["--height", "20", "--width", "32"], r"argument --height: must be a multiple of 16 and at least 16, got '20'", True),
        (["--height", "0", "--width", "32"], r"argument --height: must be a multiple of 16 and at least 16, got '0'", True),
        (["--height", "32", "--width", "8"], r"argument --width: must be a multiple of 16 and at least 16, got '8'", True),
        (["--height", "32"], r"give both height and width, or neither \(got height 32, width None\)", False),
        (["--paste-back-dilation", "-3"], r"argument --paste-back-dilation: must be >= 0 pixels, got -3", True),
    ],
)
def test_bad_output_names_and_options_stop_before_model_work(clip17, tmp_path, capsys, argv, message, argparse_error):
    image = tmp_path / "frame.png"
    cv2.imwrite(str(image), _frames(1)[0])
    mask = tmp_path / "mask.png"
    cv2.imwrite(str(mask), np.full((H, W), 255, np.uint8))
    argv = [a.format(tmp=tmp_path, image=image) for a in argv]
    base = {"--video": str(clip17), "--out": str(tmp_path / "o.mp4")}
    for flag in ("--video", "--out"):
        if flag not in argv:
            argv += [flag, base[flag]]
    # a model folder that does not exist: an error about it would mean the checks came too late
    cmd = ["edit", "--model", str(tmp_path / "no-model"), "--mask", str(mask), "--task", "add", "--prompt", "x", *argv]
    if argparse_error:
        with pytest.raises(SystemExit) as err:
            main(cmd)
        assert err.value.code == 2
    else:
        assert main(cmd) == 2
    err_text = capsys.readouterr().err
    import re

    assert re.search(message, err_text), err_text
    assert "no-model" not in err_text and "Traceback" not in err_text
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(("o.", ".o."))]


@pytest.mark.parametrize("command", ["keyframe", "app"])
def test_keyframe_and_app_share_the_size_checks(command, tmp_path, capsys):
    cmd = [command, "--model", str(tmp_path / "no-model"), "--height", "40", "--width", "64"]
    if command == "keyframe":
        cmd += ["--video", "v.mp4", "--mask", "m.png", "--task", "add", "--out-dir", str(tmp_path / "c")]
    with pytest.raises(SystemExit) as err:
        main(cmd)
    assert err.value.code == 2
    assert "argument --height: must be a multiple of 16 and at least 16, got '40'" in capsys.readouterr().err


def test_library_calls_check_sizes_dilation_and_video_names():
    from vivid.io.edit_inputs import EditInputError, check_edit_options
    from vivid.io.video import VideoWriter
    from vivid.conditioning.preprocess import paste_back, paste_weights

    for bad in ({"height": 24, "width": 32}, {"height": 32, "width": None}, {"paste_back_dilation": -1}):
        with pytest.raises(EditInputError):
            check_edit_options(**bad)
    check_edit_options(32, 48, 0)
    with pytest.raises(EditInputError, match="height must be a multiple of 16"):
        edit_request(np.zeros((17, H, W, 3), np.uint8), np.ones((17, H, W), bool), "x", "add", "o.mp4",
                     height=20, width=32)
    mask = np.ones((1, 8, 8), bool)
    with pytest.raises(ValueError, match="dilation must be >= 0"):
        paste_weights(mask, -2)
    with pytest.raises(ValueError, match="dilation must be >= 0"):
        paste_back(np.zeros((1, 8, 8, 3), np.uint8), np.zeros((1, 8, 8, 3), np.uint8), mask, -2)
    with pytest.raises(MediaError, match="a video is written as MP4"):
        VideoWriter("clip.avi", 8.0)
