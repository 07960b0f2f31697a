"""Manifest stage: the data set's sharded JSON Lines manifests, with a held-out eval split by video.

`train-*.jsonl` and `eval-*.jsonl` in the output folder (docs/data_format.md), media paths relative to it. Whole
videos are held out (no clip of an eval video is trained on); their records carry `eval_task` ("modify" for an
entity record, whose caption describes what is there, "delete" for a deletion record) and no `target` (real
footage has no ground-truth edit). Records are sorted by id and the kinds interleaved in proportion
(`interleave_kinds`), so every shard holds images and videos and the output does not depend on the order videos
were built in, nor on the number of processes. `build.json` lists the shards written, so a rebuild that writes
fewer shards removes the ones it wrote before and no others.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from vivid.io.atomic import atomic_path

from ..format import Record, write_shards
from ..vivid10m import interleave_kinds

STATE_FILE = "build.json"


def eval_videos(video_ids: list[str], fraction: float, minimum: int, seed: int) -> set[str]:
    """The held-out videos: `fraction` of them (at least `minimum` when there are two or more, always leaving
    one to train on), the first in an order hashed from (seed, id)."""
    if len(video_ids) < 2:
        return set()
    count = min(len(video_ids) - 1, max(minimum, round(fraction * len(video_ids))))
    ranked = sorted(video_ids, key=lambda v: hashlib.sha1(f"{seed}/{v}".encode()).hexdigest())
    return set(ranked[:count])


def as_eval(record: Record) -> Record:
    record.eval_task = "delete" if record.task == "delete" else "modify"
    return record


def write_manifests(out: Path, train: list[Record], held_out: list[Record], shard_size: int) -> tuple[list[Path], list[Path]]:
    """Write train-*.jsonl and eval-*.jsonl (atomically, shard by shard) and remove shards an earlier build wrote
    that this one did not."""
    state_path = out / STATE_FILE
    before = set(json.loads(state_path.read_text()).get("shards", [])) if state_path.is_file() else set()
    train_paths = write_shards(interleave_kinds(train), out, "train", shard_size) if train else []
    eval_paths = write_shards(interleave_kinds([as_eval(r) for r in held_out]), out, "eval", shard_size) if held_out else []
    written = {p.name for p in train_paths + eval_paths}
    for name in sorted(before - written):
        if "/" not in name and (name.startswith("train-") or name.startswith("eval-")):
            (out / name).unlink(missing_ok=True)
    with atomic_path(state_path) as tmp:
        tmp.write_text(json.dumps({"shards": sorted(written)}, indent=2) + "\n")
    return train_paths, eval_paths
