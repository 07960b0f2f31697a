"""Bad data: every case is skipped, counted and named by the loader, stops training past the limit, and is
reported by `vivid data check`."""

from __future__ import annotations

import itertools
import json
import logging
import shutil

import numpy as np
import pytest

from data_loaders.config import DataConfig
from vivid.io.masks import write_mask_npz
from data_loaders.errors import BadSampleTracker, DataError
from data_loaders.loader import build_train_loader
from data_loaders.synthetic import write_synthetic_dataset
from vivid.cli import main


@pytest.fixture(scope="module")
def broken(tmp_path_factory):
    """A synthetic set plus one bad record per case, all in one manifest."""
    root = tmp_path_factory.mktemp("broken")
    synth = write_synthetic_dataset(root, videos=4, images=0, size=(64, 96), frames=9, seed=1, eval_per_task=0)
    good = [json.loads(line) for line in synth.train_manifests[0].read_text().splitlines()]
    v = good[0]
    (root / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video" * 20)
    (root / "empty.mp4").write_bytes(b"")
    write_mask_npz(root / "short_mask.npz", np.ones((5, 64, 96), bool))
    write_mask_npz(root / "wide_mask.npz", np.ones((9, 64, 80), bool))
    write_mask_npz(root / "blank_mask.npz", np.zeros((9, 64, 96), bool))
    write_mask_npz(root / "full_mask.npz", np.ones((9, 64, 96), bool))
    np.savez_compressed(root / "zero_mask.npz", mask=np.zeros((0, 64, 96), bool))
    bad = {
        "missing_file": {**v, "id": "bad-missing", "media": "nowhere.mp4"},
        "unreadable": {**v, "id": "bad-corrupt", "media": "corrupt.mp4"},
        "no_frames": {**v, "id": "bad-zero-frames", "mask": "zero_mask.npz"},
        "length_mismatch": {**v, "id": "bad-length", "mask": "short_mask.npz"},
        "size_mismatch": {**v, "id": "bad-size", "mask": "wide_mask.npz"},
        "empty_mask": {**v, "id": "bad-blank", "mask": "blank_mask.npz"},
        "mask_area": {**v, "id": "bad-full", "mask": "full_mask.npz"},
        "no_caption": {**v, "id": "bad-caption", "captions": []},
    }
    lines = [json.dumps(r) for r in good] + [json.dumps(r) for r in bad.values()]
    lines.insert(2, '{"id": "bad-json", "kind": "video",')  # truncated line
    lines.append(json.dumps({**v, "id": "bad-empty-file", "media": "empty.mp4"}))
    manifest = root / "broken.jsonl"
    manifest.write_text("\n".join(lines) + "\n")
    return root, manifest, good, bad


def test_loader_skips_counts_and_logs_every_case(broken, caplog):
    root, manifest, good, bad = broken
    cfg = DataConfig(train_manifests=[str(manifest)], height=64, width=96, frames=9, num_workers=0,
                     image_video_ratio=0.0, delete_ratio=0.0, max_bad_fraction=1.0)
    with caplog.at_level(logging.WARNING, logger="data_loaders"):
        loader = build_train_loader(cfg)
        batches = list(itertools.islice(loader, 40))
    good_ids = {r["id"] for r in good}
    assert all(b["id"][0] in good_ids for b in batches)  # only good samples come out
    counts = loader.bad_sample_counts()
    for reason in bad:
        assert counts.get(reason, 0) >= 1, (reason, counts)
    assert counts["invalid_record"] == 1
    text = caplog.text
    for sid in ("bad-missing", "bad-corrupt", "bad-zero-frames", "bad-length", "bad-size", "bad-blank", "bad-full",
                "bad-caption", "bad-empty-file"):
        assert sid in text, sid
    assert "nowhere.mp4" in text and "does not exist" in text
    assert "broken.jsonl:3" in text and "not valid JSON" in text  # the truncated line, by file and line


def test_too_many_bad_samples_stop_with_a_clear_error(broken):
    root, manifest, good, bad = broken
    cfg = DataConfig(train_manifests=[str(manifest)], height=64, width=96, frames=9, num_workers=0,
                     image_video_ratio=0.0, delete_ratio=0.0, max_bad_fraction=0.05, bad_window=20)
    with pytest.raises(DataError, match="manifest records are invalid"):
        build_train_loader(cfg)  # 2 of 14 records are malformed: over 5%
    cfg.max_bad_fraction = 0.2  # loads, then the file-level problems pile up in the window
    loader = build_train_loader(cfg)
    with pytest.raises(DataError, match=r"too many bad samples: 5 of the last \d+ samples"):
        list(itertools.islice(loader, 200))


def test_tracker_window():
    t = BadSampleTracker(max_fraction=0.1, window=20)
    t.good(100)
    t.bad("a", "unreadable", "m")
    t.bad("b", "unreadable", "m")  # 2 of 20 is the limit, not over it
    t.good(20)  # the window forgets them
    t.bad("c", "unreadable", "m")
    t.bad("d", "unreadable", "m")
    with pytest.raises(DataError, match="3 of the last 20"):
        t.bad("e", "empty_mask", "m")
    assert t.state() == {"unreadable": 4, "empty_mask": 1}


def test_a_slot_that_cannot_be_filled_is_a_data_error(broken, tmp_path):
    root, manifest, good, bad = broken
    lines = [json.dumps({**bad["unreadable"], "media": str(root / "corrupt.mp4"), "mask": str(root / "blank_mask.npz")})]
    (tmp_path / "all_bad.jsonl").write_text("\n".join(lines) + "\n")
    cfg = DataConfig(train_manifests=[str(tmp_path / "all_bad.jsonl")], height=64, width=96, frames=9,
                     num_workers=0, image_video_ratio=0.0, delete_ratio=0.0, max_bad_fraction=1.0, max_attempts=3,
                     allow_absolute_paths=True)
    with pytest.raises(DataError, match="3 bad samples in a row"):
        next(iter(build_train_loader(cfg)))


def test_vivid_data_check_reports_every_case(broken, capsys):
    root, manifest, good, bad = broken
    rc = main(["data", "check", str(manifest)])
    out = capsys.readouterr()
    assert rc == 1
    assert "bad record(s)" in out.err
    report = out.out
    assert "video add_modify 5" in " ".join(report.split())  # 4 good + the full mask
    bad_lines = [line for line in report.splitlines() if line.startswith("BAD ")]
    # mask_area depends on the training config; check reports the full mask as fine
    expected = {k: v["id"] for k, v in bad.items() if k != "mask_area"}
    for reason, sid in expected.items():
        assert any(sid in line and f"[{reason}]" in line for line in bad_lines), (reason, bad_lines)
    assert any("broken.jsonl:3" in line and "[invalid_record]" in line for line in bad_lines)
    assert any("bad-empty-file" in line and "empty (0 bytes)" in line for line in bad_lines)
    assert len(bad_lines) == len(expected) + 2


def test_vivid_data_check_ok_and_too_short(broken, tmp_path, capsys):
    root, manifest, good, bad = broken
    ok = root / "good.jsonl"
    ok.write_text("\n".join(json.dumps(r) for r in good) + "\n")
    assert main(["data", "check", str(ok)]) == 0
    assert capsys.readouterr().out.strip().endswith("ok")
    assert main(["data", "check", str(ok), "--frames", "49"]) == 1
    assert "[too_short]" in capsys.readouterr().out
    assert main(["data", "check", str(tmp_path / "missing.jsonl")]) == 2
    assert "not found" in capsys.readouterr().err


def test_vivid_data_check_summarises_with_examples_lists_all_on_request_and_counts_donors(broken, tmp_path,
                                                                                           capsys):
    """Many bad records of one reason: the first 5 are shown and the rest counted, --bad-list FILE holds them all;
    per kind, the records and the deletion donors (the full-frame mask is no donor) are counted."""
    root, manifest, good, bad = broken
    many = root / "many.jsonl"
    many.write_text("\n".join([*(json.dumps(r) for r in good), *(f"not json {i}" for i in range(12)),
                               json.dumps(bad["mask_area"])]) + "\n")
    listed = tmp_path / "bad.txt"
    assert main(["data", "check", str(many), "--bad-list", str(listed)]) == 1
    out = capsys.readouterr().out
    assert len([line for line in out.splitlines() if line.startswith("BAD ")]) == 5
    assert "and 7 more invalid_record" in out and "invalid_record: 12" in out
    videos = sum(r["kind"] == "video" for r in good)
    assert f"video add_modify {videos + 1}" in " ".join(out.split())
    assert f"video deletion donors {videos}" in " ".join(out.split())
    lines = listed.read_text().splitlines()
    assert len(lines) == 12 and all("many.jsonl:" in line and "not valid JSON" in line for line in lines)
    assert main(["data", "check", str(many), "--bad-list", str(many)]) == 2  # never overwrites an input
    assert "is one of the manifests" in capsys.readouterr().err


def test_moved_data_set_still_resolves(broken, tmp_path, capsys):
    root, manifest, good, bad = broken
    moved = tmp_path / "moved"
    shutil.copytree(root, moved)
    ok = moved / "good.jsonl"
    ok.write_text("\n".join(json.dumps(r) for r in good) + "\n")
    assert main(["data", "check", str(ok)]) == 0


# ----------------------------------------------------------------------------- malformed manifests (issue 20, #14)
GOOD_LINE = {"id": "ok", "kind": "image", "media": "a.png", "mask": "m.png", "captions": ["x"]}


def _one_bad_line(tmp_path, line: bytes | str, **limits):
    """A shard holding a good record, `line`, and another good record; returns (ids read, bad samples)."""
    from data_loaders.format import read_manifests

    text = line if isinstance(line, bytes) else line.encode()
    path = tmp_path / "m.jsonl"
    path.write_bytes(json.dumps(GOOD_LINE).encode() + b"\n" + text + b"\n"
                     + json.dumps({**GOOD_LINE, "id": "ok2"}).encode() + b"\n")
    records, bad = read_manifests([str(path)], **limits)
    return [r.id for r in records], bad, path


def test_a_non_utf8_line_is_a_bad_line_with_file_and_line_number(tmp_path):
    ids, bad, path = _one_bad_line(tmp_path, b'{"id": "latin", "kind": "image", "media": "caf\xe9.png", "mask": "m"}')
    assert ids == ["ok", "ok2"]  # the lines around it still load
    assert len(bad) == 1 and bad[0].path == f"{path}:2" and bad[0].reason == "invalid_record"
    assert "not UTF-8 text: byte 0xe9" in bad[0].message


@pytest.mark.parametrize("fps", ["NaN", "Infinity", "-Infinity", "0", "-8", "true", '"8"'])
def test_fps_must_be_finite_and_positive(tmp_path, fps):
    line = json.dumps({**GOOD_LINE, "id": "f"})[:-1] + f', "fps": {fps}}}'
    ids, bad, path = _one_bad_line(tmp_path, line)
    assert ids == ["ok", "ok2"] and len(bad) == 1
    assert bad[0].path == f"{path}:2" and "'fps' must be a finite number > 0" in bad[0].message


def test_captions_longer_than_the_cap_are_rejected(tmp_path):
    from data_loaders.config import MAX_CAPTION_CHARS

    long = {**GOOD_LINE, "id": "long", "captions": ["a cat", "x" * (MAX_CAPTION_CHARS + 1)]}
    ids, bad, _ = _one_bad_line(tmp_path, json.dumps(long))
    assert ids == ["ok", "ok2"] and len(bad) == 1
    assert f"caption 2 is {MAX_CAPTION_CHARS + 1} characters, over the limit of {MAX_CAPTION_CHARS}" in bad[0].message
    at_cap = {**long, "captions": ["x" * MAX_CAPTION_CHARS]}
    assert _one_bad_line(tmp_path, json.dumps(at_cap))[0] == ["ok", "long", "ok2"]
    ids, bad, _ = _one_bad_line(tmp_path, json.dumps({**GOOD_LINE, "id": "c", "captions": ["twelve chars"]}),
                                max_caption_chars=11)
    assert ids == ["ok", "ok2"] and "over the limit of 11" in bad[0].message
    with pytest.raises(ValueError, match="max_caption_chars must be >= 1"):
        DataConfig(max_caption_chars=0)


@pytest.mark.parametrize("field, value", [
    ("media", "/etc/passwd"), ("mask", "../outside/m.png"), ("media", "sub/../../a.png"),
    ("entity_masks", ["e.png", "/abs/e.png"]), ("target", "../t.mp4"),
])
def test_paths_leaving_the_data_root_are_refused_unless_allowed(tmp_path, field, value):
    line = json.dumps({**GOOD_LINE, "id": "out", field: value})
    ids, bad, path = _one_bad_line(tmp_path, line)
    assert ids == ["ok", "ok2"] and len(bad) == 1 and bad[0].path == f"{path}:2"
    assert f"'{field}'" in bad[0].message and "leaves the manifest's folder" in bad[0].message
    ids, bad, _ = _one_bad_line(tmp_path, line, allow_absolute_paths=True)  # the caller allows them
    assert ids == ["ok", "out", "ok2"] and not bad
    header = json.dumps({"vivid_manifest": {"allow_absolute_paths": True}})
    path.write_text(header + "\n" + line + "\n")  # or the shard's own header line does
    from data_loaders.format import read_manifests

    records, bad = read_manifests([str(path)])
    assert [r.id for r in records] == ["out"] and not bad


def test_paths_inside_the_data_root_and_misplaced_headers(tmp_path):
    ids, bad, _ = _one_bad_line(tmp_path, json.dumps({**GOOD_LINE, "id": "in", "media": "sub/../a.png"}))
    assert ids == ["ok", "in", "ok2"] and not bad  # ".." that stays inside the folder is fine
    ids, bad, path = _one_bad_line(tmp_path, json.dumps({"vivid_manifest": {"allow_absolute_paths": True}}))
    assert ids == ["ok", "ok2"] and "must be the shard's first line" in bad[0].message and bad[0].path == f"{path}:2"
    ids, bad, _ = _one_bad_line(tmp_path, json.dumps({"vivid_manifest": {"allow_anything": True}}))
    assert "unknown header option 'allow_anything'" in bad[0].message


def test_write_manifest_marks_shards_that_name_outside_files(tmp_path):
    from data_loaders.format import Record, read_manifests, write_manifest

    inside = Record("in", "image", str(tmp_path / "data" / "a.png"), str(tmp_path / "data" / "m.png"), ["x"])
    outside = Record("out", "image", str(tmp_path / "elsewhere" / "a.png"), str(tmp_path / "data" / "m.png"), ["x"])
    plain = write_manifest([inside], tmp_path / "data" / "plain.jsonl")
    assert "vivid_manifest" not in plain.read_text()
    marked = write_manifest([inside, outside], tmp_path / "data" / "marked.jsonl")
    assert json.loads(marked.read_text().splitlines()[0]) == {"vivid_manifest": {"allow_absolute_paths": True}}
    records, bad = read_manifests([str(marked)])
    assert not bad and records[1].media == str(tmp_path / "data" / ".." / "elsewhere" / "a.png")


def test_the_loader_takes_the_limits_from_the_data_config(broken, tmp_path):
    root, manifest, good, bad = broken
    absolute = [{**r, "media": str(root / r["media"]), "mask": str(root / r["mask"])} for r in good]
    (tmp_path / "abs.jsonl").write_text("\n".join(json.dumps(r) for r in absolute) + "\n")
    cfg = dict(train_manifests=[str(tmp_path / "abs.jsonl")], height=64, width=96, frames=9, num_workers=0,
               image_video_ratio=0.0, delete_ratio=0.0)
    with pytest.raises(DataError, match="leaves the manifest's folder"):
        build_train_loader(DataConfig(**cfg))
    assert build_train_loader(DataConfig(**cfg, allow_absolute_paths=True)) is not None
    with pytest.raises(DataError, match="over the limit of 3"):
        build_train_loader(DataConfig(**{**cfg, "train_manifests": [str(manifest)]}, max_caption_chars=3))
