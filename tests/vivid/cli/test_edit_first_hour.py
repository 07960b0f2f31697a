"""What an editor sees in a first edit: the untrained model said in one line, the mask's coverage per clip and
warnings for masks that are not masks, nothing beside the output, and how to resume a stopped edit."""

from __future__ import annotations

import logging

import cv2
import numpy as np
import pytest

from vivid.cli import main
from vivid.io.video import write_video

H, W = 64, 96


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    frames = np.random.default_rng(0).integers(0, 255, (17, H, W, 3), dtype=np.uint8)
    return write_video(tmp_path_factory.mktemp("v") / "in.mp4", frames, 12.0, lossless=True)


@pytest.fixture(scope="module")
def mask(tmp_path_factory):
    m = np.zeros((H, W), np.uint8)
    m[16:48, 24:72] = 255  # a quarter of the frame
    path = tmp_path_factory.mktemp("m") / "mask.png"
    cv2.imwrite(str(path), m)
    return path


def _edit(model, video, mask, out, *extra):
    return main(["edit", "--model", str(model), "--video", str(video), "--mask", str(mask), "--out", str(out),
                 "--task", "delete", "--steps", "1", "--clip-frames", "9", "--boundaries", "fixed", *extra])


def test_an_edit_leaves_nothing_beside_its_output_and_says_its_mask_coverage_per_clip(
    tiny_model_dir, video, mask, tmp_path, caplog
):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    with caplog.at_level(logging.INFO):
        assert _edit(tiny_model_dir, video, mask, out_dir / "o.mp4") == 0
    assert sorted(p.name for p in out_dir.iterdir()) == ["o.mp4"]  # no o.clips.json, no work folder
    coverage = [r.getMessage() for r in caplog.records if "mask covers" in r.getMessage()]
    assert coverage == [f"clip {i} of 2 (frames {a}..{b}): the mask covers 25.0% of the pixels"
                        for i, (a, b) in ((1, (0, 8)), (2, (8, 16)))]
    untrained = [r.getMessage() for r in caplog.records if "untrained" in r.getMessage()]
    assert len(untrained) == 1 and "--weights" in untrained[0] and "ignores the source" in untrained[0]
    # kept with the work folder when asked
    assert _edit(tiny_model_dir, video, mask, out_dir / "k.mp4", "--keep-work") == 0
    assert (out_dir / "k.mp4.work" / "clips.json").is_file()


def test_a_stopped_edit_says_how_to_resume(tiny_model_dir, video, mask, tmp_path, monkeypatch, capsys):
    """Ctrl-C during the second clip (here: raised where the clip's video is written, as when ffmpeg got the
    interrupt first) names the way back, not the writer's error."""
    import vivid.longvideo.runner as runner

    real_write = runner.write_video
    calls = []

    def interrupted_write(path, frames, fps, lossless=False):
        calls.append(path)
        if len(calls) == 2:
            import os
            import signal

            os.kill(os.getpid(), signal.SIGINT)  # Python's KeyboardInterrupt ...
            raise BrokenPipeError(32, "Broken pipe")  # ... and ffmpeg's end of the pipe gone
        return real_write(path, frames, fps, lossless)

    monkeypatch.setattr(runner, "write_video", interrupted_write)
    out = tmp_path / "o.mp4"
    assert _edit(tiny_model_dir, video, mask, out) == 130
    err = capsys.readouterr().err
    assert "interrupted: stopped after 1 of 2 clips" in err and "run the same edit again to resume" in err
    assert "--restart" in err and "Broken pipe" not in err and "Traceback" not in err
    monkeypatch.setattr(runner, "write_video", real_write)
    assert _edit(tiny_model_dir, video, mask, out) == 0
    assert "1 resumed" in capsys.readouterr().out


def test_a_full_frame_mask_and_a_photo_given_as_mask_are_warned_about(tiny_model_dir, video, tmp_path, caplog):
    full = tmp_path / "full.png"
    cv2.imwrite(str(full), np.full((H, W), 255, np.uint8))
    photo = tmp_path / "photo.png"
    rng = np.random.default_rng(2)
    cv2.imwrite(str(photo), cv2.GaussianBlur(rng.integers(0, 255, (H, W, 3), dtype=np.uint8), (5, 5), 0))
    with caplog.at_level(logging.INFO):
        assert _edit(tiny_model_dir, video, full, tmp_path / "a.mp4") == 0
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert sum("covers 100.0% of the pixels: the whole frame is regenerated" in m for m in warned) == 2, warned
    caplog.clear()
    with caplog.at_level(logging.INFO):
        _edit(tiny_model_dir, video, photo, tmp_path / "b.mp4")
    assert any(f"--mask {photo} looks like a photo" in r.getMessage() for r in caplog.records)


def test_drawn_and_compressed_masks_do_not_look_like_photos(tmp_path):
    from vivid.io.masks import MaskSource, looks_like_a_photo

    m = np.zeros((3, H, W, 3), np.uint8)
    m[:, 16:48, 24:72] = 255
    lossy = write_video(tmp_path / "m.mp4", m, 12.0)  # yuv420p: soft edges with a few grey levels
    assert not looks_like_a_photo(MaskSource(lossy).given_values(0))
    assert not looks_like_a_photo(MaskSource(m[..., 0] > 0).given_values(0))
    smooth = cv2.resize(np.random.default_rng(0).integers(0, 255, (8, 12), dtype=np.uint8), (W, H))
    assert looks_like_a_photo(smooth)
