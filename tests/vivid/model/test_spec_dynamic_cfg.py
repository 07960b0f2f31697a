"""Dynamic CFG: a monotone cosine ramp over the step index from 1 to the set guidance scale, used by the pipeline."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.conftest import box_mask
from vivid.model.spec import dynamic_guidance_scale


@pytest.mark.parametrize("steps", [2, 5, 50])
@pytest.mark.parametrize("scale", [1.0, 6.0, 12.5])
def test_ramp_is_monotone_from_one_to_the_scale(steps, scale):
    ramp = [dynamic_guidance_scale(i, steps, scale) for i in range(steps)]
    assert ramp[0] == 1.0
    assert ramp[-1] == pytest.approx(scale, abs=1e-12)
    assert all(b >= a for a, b in zip(ramp, ramp[1:]))
    assert all(1.0 <= g <= scale + 1e-12 for g in ramp)


def test_ramp_shape_and_edges():
    ramp = [dynamic_guidance_scale(i, 50, 6.0) for i in range(50)]
    assert ramp[24] < 1.5 < ramp[45]  # exponent 5: guidance stays low for the first half, then rises
    assert dynamic_guidance_scale(0, 1, 6.0) == pytest.approx(6.0)  # a single step gets the full scale
    for step, steps in ((-1, 5), (5, 5), (0, 0)):
        with pytest.raises(ValueError, match="steps"):
            dynamic_guidance_scale(step, steps, 6.0)


def test_pipeline_follows_the_ramp(tiny_pipe):
    rng = np.random.RandomState(0)
    video = rng.randint(0, 255, (5, 64, 96, 3), dtype=np.uint8)
    seen = []

    def callback(pipe, i, t, kwargs):
        seen.append(pipe.guidance_scale)
        return {}

    steps = 4
    tiny_pipe(video=video, mask=box_mask(1, 64, 96, 16, 24, 32, 48), prompt="a red ball", task="add",
              num_inference_steps=steps, guidance_scale=6.0, use_dynamic_cfg=True, output_type="latent",
              generator=torch.Generator().manual_seed(0), callback_on_step_end=callback)
    assert seen == [dynamic_guidance_scale(i, steps, 6.0) for i in range(steps)]
