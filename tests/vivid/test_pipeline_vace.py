"""VIVIDPipeline on the tiny Wan2.1-VACE (issue 36): add, modify and delete (the delete caption), a keyframe edit
(the keyframe a kept frame: its pixels in frame 0, mask 0 there), with the source's size and frame count and the
source kept outside the mask (paste-back)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vivid.constants import DELETE_CAPTION
from vivid.conditioning.preprocess import paste_weights

N, H, W = 7, 40, 60  # neither 4k+1 frames nor multiples of 16: padded and resized, then given back as the source


def _source() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 256, (N, H, W, 3), dtype=np.uint8)
    mask = np.zeros((N, H, W), np.uint8)
    mask[:, 12:28, 20:44] = 1
    return frames, mask


def _edit(pipe, **kwargs) -> np.ndarray:
    frames, mask = _source()
    args = dict(video=frames, mask=mask, paste_back_dilation=8, num_inference_steps=1, guidance_scale=1.0, output_type="uint8",
                generator=torch.Generator().manual_seed(0))
    return pipe(**{**args, **kwargs}).frames[0]


@pytest.mark.parametrize("task, prompt", [("add", "a red ball"), ("modify", "a blue box"), ("delete", None)])
def test_each_task_keeps_size_frames_and_the_source_outside_the_mask(tiny_vace_pipe, task, prompt):
    frames, mask = _source()
    out = _edit(tiny_vace_pipe, prompt=prompt, task=task)
    assert out.shape == (N, H, W, 3) and out.dtype == np.uint8
    outside = paste_weights(mask.astype(bool), 8) == 0
    assert np.array_equal(out[outside], frames[outside])  # paste-back: bit for bit outside the dilated mask
    assert (np.abs(out[:, 14:26, 22:42].astype(int) - frames[:, 14:26, 22:42]) > 8).any()  # generated inside


def test_delete_uses_the_delete_caption(tiny_vace_pipe):
    assert np.array_equal(_edit(tiny_vace_pipe, task="delete"),
                          _edit(tiny_vace_pipe, task="delete", prompt=DELETE_CAPTION))
    assert not np.array_equal(_edit(tiny_vace_pipe, task="delete"),
                              _edit(tiny_vace_pipe, task="delete", prompt="a red ball"))


def test_a_keyframe_edit_gives_the_keyframe_as_a_kept_frame(tiny_vace_pipe, monkeypatch):
    frames, _ = _source()
    key = frames[0].copy()
    key[12:28, 20:44] = (250, 30, 30)
    seen = {}
    encode = tiny_vace_pipe.spec.encode_conditions

    def spy(vae, masked, mask, *references):
        seen.update(masked=masked.clone(), mask=mask.clone())
        return encode(vae, masked, mask, *references)

    monkeypatch.setattr(tiny_vace_pipe.spec, "encode_conditions", spy)
    out = _edit(tiny_vace_pipe, prompt="a red box", task="modify", keyframe=key, height=48, width=64)
    assert seen["mask"][:, 0].max() == 0 and seen["mask"][:, 1:].max() == 1  # frame 0 kept, the rest generated
    from vivid.io.resize import resize_frames

    key_model = torch.from_numpy(resize_frames(key[None], (48, 64))[0]).permute(2, 0, 1).float() / 127.5 - 1
    assert torch.allclose(seen["masked"][0, 0], key_model)  # the keyframe's pixels in frame 0 of the video
    assert out.shape == (N, H, W, 3) and np.array_equal(out[0], key)


def test_reference_images_keep_size_frames_and_the_source_outside_the_mask(tiny_vace_pipe, tmp_path):
    """A VACE edit with reference images (a path and an array, of other sizes than the video) gives the video's
    frames only: its size and frame count, the source outside the mask; the references change what is generated."""
    import cv2

    frames, mask = _source()
    rng = np.random.default_rng(3)
    cv2.imwrite(str(tmp_path / "ref.png"), rng.integers(0, 256, (24, 50, 3), dtype=np.uint8))
    references = [tmp_path / "ref.png", rng.integers(0, 256, (64, 32, 3), dtype=np.uint8)]
    out = _edit(tiny_vace_pipe, prompt="a red ball", reference_images=references)
    assert out.shape == (N, H, W, 3) and out.dtype == np.uint8
    outside = paste_weights(mask.astype(bool), 8) == 0
    assert np.array_equal(out[outside], frames[outside])
    assert not np.array_equal(out, _edit(tiny_vace_pipe, prompt="a red ball"))


def test_reference_images_are_refused_by_other_bases_and_bad_files_named(tiny_pipe, tiny_vace_pipe, tmp_path):
    """Before any input is read (the video here is not even given): a base without reference images refuses them
    in one line naming the argument and the base; a missing or undecodable file is named."""
    with pytest.raises(ValueError, match=r"^reference_images: CogVideoX takes no reference images") as err:
        tiny_pipe(video=None, mask=None, prompt="x", reference_images=[tmp_path / "ref.png"])
    assert "\n" not in str(err.value)
    (tmp_path / "not-an-image.png").write_text("hello")
    for bad, message in ((tmp_path / "missing.png", "missing.png does not exist"),
                         (tmp_path / "not-an-image.png", "not-an-image.png could not be decoded as an image")):
        with pytest.raises(ValueError, match=f"reference image .*{message}") as err:
            _edit(tiny_vace_pipe, prompt="a red ball", reference_images=bad)
        assert "\n" not in str(err.value)
