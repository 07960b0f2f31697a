"""`vivid edit --out old.mp4` on a full disk fails in one line, exits non-zero and leaves old.mp4 as it was
(issue 31, item 1; docs/reliability.md)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from tests.conftest import fill_disk
from vivid.cli import main
from vivid.io.atomic import stale_temporaries
from vivid.io.video import write_video


def test_an_edit_onto_a_full_disk_fails_and_keeps_the_old_output(tiny_model_dir, small_disk, tmp_path, capsys):
    rng = np.random.default_rng(0)
    video = write_video(tmp_path / "noise.mp4", rng.integers(0, 256, (9, 64, 96, 3), np.uint8), 8.0, lossless=True)
    mask = np.zeros((64, 96), np.uint8)
    mask[16:48, 24:72] = 255
    cv2.imwrite(str(tmp_path / "mask.png"), mask)
    old = small_disk / "old.mp4"
    good = write_video(tmp_path / "good.mp4", rng.integers(0, 256, (2, 32, 32, 3), np.uint8), 8.0).read_bytes()
    old.write_bytes(good)
    fill_disk(small_disk, leave=8_000)  # the lossless 9-frame output of noise is far larger
    code = main(["edit", "--model", str(tiny_model_dir), "--video", str(video), "--mask", str(tmp_path / "mask.png"),
                 "--out", str(old), "--prompt", "a red ball", "--task", "add", "--steps", "1", "--lossless",
                 "--work-dir", str(tmp_path / "work")])
    err = capsys.readouterr().err
    assert code != 0
    last = err.strip().splitlines()[-1]
    assert last.startswith("vivid edit: error: could not write") and "No space left on device" in last, err
    assert "Traceback" not in err
    assert old.read_bytes() == good
    assert stale_temporaries(old) == []
