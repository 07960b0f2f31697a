"""The source's audio in an edited video: the edit writes frames only, so the audio stream of the source is copied
into the output afterwards (cut to the edited frames' time span) with the ffmpeg that imageio-ffmpeg ships. The
output is replaced only when ffmpeg exited 0 and the new file probes with every frame (`atomic_path`)."""

from __future__ import annotations

import logging
import os
import re
import subprocess
from pathlib import Path

from vivid.io.atomic import atomic_path
from vivid.io.files import MediaError, error_line
from vivid.io.video import check_written_video

logger = logging.getLogger(__name__)


def _ffmpeg() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def has_audio(path: str | os.PathLike) -> bool:
    """Whether the file holds an audio stream (ffmpeg's description of its streams; nothing is decoded)."""
    try:
        probe = subprocess.run([_ffmpeg(), "-hide_banner", "-nostdin", "-i", str(path)], capture_output=True,
                               text=True, errors="replace", timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return re.search(r"^\s*Stream #\d+:\d+.*: Audio: ", probe.stderr, re.MULTILINE) is not None


def _video_start(path: Path) -> float:
    """When the first video frame starts on the container's clock (seconds): where the audio to keep begins."""
    import decord

    reader = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1)
    return float(reader.get_frame_timestamp(0)[0])


def _mux(video: Path, source: Path, start: float, duration: float, out: Path, audio_codec: list[str]) -> str | None:
    """ffmpeg's last message if muxing the frames of `video` with `source`'s audio into `out` failed, else None."""
    cmd = [_ffmpeg(), "-y", "-nostdin", "-v", "error", "-i", str(video), "-ss", f"{start:.6f}", "-t", f"{duration:.6f}",
           "-i", str(source), "-map", "0:v:0", "-map", "1:a:0", "-c:v", "copy", *audio_codec, "-f", "mp4", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, errors="replace")
    if done.returncode == 0:
        return None
    lines = [line.strip() for line in done.stderr.splitlines() if line.strip()]
    return re.sub(r"^\[[^]]* @ 0x[0-9a-f]+\] *", "", lines[-1]) if lines else f"exit status {done.returncode}"


def copy_audio(source: str | os.PathLike, out: str | os.PathLike, frames: int, fps: float) -> bool:
    """Add `source`'s (first) audio stream to the video `out`, cut to its `frames` frames at `fps` from the source's
    first video frame: copied as it is, or encoded as AAC where MP4 cannot hold its codec. Returns False when the
    source has no audio. MediaError (one line) when ffmpeg fails; `out` is then left as it was."""
    source, out = Path(source), Path(out)
    if not has_audio(source):
        return False
    start, duration = _video_start(source), frames / fps
    with atomic_path(out) as tmp:
        problem = _mux(out, source, start, duration, tmp, ["-c:a", "copy"])
        if problem is not None:  # e.g. PCM or Vorbis audio, which MP4 does not hold as such
            logger.info("the audio of %s cannot be copied into MP4 (%s): encoding it as AAC", source, problem)
            problem = _mux(out, source, start, duration, tmp, ["-c:a", "aac", "-b:a", "192k"])
        if problem is not None:
            raise MediaError(f"could not copy the audio of {source} into {out}: ffmpeg failed ({problem})", path=out)
        try:
            check_written_video(tmp, frames, name=out)
        except MediaError as err:
            raise MediaError(f"could not copy the audio of {source} into {out}: {error_line(err)}", path=out) from None
    return True
