"""The clip length of a long edit follows the base's own frame rule, through its specification."""

from __future__ import annotations

import pytest
import torch
from diffusers import CogVideoXTransformer3DModel, WanTransformer3DModel

from vivid.longvideo.plan import model_clip_frames
from vivid.model.configs import COGVIDEOX_5B_TRANSFORMER, WAN21_1_3B_TRANSFORMER, WAN21_14B_TRANSFORMER
from vivid.model.registry import spec_for


@pytest.mark.parametrize(
    "cls,config,frames",
    [
        (CogVideoXTransformer3DModel, COGVIDEOX_5B_TRANSFORMER, 49),  # sample_frames of CogVideoX-5B
        (WanTransformer3DModel, WAN21_1_3B_TRANSFORMER, 81),  # Wan2.1: 81 frames at 16 fps
        (WanTransformer3DModel, WAN21_14B_TRANSFORMER, 81),
    ],
)
def test_full_size_models_clip_at_their_native_frame_count(cls, config, frames):
    with torch.device("meta"):
        transformer = cls(**config)
    assert model_clip_frames(transformer) == frames == spec_for(transformer).clip_frames(transformer)
    assert spec_for(transformer).clip_frames(transformer.config) == frames  # a config alone (no model loaded)
    assert (frames - 1) % 4 == 0


def test_tiny_families_clip_lengths_are_4k_plus_1(family_pipe):
    frames = model_clip_frames(family_pipe.transformer)
    assert frames == family_pipe.spec.clip_frames(family_pipe.transformer) and (frames - 1) % 4 == 0
    assert frames == {"cogvideox": 9, "wan": 13}[family_pipe.spec.name]
