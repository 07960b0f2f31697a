"""One mask rule for editing and data loading (`vivid.io.masks.binarize_mask`): RGBA masks drawn in alpha, 0/1 label
arrays; and mask videos whose frame rate or count differs from the video's, or a variable-frame-rate source."""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from vivid.io.masks import binarize_mask, read_mask
from vivid.io.video import write_video

H, W = 32, 64
BOX = (slice(8, 24), slice(20, 44))


def _box() -> np.ndarray:
    m = np.zeros((H, W), bool)
    m[BOX] = True
    return m


def _readers(path: Path, frames: int) -> dict[str, np.ndarray]:
    """The mask as every reader sees it: `vivid edit` (short and long path), the library and `vivid data check`."""
    from vivid.io.masks import MaskSource as DataMask
    from vivid.io.edit_inputs import as_mask
    from vivid.io.masks import MaskSource as EditMask

    data = DataMask(str(path))
    return {
        "edit (read_mask)": read_mask(path),
        "edit (as_mask)": as_mask(path),
        "long edit (MaskSource)": EditMask(path, frames, H, W).frames(range(frames)),
        "data (MaskSource.read)": data.read(range(data.count)),
        "data, one frame at a time": np.concatenate([data.read([i]) for i in range(data.count)]),
    }


def _assert_all(readers: dict[str, np.ndarray], expected: np.ndarray) -> None:
    for name, got in readers.items():
        np.testing.assert_array_equal(got, expected, err_msg=name)


# --------------------------------------------------------------------------------------------- alpha
@pytest.mark.parametrize("colour", [0, 255])  # black or white paint: alpha alone says where the mask is
def test_a_mask_drawn_in_alpha_is_read_from_alpha_everywhere(colour, tmp_path):
    rgba = np.zeros((H, W, 4), np.uint8)
    rgba[..., :3] = colour
    rgba[BOX + (3,)] = 255
    path = tmp_path / "alpha.png"
    cv2.imwrite(str(path), rgba)
    _assert_all(_readers(path, 1), _box()[None])
    folder = tmp_path / "frames"
    folder.mkdir()
    cv2.imwrite(str(folder / "000.png"), rgba)
    cv2.imwrite(str(folder / "001.png"), np.where(_box(), 255, 0).astype(np.uint8))  # a grey frame beside it
    _assert_all(_readers(folder, 2), np.stack([_box(), _box()]))


def test_an_opaque_rgba_mask_is_read_from_its_colour_and_pil_keeps_alpha(tmp_path):
    from PIL import Image

    from vivid.io.edit_inputs import as_mask

    rgba = np.zeros((H, W, 4), np.uint8)
    rgba[..., 3] = 255  # fully opaque: the colour carries the mask
    rgba[BOX + (0,)] = 200  # red on black
    path = tmp_path / "opaque.png"
    cv2.imwrite(str(path), cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))
    _assert_all(_readers(path, 1), _box()[None])
    drawn = np.zeros((H, W, 4), np.uint8)
    drawn[BOX + (3,)] = 255  # transparent except where painted, as an image editor's layer
    np.testing.assert_array_equal(as_mask(Image.fromarray(drawn, "RGBA")), _box()[None])
    np.testing.assert_array_equal(as_mask(drawn), _box()[None])  # an (H, W, 4) array: one frame
    transparent = np.zeros((H, W, 4), np.uint8)
    transparent[..., :3] = 255
    assert not binarize_mask(transparent[None]).any()  # fully transparent: nothing drawn, not the whole frame


# ------------------------------------------------------------------------------------------ 0/1 labels
@pytest.mark.parametrize("kind", ["uint8 labels", "uint8 0/255", "bool", "float", "int64 labels"])
def test_the_same_array_is_judged_alike_by_edit_and_data_check(kind, tmp_path):
    mask = np.stack([_box(), np.zeros((H, W), bool), _box()])
    arr = {"uint8 labels": mask.astype(np.uint8), "uint8 0/255": mask.astype(np.uint8) * 255, "bool": mask,
           "float": mask * 0.9, "int64 labels": mask.astype(np.int64)}[kind]
    for suffix in (".npy", ".npz"):
        path = tmp_path / f"mask{suffix}"
        np.save(path, arr) if suffix == ".npy" else np.savez(path, mask=arr)
        _assert_all(_readers(path, 3), mask)


def test_a_label_png_is_a_mask_and_each_frame_is_judged_alone(tmp_path):
    path = tmp_path / "labels.png"
    cv2.imwrite(str(path), _box().astype(np.uint8))  # 0/1 values, as mask.astype(np.uint8) saved with OpenCV
    _assert_all(_readers(path, 1), _box()[None])
    grey = np.where(_box(), 255, 0).astype(np.uint8)
    grey[0, 0] = 1  # a grey mask with a stray 1: still >= 128
    mixed = np.stack([_box().astype(np.uint8), grey, np.full((H, W), 127, np.uint8)])
    expected = np.stack([_box(), _box(), np.zeros((H, W), bool)])
    np.testing.assert_array_equal(binarize_mask(mixed), expected)
    for i in range(3):  # the same answer whichever frames are read together
        np.testing.assert_array_equal(binarize_mask(mixed[i]), expected[i][None])


# ------------------------------------------------------------------ #13 frame rates and counts of mask videos
def _moving_masks(n: int) -> np.ndarray:
    """uint8 RGB mask frames whose box moves one column per frame, so the frame used can be told apart."""
    frames = np.zeros((n, H, W, 3), np.uint8)
    for t in range(n):
        frames[t, 8:24, 2 * t : 2 * t + 12] = 255
    return frames


