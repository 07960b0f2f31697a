"""Manifest format, frame sampling, geometry, mask encodings, the VIVID-10M adapter, `vivid data synth`, config."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from data_loaders.config import DataConfig
from data_loaders.decode import open_mask, sample_indices
from vivid.io.masks import MaskSource, write_mask_npz
from vivid.io.resize import cover_geometry
from data_loaders.errors import BadSample
from data_loaders.format import Record, read_manifests, write_manifest, write_shards
from data_loaders.vivid10m import convert_vivid10m
from train.config import load_config
from vivid.cli import main
from vivid.io.images import write_image
from vivid.io.video import write_video


def test_manifest_round_trip_with_relative_paths(tmp_path):
    recs = [Record(f"s{i}", "video", str(tmp_path / "media" / f"{i}.mp4"), str(tmp_path / "media" / f"{i}.npz"),
                   ["a", "a b"], entity_masks=[str(tmp_path / "media" / "e.npz")], start=2, end=20, fps=24.0,
                   attributes={"color": "red"}) for i in range(5)]
    shards = write_shards(recs, tmp_path, "train", shard_size=2)
    assert [p.name for p in shards] == ["train-00000.jsonl", "train-00001.jsonl", "train-00002.jsonl"]
    line = json.loads(shards[0].read_text().splitlines()[0])
    assert line["media"] == "media/0.mp4" and line["entity_masks"] == ["media/e.npz"]
    back, bad = read_manifests([str(tmp_path / "train-*.jsonl")])
    assert not bad and [r.id for r in back] == [r.id for r in recs]
    assert back[3].media == recs[3].media and back[3].start == 2 and back[3].end == 20 and back[3].fps == 24.0
    assert back[3].source.endswith("train-00001.jsonl:2")
    with pytest.raises(FileNotFoundError, match="nothing-\\*.jsonl"):
        read_manifests([str(tmp_path / "nothing-*.jsonl")])


@pytest.mark.parametrize(
    "line, message",
    [
        ('{"kind": "video", "media": "a.mp4", "mask": "m.npz", "captions": ["x"]}', "missing or empty 'id'"),
        ('{"id": "a", "kind": "audio", "media": "a.mp4", "mask": "m.npz", "captions": ["x"]}', "'kind' must be one of"),
        ('{"id": "a", "kind": "video", "media": "a.mp4", "captions": ["x"]}', "'mask' must be a non-empty path"),
        ('{"id": "a", "kind": "video", "media": "a.mp4", "mask": "m", "captions": ["x"], "task": "swap"}', "'task'"),
        ('{"id": "a", "kind": "video", "media": "a.mp4", "mask": "m", "captions": ["x"], "colour": 1}', "unknown field"),
        ('{"id": "a", "kind": "video", "media": "a.mp4", "mask": "m", "captions": ["x"], "start": 5, "end": 3}', "'end'"),
        ('{"id": "a", "kind": "video", "media": "a.mp4", "mask": "m", "captions": ["", " "]}', "has no caption"),
        ('[1, 2]', "must be a JSON object"),
    ],
)
def test_invalid_records_are_named(tmp_path, line, message):
    path = tmp_path / "m.jsonl"
    good = '{"id": "ok", "kind": "image", "media": "a.png", "mask": "m.png", "captions": ["x"]}'
    path.write_text(good + "\n" + line + "\n" + good.replace('"ok"', '"ok"') + "\n")
    records, bad = read_manifests([str(path)])
    assert [r.id for r in records] == ["ok"]
    assert any(message in b.message and b.path == f"{path}:2" for b in bad), [b.message for b in bad]
    assert any("duplicate id" in b.message for b in bad)


def test_sample_indices_stride_and_fallbacks():
    rng = np.random.default_rng(0)
    idx = sample_indices(300, 24.0, 8.0, 49, None)
    assert np.array_equal(idx, np.arange(49) * 3)  # stride 24 / 8 = 3
    for _ in range(50):
        idx = sample_indices(300, 25.0, 8.0, 49, rng)
        assert idx[0] >= 0 and idx[-1] < 300 and set(np.diff(idx)) <= {3, 4}  # stride 3.125
    assert np.array_equal(sample_indices(100, 30.0, 8.0, 49, None), np.round(np.arange(49) * 99 / 48 + 1e-9).astype(int))
    assert np.array_equal(sample_indices(60, 4.0, 8.0, 9, None), np.arange(9))  # never faster than the source
    assert np.array_equal(sample_indices(300, 24.0, 8.0, 5, None, start=100, end=120), [100, 103, 106, 109, 112])
    with pytest.raises(BadSample, match="too_short"):
        sample_indices(40, 24.0, 8.0, 49, rng)
    with pytest.raises(BadSample, match="no_frames"):
        sample_indices(40, 24.0, 8.0, 9, rng, start=50)


def test_cover_geometry():
    g = cover_geometry(720, 1280, 480, 720)
    assert (g.scaled_h, g.scaled_w, g.top, g.left) == (480, 853, 0, 66)
    g = cover_geometry(144, 176, 480, 720)  # upscaling
    assert (g.scaled_h, g.scaled_w, g.top, g.left) == (589, 720, 54, 0)


def test_mask_encodings_read_the_same(tmp_path):
    rng = np.random.default_rng(0)
    mask = np.zeros((5, 32, 48), bool)
    for t in range(5):
        mask[t, 4 + t : 20 + t, 10:30] = True
    mask[:, 0, 0] = rng.random(5) > 0.5
    write_mask_npz(tmp_path / "packed.npz", mask)
    np.savez_compressed(tmp_path / "plain.npz", mask=mask)
    np.save(tmp_path / "arr.npy", mask.astype(np.uint8) * 255)
    write_video(tmp_path / "mask.mp4", np.repeat(mask[..., None] * np.uint8(255), 3, -1), 8.0, lossless=True)
    (tmp_path / "pngs").mkdir()
    for t in range(5):
        write_image(tmp_path / "pngs" / f"{t:03d}.png", np.repeat(mask[t, ..., None] * np.uint8(255), 3, -1))
    for name in ("packed.npz", "plain.npz", "arr.npy", "mask.mp4", "pngs"):
        src = MaskSource(str(tmp_path / name))
        assert (src.count, src.height, src.width) == (5, 32, 48), name
        assert np.array_equal(src.read([0, 2, 4]), mask[[0, 2, 4]]), name
    g = cover_geometry(32, 48, 64, 96)  # nearest: exactly a 2x pixel repeat
    assert np.array_equal(MaskSource(str(tmp_path / "packed.npz")).read_resized([1], g)[0],
                          mask[1].repeat(2, 0).repeat(2, 1))
    (tmp_path / "bad.npz").write_bytes(b"PK not a zip")
    with pytest.raises(BadSample, match="unreadable"):
        open_mask(str(tmp_path / "bad.npz"))


def test_vivid10m_adapter(tmp_path):
    root = tmp_path / "VIVID-10M"
    img = root / "vivid-image" / "00009356"
    (img / "mask_image").mkdir(parents=True)
    write_image(img / "source_image.png", np.zeros((32, 48, 3), np.uint8))
    for inst in ("0000", "0001"):
        for variant in ("ori_mask", "ori_mask_dilated", "convexHull_mask", "rectangle_mask"):
            write_image(img / "mask_image" / f"mask_instance{inst}_{variant}.png", np.zeros((32, 48, 3), np.uint8))
    (img / "local_caption_instance0000.txt").write_text("a man\na man in a hat\na man in a hat waving\n")
    vid = root / "vivid-video" / "clip0007"
    (vid / "mask_video").mkdir(parents=True)
    (vid / "source_video.mp4").write_bytes(b"x")
    (vid / "mask_video" / "mask_clip0007_instance0003_ori_mask.mp4").write_bytes(b"x")
    (vid / "mask_video" / "mask_remove0000_v3.mp4").write_bytes(b"x")
    (vid / "local_caption_clip0007_instance0003.txt").write_text("a dog\n\na brown dog\n")
    shards, counts = convert_vivid10m(root, tmp_path / "manifests")
    records, bad = read_manifests([str(p) for p in shards])
    assert not bad
    by_id = {r.id: r for r in records}
    assert set(by_id) == {"vivid-image/00009356/instance0000", "vivid-video/clip0007/clip0007_instance0003",
                          "vivid-video/clip0007/remove0000"}
    r = by_id["vivid-image/00009356/instance0000"]
    assert r.kind == "image" and r.captions == ["a man", "a man in a hat", "a man in a hat waving"]
    assert r.mask.endswith("mask_instance0000_ori_mask.png") and r.entity_masks[0].endswith("instance0001_ori_mask.png")
    d = by_id["vivid-video/clip0007/remove0000"]
    assert d.kind == "video" and d.task == "delete" and d.captions == []
    assert by_id["vivid-video/clip0007/clip0007_instance0003"].captions == ["a dog", "a brown dog"]
    assert counts["skipped_no_caption"] == 1  # instance0001 has no caption file


def test_vivid10m_clips_sharing_an_instance_number(tmp_path):
    """Instance numbers restart per clip: (clip, instance) is the key, for masks, captions and ids."""
    root = tmp_path / "VIVID-10M"
    vid = root / "vivid-video" / "00000042"
    (vid / "mask_video").mkdir(parents=True)
    (vid / "source_video.mp4").write_bytes(b"x")
    for clip in ("0001", "0002"):
        for inst in ("0001", "0002"):
            (vid / "mask_video" / f"mask_clip{clip}_instance{inst}_ori_mask.mp4").write_bytes(b"x")
    (vid / "local_caption_clip0001_instance0001.txt").write_text("a cat\n")
    (vid / "local_caption_clip0002_instance0001.txt").write_text("a dog\na brown dog\n")
    (vid / "local_caption_clip0001_instance0002.txt").write_text("a hat\n")
    # clip0002/instance0002 has no caption (clip0001's caption for instance0002 must not be borrowed)
    shards, counts = convert_vivid10m(root, tmp_path / "manifests")
    records, bad = read_manifests([str(p) for p in shards])
    assert not bad
    by_id = {r.id: r for r in records}
    base = "vivid-video/00000042/"
    assert set(by_id) == {base + "clip0001_instance0001", base + "clip0002_instance0001", base + "clip0001_instance0002"}
    a, b = by_id[base + "clip0001_instance0001"], by_id[base + "clip0002_instance0001"]
    assert a.captions == ["a cat"] and b.captions == ["a dog", "a brown dog"]
    assert a.mask.endswith("mask_clip0001_instance0001_ori_mask.mp4")
    assert b.mask.endswith("mask_clip0002_instance0001_ori_mask.mp4")
    # entity masks: the other instances of the same clip only
    assert [Path(p).name for p in a.entity_masks] == ["mask_clip0001_instance0002_ori_mask.mp4"]
    assert [Path(p).name for p in b.entity_masks] == ["mask_clip0002_instance0002_ori_mask.mp4"]
    assert counts["records"] == 3 and counts["skipped_no_caption"] == 1 and counts["skipped"] == 1


def test_vivid10m_shards_mix_kinds(tmp_path):
    """Every shard holds both kinds in proportion, so whole-shard rank splits give every rank both kinds."""
    root = tmp_path / "VIVID-10M"
    for kind, n in (("image", 9), ("video", 3)):
        for i in range(n):
            folder = root / f"vivid-{kind}" / f"{i:08d}"
            folder.mkdir(parents=True)
            (folder / f"source_{kind}.{'png' if kind == 'image' else 'mp4'}").write_bytes(b"x")
            (folder / "mask_instance0000_ori_mask.png").write_bytes(b"x")
            (folder / "local_caption_instance0000.txt").write_text("a thing\n")
    shards, counts = convert_vivid10m(root, tmp_path / "manifests", shard_size=4)
    assert counts["records"] == 12 and len(shards) == 3
    kinds = [[r.kind for r in read_manifests([str(p)])[0]] for p in shards]
    assert [k.count("video") for k in kinds] == [1, 1, 1] and [k.count("image") for k in kinds] == [3, 3, 3]
    again, _ = convert_vivid10m(root, tmp_path / "again", shard_size=4)
    assert [p.read_text() for p in again] == [p.read_text() for p in shards]  # paths are relative: same text


def test_vivid_data_synth_cli(tmp_path, capsys):
    out = tmp_path / "synth"
    assert main(["data", "synth", "--out", str(out), "--videos", "2", "--images", "3", "--size", "32x48",
                 "--frames", "5", "--eval", "1", "--seed", "3"]) == 0
    text = capsys.readouterr().out
    assert "train manifest:" in text and "eval manifest:" in text
    records, bad = read_manifests([str(out / "train-*.jsonl")])
    assert not bad and sorted(r.kind for r in records) == ["image"] * 3 + ["video"] * 2
    assert all({"color", "shape"} <= set(r.attributes) for r in records)
    evals, _ = read_manifests([str(out / "eval-*.jsonl")])
    assert sorted(r.eval_task for r in evals) == ["add", "delete", "modify"]
    assert main(["data", "check", str(out / "train-00000.jsonl"), str(out / "eval-00000.jsonl")]) == 0
    assert main(["data", "synth", "--out", str(out), "--size", "big"]) == 2
    assert "--size must be HxW" in capsys.readouterr().err


def test_synthetic_data_is_deterministic(tmp_path):
    from data_loaders.synthetic import write_synthetic_dataset

    a = write_synthetic_dataset(tmp_path / "a", videos=2, images=2, size=(32, 48), frames=5, seed=9, eval_per_task=0)
    b = write_synthetic_dataset(tmp_path / "b", videos=2, images=2, size=(32, 48), frames=5, seed=9, eval_per_task=0)
    assert a.train_manifests[0].read_text() == b.train_manifests[0].read_text()
    ma = MaskSource(str(tmp_path / "a" / "train" / "synth-v00001_mask.npz")).read(range(5))
    mb = MaskSource(str(tmp_path / "b" / "train" / "synth-v00001_mask.npz")).read(range(5))
    assert np.array_equal(ma, mb) and ma.any()
    assert np.array_equal(cv2.imread(str(tmp_path / "a/train/synth-i00000.png")), cv2.imread(str(tmp_path / "b/train/synth-i00000.png")))


def test_synthetic_entities_never_overlap():
    from data_loaders.augment import bounding_box, dilate
    from data_loaders.synthetic import ENTITY_GAP, _scene, entity_masks

    rng = np.random.default_rng(0)
    with_distractors = 0
    for i in range(60):
        bg, target, distractors = _scene(rng, 9 if i % 2 else 1, 64, 96, moving=bool(i % 2))
        with_distractors += bool(distractors)
        entities = [target, *distractors]
        for a in range(len(entities)):
            # an eval-style box around one entity (grown by ENTITY_GAP - 1 px) holds no pixel of any other
            box = dilate(bounding_box(entity_masks(entities[a], 64, 96)), ENTITY_GAP - 1, rect=True)
            for b in range(len(entities)):
                if a != b:
                    assert not (box & entity_masks(entities[b], 64, 96)).any(), (i, a, b)
    assert with_distractors >= 20  # placement still finds room for distractors in most scenes


def test_data_config_validation_and_yaml():
    with pytest.raises(ValueError, match="frames must be 4k\\+1"):
        DataConfig(frames=10)
    with pytest.raises(ValueError, match="height must be a positive multiple of 16"):
        DataConfig(height=100)
    with pytest.raises(ValueError, match="unknown type 'blur'"):
        DataConfig(augment_weights={"blur": 1.0})
    with pytest.raises(ValueError, match="mask_area_range"):
        DataConfig(mask_area_range=(0.5, 0.1))
    cfg = load_config(None, ["data.frames=9", "data.mask_area_range=[0.01, 0.5]", "data.augment_weights={box: 2.0}"])
    assert cfg.data.frames == 9 and cfg.data.mask_area_range == (0.01, 0.5) and cfg.data.augment_weights == {"box": 2.0}


def test_synthetic_data_without_distractors_captions_the_whole_scene(tmp_path):
    """max_distractors=0 (text-to-video pretraining): every training sample holds its captioned shape alone."""
    from data_loaders.format import read_manifests
    from data_loaders.synthetic import write_synthetic_dataset

    result = write_synthetic_dataset(tmp_path / "d", videos=6, images=12, frames=5, eval_per_task=0, max_distractors=0)
    records, _ = read_manifests([str(p) for p in result.train_manifests])
    assert len(records) == 18 and all(not r.entity_masks for r in records)
    with_them = write_synthetic_dataset(tmp_path / "e", videos=6, images=12, frames=5, eval_per_task=0)
    assert any(r.entity_masks for r in read_manifests([str(p) for p in with_them.train_manifests])[0])
    with pytest.raises(ValueError, match="max_distractors must be >= 0"):
        write_synthetic_dataset(tmp_path / "f", videos=1, images=0, max_distractors=-1)
