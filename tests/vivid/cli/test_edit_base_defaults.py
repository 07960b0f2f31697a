"""Steps and guidance a user leaves open are the base's (`ModelSpecification.default_*`), in `vivid edit`,
`vivid keyframe`, the app and the long-video runner: a Wan edit samples at Wan's 5, not CogVideoX's 6."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from vivid.cli import main
from vivid.model.registry import spec_for


@pytest.fixture
def sampled(monkeypatch) -> list:
    """(guidance, steps) each pipeline call sampled with."""
    from vivid.pipeline import VIVIDPipeline

    calls: list = []
    original = VIVIDPipeline.__call__

    def recorded(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        calls.append((self.guidance_scale, self._num_timesteps))
        return out

    monkeypatch.setattr(VIVIDPipeline, "__call__", recorded)
    return calls


@pytest.fixture(scope="module")
def image_and_mask(tmp_path_factory):
    folder = tmp_path_factory.mktemp("in")
    cv2.imwrite(str(folder / "in.png"), np.random.default_rng(0).integers(0, 255, (64, 96, 3), dtype=np.uint8))
    mask = np.zeros((64, 96), np.uint8)
    mask[16:48, 24:72] = 255
    cv2.imwrite(str(folder / "mask.png"), mask)
    return folder / "in.png", folder / "mask.png"


@pytest.mark.parametrize("family", ["wan", "cogvideox"], indirect=True)
def test_edit_and_keyframe_sample_at_the_bases_guidance(family_model_dir, image_and_mask, sampled, tmp_path):
    image, mask = image_and_mask
    spec = spec_for(family_model_dir)
    common = ["--model", str(family_model_dir), "--video", str(image), "--mask", str(mask), "--task", "delete",
              "--steps", "1"]
    assert main(["edit", *common, "--out", str(tmp_path / "o.png")]) == 0
    assert main(["keyframe", *common, "--out-dir", str(tmp_path / "k"), "--candidates", "1"]) == 0
    assert sampled == [(spec.default_guidance_scale, 1)] * 2
    if family_model_dir.name == "tiny-wan":
        assert spec.default_guidance_scale == 5.0


@pytest.mark.parametrize("family", ["wan"], indirect=True)
def test_the_runner_and_the_app_take_the_bases_steps_and_guidance(family_pipe, image_and_mask, sampled, tmp_path):
    from vivid.longvideo.request import edit_request
    from vivid.longvideo.runner import chain_edit

    image, mask = image_and_mask
    spec = family_pipe.spec
    chain_edit(family_pipe, edit_request(image, mask, None, "delete", tmp_path / "o.png"))
    assert sampled == [(spec.default_guidance_scale, spec.default_num_inference_steps)]
    from vivid.apps.gradio_app import VividApp

    app = VividApp(family_pipe, tmp_path / "app")
    assert (app.steps, app.guidance) == (None, None)  # the pipeline's call then takes the base's


@pytest.mark.parametrize("family", ["wan"], indirect=True)
def test_frames_without_a_rate_are_written_at_the_bases_native_fps(family_pipe, tmp_path):
    from vivid.io.video import video_info
    from vivid.longvideo.request import edit_request
    from vivid.longvideo.runner import chain_edit

    frames = np.random.default_rng(1).integers(0, 255, (5, 64, 96, 3), dtype=np.uint8)
    mask = np.zeros((5, 64, 96), bool)
    mask[:, 16:48, 24:72] = True
    result = chain_edit(family_pipe, edit_request(frames, mask, None, "delete", tmp_path / "o.mp4",
                                                  num_inference_steps=1))
    assert result.fps == family_pipe.spec.native_fps == 16
    assert abs(video_info(tmp_path / "o.mp4")[1] - 16) < 0.01


def test_training_validation_samples_at_the_bases_steps_and_guidance_unless_told():
    from train.config import ValidationConfig

    assert (ValidationConfig().steps, ValidationConfig().guidance) == (None, None)  # VIVIDPipeline: the base's
