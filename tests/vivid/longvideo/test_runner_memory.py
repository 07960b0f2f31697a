"""A 1,000-frame edit on the tiny model on CPU: peak memory within 20% of a 250-frame edit's.

Each edit runs `vivid edit` in its own process (one per length, so the peaks are independent) and reports that
process's peak RSS (VmHWM: its own, not the pytest process's that started it, which `ru_maxrss` would
inherit across exec). The source frames are 288x512: the decoded 1,000-frame source is 442 MB (422 MiB), nearly
three times the 20% allowance over a 250-frame edit's peak (~155 MiB of ~775 MiB), so an edit that held the
video, its masks or its output in memory fails (at 144x288 the whole source, 119 MiB, fitted inside the
allowance). The model works at 16x32 with one step and 17-frame clips, so that the test takes minutes.

Measured (2 shared cores, this configuration, ~2.5 minutes): peak RSS 684 MiB at 250 frames (16 clips) and
698 MiB at 1,000 frames (64 clips), +2%. Before clips were decoded forward (`vivid.io.video.ForwardReader`)
it was 774 and 1,100 MiB (+42%): decord's random-access `get_batch` (and its sequential `next()`) keeps memory
that grows with the length of the file, ~100 MiB more when the first 250 frames are read from the 1,000-frame
file than from the 250-frame file.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.conftest import REPO_ROOT as REPO
H, W = 288, 512  # 1,000 decoded frames: 442 MB (422 MiB), well beyond 20% of a 250-frame edit's peak


def write_moving_pattern(path: Path, frames: int, fps: float = 25.0) -> Path:
    """A long synthetic video (a drifting colour pattern and a bright square crossing it), written in chunks."""
    from vivid.io.video import VideoWriter

    y, x = np.mgrid[0:H, 0:W]
    with VideoWriter(path, fps) as writer:
        for start in range(0, frames, 50):
            chunk = []
            for t in range(start, min(frames, start + 50)):
                f = np.stack([(x * 2 + t * 3) % 256, (y * 2 + t) % 256, (x + y + 2 * t) % 256], -1).astype(np.uint8)
                left = (t * 2) % (W - 40)
                f[50:90, left : left + 40] = 250
                chunk.append(f)
            writer.write(np.stack(chunk))
    return path


def peak_rss_of_edit(model: Path, video: Path, mask: Path, out: Path) -> tuple[int, str]:
    code = (
        "import sys\n"
        "from vivid.cli import main\n"
        "from benchmarks.process_memory import peak_rss_bytes\n"
        "rc = main(sys.argv[1:])\n"
        "print('PEAK_RSS_KB', peak_rss_bytes() // 1024)\n"
        "sys.exit(rc)\n"
    )
    args = ["edit", "--model", str(model), "--video", str(video), "--mask", str(mask), "--out", str(out),
            "--task", "add", "--prompt", "a red ball", "--steps", "1", "--guidance", "1",
            "--height", "16", "--width", "32", "--paste-back-dilation", "4", "--clip-frames", "17"]
    proc = subprocess.run([sys.executable, "-c", code, *args], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(l for l in proc.stdout.splitlines() if l.startswith("PEAK_RSS_KB"))
    return int(line.split()[1]), proc.stdout


@pytest.mark.slow
def test_memory_is_flat_in_length(tiny_model_dir, tmp_path):
    from vivid.io.video import video_info

    mask = np.zeros((H, W), np.uint8)
    mask[40:100, 100:200] = 255
    mask_path = tmp_path / "mask.png"
    cv2.imwrite(str(mask_path), mask)
    peaks = {}
    for n in (250, 1000):
        video = write_moving_pattern(tmp_path / f"in{n}.mp4", n)
        out = tmp_path / f"out{n}.mp4"
        peaks[n], stdout = peak_rss_of_edit(tiny_model_dir, video, mask_path, out)
        assert video_info(out)[0] == n
        print(f"{n} frames: peak RSS {peaks[n] / 1024:.0f} MiB; {stdout.strip().splitlines()[-2]}")
    source_kb = 1000 * H * W * 3 / 1024
    assert source_kb > 2 * 0.2 * peaks[250], "the decoded source must not fit in the 20% allowance"
    assert peaks[1000] <= 1.2 * peaks[250], (
        f"peak RSS grew from {peaks[250] / 1024:.0f} MiB (250 frames) to {peaks[1000] / 1024:.0f} MiB (1,000 frames); "
        f"the decoded 1,000-frame source is {source_kb / 1024:.0f} MiB")
