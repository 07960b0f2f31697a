"""Training samples: last-frame KIVE (vivid's addition) beside the recipe's first-frame KIVE."""

from __future__ import annotations

import numpy as np
import pytest

from data_loaders.config import DataConfig
from data_loaders.format import Record
from data_loaders.samples import build_sample
from data_loaders.synthetic import write_synthetic_dataset


@pytest.fixture(scope="module")
def record_and_config(tmp_path_factory):
    synth = write_synthetic_dataset(tmp_path_factory.mktemp("synth"), videos=2, images=2, size=(64, 96), frames=9,
                                    seed=0, eval_per_task=1)
    folder = synth.train_manifests[0].parent / "train"
    rec = Record("r", "video", str(folder / "synth-v00000.mp4"), str(folder / "synth-v00000_mask.npz"),
                 ["a red circle"])
    config = dict(train_manifests=[str(p) for p in synth.train_manifests], height=64, width=96, frames=9,
                  num_workers=0, delete_ratio=0.0, caption_dropout=0.0)
    return rec, config


def _sample(record_and_config, **kw) -> dict:
    rec, config = record_and_config
    return build_sample(rec, "add_modify", [], DataConfig(**{**config, **kw}), np.random.default_rng(7))


def test_last_frame_kive_clears_the_last_mask_frame_only(record_and_config):
    plain = _sample(record_and_config, kive_prob=0.0, kive_last_frame_prob=0.0)
    last = _sample(record_and_config, kive_prob=0.0, kive_last_frame_prob=1.0)
    both = _sample(record_and_config, kive_prob=1.0, kive_last_frame_prob=1.0)
    assert not plain["kive_last"] and last["kive_last"] and both["kive"] and both["kive_last"]
    assert plain["mask"][-1].any() and not last["mask"][-1].any()  # mask's last frame := 0
    assert np.array_equal(plain["mask"][:-1], last["mask"][:-1])  # the other frames keep their masks
    assert not both["mask"][0].any() and not both["mask"][-1].any()  # both ends at once
    assert np.array_equal(plain["mask"][1:-1], both["mask"][1:-1])


def test_without_last_frame_kive_the_recipe_is_unchanged(record_and_config):
    rec, config = record_and_config
    default = build_sample(rec, "add_modify", [], DataConfig(**config), np.random.default_rng(3))
    assert DataConfig(**config).kive_last_frame_prob == 0.0 and not default["kive_last"]
    with pytest.raises(ValueError, match="kive_last_frame_prob must be in"):
        DataConfig(**config, kive_last_frame_prob=1.5).validate()
