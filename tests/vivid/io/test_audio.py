"""The source's audio is kept in an edited video, cut to the edited frames; `--no-audio` drops it (issue 30)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import cv2
import imageio_ffmpeg
import numpy as np
import pytest

from vivid.cli import main
from vivid.io.audio import copy_audio, has_audio
from vivid.io.video import video_info, write_video

FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()


def _clip_with_audio(path: Path, seconds: float, audio: str = "aac") -> Path:
    """ffmpeg's test pattern (64x32, 8 fps) with a 440 Hz tone, both `seconds` long."""
    subprocess.run([FFMPEG, "-y", "-v", "error", "-f", "lavfi", "-i", f"testsrc=size=64x32:rate=8:duration={seconds}",
                    "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=16000:duration={seconds}",
                    "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", audio, str(path)], check=True)
    return path


def _audio_seconds(path: Path) -> float:
    """The audio of `path` decoded (mono, 16 kHz): its length in seconds."""
    raw = subprocess.run([FFMPEG, "-v", "error", "-i", str(path), "-map", "0:a:0", "-f", "s16le", "-ac", "1",
                          "-ar", "16000", "-"], capture_output=True, check=True).stdout
    return len(raw) / 2 / 16000


@pytest.fixture(scope="module")
def talking(tmp_path_factory) -> Path:
    return _clip_with_audio(tmp_path_factory.mktemp("a") / "talking.mp4", 2.0)


def test_copy_audio_cuts_the_audio_to_the_frames(talking, tmp_path):
    frames = np.zeros((8, 32, 64, 3), np.uint8)  # the first second of the clip, edited
    out = write_video(tmp_path / "out.mp4", frames, 8.0)
    assert not has_audio(out) and has_audio(talking)
    assert copy_audio(talking, out, 8, 8.0)
    assert has_audio(out) and video_info(out)[0] == 8
    assert abs(_audio_seconds(out) - 1.0) < 0.1


def test_audio_mp4_cannot_hold_as_is_is_encoded(tmp_path):
    source = _clip_with_audio(tmp_path / "pcm.mov", 1.0, audio="pcm_s16le")
    out = write_video(tmp_path / "out.mp4", np.zeros((8, 32, 64, 3), np.uint8), 8.0)
    assert copy_audio(source, out, 8, 8.0) and has_audio(out)


def test_a_source_without_audio_leaves_the_output_as_it_is(tmp_path):
    source = write_video(tmp_path / "silent.mp4", np.zeros((8, 32, 64, 3), np.uint8), 8.0)
    out = write_video(tmp_path / "out.mp4", np.ones((8, 32, 64, 3), np.uint8), 8.0)
    before = out.read_bytes()
    assert not copy_audio(source, out, 8, 8.0)
    assert out.read_bytes() == before


@pytest.mark.parametrize("no_audio", [False, True])
def test_vivid_edit_keeps_the_sources_audio_unless_told(tiny_model_dir, talking, tmp_path, capsys, no_audio):
    mask = np.zeros((32, 64), np.uint8)
    mask[8:24, 16:48] = 255
    cv2.imwrite(str(tmp_path / "mask.png"), mask)
    out = tmp_path / "edited.mp4"
    argv = ["edit", "--model", str(tiny_model_dir), "--video", str(talking), "--mask", str(tmp_path / "mask.png"),
            "--out", str(out), "--prompt", "a red ball", "--task", "add", "--steps", "1"]
    assert main(argv + (["--no-audio"] if no_audio else [])) == 0
    assert video_info(out)[0] == 16
    if no_audio:
        assert not has_audio(out)
    else:
        assert has_audio(out) and abs(_audio_seconds(out) - 2.0) < 0.1
        assert "with the source's audio" in capsys.readouterr().out
