"""A failed video write never replaces a good output: the writer renames its file into place only after ffmpeg
exited 0 and the written file probes with every frame (issue 31, item 1; docs/reliability.md)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO_ROOT, fill_disk
from vivid.io.atomic import stale_temporaries
from vivid.io.files import MediaError
from vivid.io.video import VideoWriter, video_info, write_video


def _noise(frames: int, side: int = 128) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (frames, side, side, 3), dtype=np.uint8)


@pytest.fixture
def good_video(tmp_path) -> Path:
    return write_video(tmp_path / "good.mp4", _noise(3, 32), 8.0, lossless=True)


def test_a_full_disk_fails_the_write_and_keeps_the_old_video(small_disk, good_video):
    old = small_disk / "old.mp4"
    old.write_bytes(good_video.read_bytes())
    fill_disk(small_disk, leave=16_000)
    with pytest.raises(MediaError, match=r"could not write .*old\.mp4: ffmpeg failed \(.*No space left on device"):
        write_video(old, _noise(20), 8.0, lossless=True)
    assert old.read_bytes() == good_video.read_bytes()
    assert stale_temporaries(old) == []


def test_a_file_size_limit_kills_ffmpeg_and_keeps_the_old_video(tmp_path, good_video):
    """`ulimit -f`: ffmpeg is killed mid-file (SIGXFSZ); before the fix its partial file replaced the old one."""
    old = tmp_path / "old.mp4"
    old.write_bytes(good_video.read_bytes())
    script = textwrap.dedent(f"""
        import resource, sys
        import numpy as np
        resource.setrlimit(resource.RLIMIT_FSIZE, (60_000, 60_000))
        from vivid.io.files import MediaError
        from vivid.io.video import write_video
        try:
            write_video({str(old)!r}, np.random.default_rng(0).integers(0, 256, (20, 128, 128, 3), np.uint8), 8.0,
                        lossless=True)
        except MediaError as err:
            print(err)
            sys.exit(3)
    """)
    run = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 3, run.stdout + run.stderr
    assert "could not write" in run.stdout and "SIGXFSZ" in run.stdout
    assert old.read_bytes() == good_video.read_bytes()
    assert stale_temporaries(old) == []


def test_a_written_file_short_of_frames_is_not_renamed_into_place(tmp_path, good_video, monkeypatch):
    """ffmpeg exits 0 but the file lacks frames (cut short after it closed): the probe refuses it."""
    from vivid.io.video import FfmpegEncoder

    finish = FfmpegEncoder.finish

    def finish_then_cut(self):
        finish(self)
        data = self.path.read_bytes()
        self.path.write_bytes(data[: len(data) // 3])

    monkeypatch.setattr(FfmpegEncoder, "finish", finish_then_cut)
    old = tmp_path / "old.mp4"
    old.write_bytes(good_video.read_bytes())
    with pytest.raises(MediaError, match=r"could not write .*old\.mp4: the written file"):
        write_video(old, _noise(12, 64), 8.0, lossless=True)
    assert old.read_bytes() == good_video.read_bytes()
    assert stale_temporaries(old) == []


def test_an_aborted_writer_stops_ffmpeg_and_leaves_nothing(tmp_path):
    out = tmp_path / "out.mp4"
    with pytest.raises(RuntimeError, match="stop"):
        with VideoWriter(out, 8.0) as writer:
            writer.write(_noise(2, 32))
            raise RuntimeError("stop")
    assert not out.exists() and stale_temporaries(out) == []


def test_a_video_written_through_the_writer_probes_with_every_frame(tmp_path):
    out = write_video(tmp_path / "ok.mp4", _noise(7, 48), 12.5)
    assert video_info(out)[:2] == (7, 12.5)