def _video(path: Path, n: int, fps: float) -> Path:
    rng = np.random.default_rng(0)
    return write_video(path, rng.integers(0, 255, (n, H, W, 3), dtype=np.uint8), fps, lossless=True)


def test_a_mask_video_at_another_frame_rate_is_matched_by_timestamp(tmp_path, caplog):
    from vivid.io.edit_inputs import load_edit_inputs
    from vivid.io.masks import MaskSource
    from vivid.io.video import VideoSource

    video = _video(tmp_path / "v.mp4", 20, 12.0)
    masks = _moving_masks(10)
    mask = write_video(tmp_path / "m6.mp4", masks, 6.0, lossless=True)  # same 1.67 s, half the frames
    expected = binarize_mask(masks)[np.arange(20) // 2]
    with caplog.at_level(logging.WARNING):
        source = VideoSource(video)
        long_masks = MaskSource(mask, 20, H, W, timing=source.timing())
        np.testing.assert_array_equal(long_masks.frames(range(20)), expected)
        np.testing.assert_array_equal(long_masks.any_per_frame(20), expected.any(axis=(1, 2)))
        inputs = load_edit_inputs(video, mask, "x", "add")
    np.testing.assert_array_equal(inputs.mask, expected)
    notes = [r.getMessage() for r in caplog.records if "matched by timestamp" in r.getMessage()]
    assert len(notes) == 2 and "10 frames at 6 fps" in notes[0] and "20 frames at 12 fps" in notes[0]


def test_a_mask_video_with_the_frame_count_but_another_fps_is_matched_by_index(tmp_path, caplog):
    from vivid.io.edit_inputs import load_edit_inputs

    video = _video(tmp_path / "v.mp4", 9, 12.0)
    masks = _moving_masks(9)
    mask = write_video(tmp_path / "m.mp4", masks, 25.0, lossless=True)
    with caplog.at_level(logging.WARNING):
        inputs = load_edit_inputs(video, mask, "x", "add")
    np.testing.assert_array_equal(inputs.mask, binarize_mask(masks))
    assert any("frames matched by index" in r.getMessage() for r in caplog.records)


def test_a_mask_video_of_another_length_is_still_refused(tmp_path):
    from vivid.io.masks import MaskSource
    from vivid.io.video import VideoSource
    from vivid.io.files import MediaError

    video = _video(tmp_path / "v.mp4", 20, 12.0)
    mask = write_video(tmp_path / "m.mp4", _moving_masks(7), 12.0, lossless=True)
    source = VideoSource(video)
    with pytest.raises(MediaError, match=r"mask has 7 frames but the video has 20 \(0.58 s against 1.67 s\)"):
        MaskSource(mask, 20, H, W, timing=source.timing())


def test_a_variable_frame_rate_source_is_edited_frame_by_frame_with_a_warning(tmp_path, caplog):
    import imageio_ffmpeg

    from vivid.io.edit_inputs import load_edit_inputs
    from vivid.io.video import frame_timing

    cfr = _video(tmp_path / "cfr.mp4", 12, 12.0)
    vfr = tmp_path / "vfr.mp4"  # frames 6.. last twice as long
    proc = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-i", str(cfr), "-vf",
                           "setpts='if(lt(N,6),N,2*N-6)/(12*TB)'", "-fps_mode", "passthrough", "-c:v", "libx264rgb",
                           "-qp", "0", str(vfr)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"this ffmpeg cannot write the variable-frame-rate clip: {proc.stderr[-200:]}")
    assert frame_timing(vfr).variable and not frame_timing(cfr).variable
    masks = _moving_masks(12)
    mask = write_video(tmp_path / "m.mp4", masks, 12.0, lossless=True)
    with caplog.at_level(logging.WARNING):
        inputs = load_edit_inputs(vfr, mask, "x", "add")
    np.testing.assert_array_equal(inputs.mask, binarize_mask(masks))  # one mask per frame: by index
    messages = " | ".join(r.getMessage() for r in caplog.records)
    assert "variable frame rate" in messages and "written at a constant" in messages
    assert "frames matched by index" in messages


class _Planted:
    """Unpickling this creates a file: proof that a mask array was unpickled."""

    marker: Path

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("suffix", [".npy", ".npz"])
def test_a_pickled_mask_array_is_refused_never_unpickled(suffix, tmp_path):
    from vivid.io.masks import MaskSource as DataMask
    from data_loaders.errors import BadSample
    from vivid.io.masks import MaskSource as EditMask
    from vivid.io.files import MediaError

    planted = _Planted()
    planted.marker = tmp_path / "code-ran"
    arr = np.empty((1, H, W), object)
    arr[0, 0, 0] = planted
    path = tmp_path / f"evil{suffix}"
    np.save(path, arr, allow_pickle=True) if suffix == ".npy" else np.savez(path, mask=arr)
    for read in (lambda: read_mask(path), lambda: EditMask(path, 1, H, W), lambda: DataMask(str(path)).read([0])):
        with pytest.raises((MediaError, BadSample, ValueError)):
            read()
    assert not planted.marker.exists()


def test_a_packed_mask_archive_reads_the_same_everywhere(tmp_path):
    """The compact .npz of `write_mask_npz` (packed bits + shape) is read by editing as by data loading: before
    one mask reader served both, `vivid edit` took its `packed` bytes for mask values."""
    from vivid.io.masks import write_mask_npz

    mask = np.zeros((3, H, W), bool)
    mask[:, BOX[0], BOX[1]] = True
    mask[1, 0, :5] = True  # a frame unlike the others
    path = write_mask_npz(tmp_path / "packed.npz", mask)
    _assert_all(_readers(path, 3), mask)
