"""Adapter for the published VIVID-10M data set (KwaiVGI / KlingTeam on the Hugging Face hub): writes manifests.

The layout is not documented by the authors. What this adapter assumes, from the file names visible in the
public data set viewer and the names the paper's authors use:
- The tar parts (`vivid-image.tar.part-*`, `vivid-video.tar.part-*`) are concatenated and extracted under ROOT.
- One folder per sample: `ROOT/vivid-image/<sample>/` or `ROOT/vivid-video/<sample>/` (any depth below ROOT
  works: a sample folder is any folder holding a `source_image.*` or `source_video.*` file).
- Source: `source_image.{png,jpg,...}` (kind image) or `source_video.mp4` (kind video).
- Masks, anywhere below the sample folder (e.g. `mask_image/`, `mask_video/`):
  `mask_[clipNNNN_]instanceNNNN_ori_mask.<ext>` (the entity's segmentation mask; the `_ori_mask_dilated`,
  `_convexHull_mask` and `_rectangle_mask` variants are ignored because the loader augments masks itself) and
  `mask_removeNNNN[_v3].<ext>` (deletion samples: the region to clear; with several versions the last name in
  sorted order is used). Mask videos are single-channel-in-RGB with white = entity; mask images likewise.
- Captions: `local_caption_[clipNNNN_]instanceNNNN.txt` beside or below the sample folder, one caption per
  non-empty line, short to long (up to three are kept). An instance is identified by (clip, instance): instance
  numbers restart in every clip. Its caption is the file with the same clip and instance, else (a caption named
  without a clip) `local_caption_instanceNNNN.txt`. An instance without a caption is skipped and counted.
- Every instance of a sample becomes one add_modify record whose `entity_masks` are the other instances of the
  same clip (so deletion synthesis avoids them; masks of another clip may cover other frames, so they are not
  used); every remove mask becomes one delete record (its `entity_masks`: the sample's instances when they
  belong to one clip, none otherwise, since a remove mask names no clip).
Records get ids `<sample>/instanceNNNN` (mask named without a clip), `<sample>/clipNNNN_instanceNNNN` and
`<sample>/removeNNNN`; they are sorted by id and the kinds interleaved in proportion before sharding, so every
shard mixes images and videos (whole-shard rank splits need every kind on every rank). Run `vivid data check` on
the result.
"""

from __future__ import annotations

import logging
import os
import re
from collections import Counter
from pathlib import Path

from vivid.io.files import IMAGE_SUFFIXES

from .format import Record, write_shards

logger = logging.getLogger("data_loaders")

_INSTANCE = re.compile(r"^mask_(?:clip(\d+)_)?instance(\d+)_ori_mask\.\w+$")
_REMOVE = re.compile(r"^mask_remove(\d+)(?:_v\d+)?\.\w+$")
_CAPTION = re.compile(r"^local_caption_(?:clip(\d+)_)?instance(\d+)\.txt$")
_SOURCE = re.compile(r"^source_(image|video)\.\w+$")


def _sample_folders(root: Path):
    for dirpath, dirs, files in os.walk(root):
        dirs.sort()  # a listing order independent of the file system
        sources = sorted(f for f in files if _SOURCE.match(f))
        if sources:
            yield Path(dirpath), sources[0]


def scan_sample(folder: Path, source_name: str, root: Path) -> tuple[list[Record], Counter]:
    """The records of one sample folder, and counts of what was skipped and why."""
    kind = _SOURCE.match(source_name).group(1)
    if kind == "image" and Path(source_name).suffix.lower() not in IMAGE_SUFFIXES:
        return [], Counter({"skipped_unknown_source": 1})
    sample = folder.relative_to(root).as_posix()
    instances: dict[tuple[str, str], Path] = {}  # (clip number or "", instance number) -> mask
    removes: dict[str, Path] = {}
    captions: dict[tuple[str, str], Path] = {}
    for path in sorted(folder.rglob("*")):
        name = path.name
        if m := _INSTANCE.match(name):
            instances[(m.group(1) or "", m.group(2))] = path
        elif m := _REMOVE.match(name):
            removes[m.group(1)] = path  # sorted order: the last version wins
        elif m := _CAPTION.match(name):
            captions[(m.group(1) or "", m.group(2))] = path
    media = str(folder / source_name)
    records: list[Record] = []
    skipped: Counter = Counter()
    for key, mask in sorted(instances.items()):
        clip, inst = key
        name = f"clip{clip}_instance{inst}" if clip else f"instance{inst}"
        caption = captions.get(key) or captions.get(("", inst))
        lines = []
        if caption is not None:
            lines = [ln.strip() for ln in caption.read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()]
        if not lines:
            skipped["skipped_no_caption"] += 1
            logger.warning("VIVID-10M %s %s: no caption, skipped", sample, name)
            continue
        others = [str(p) for k, p in sorted(instances.items()) if k != key and k[0] == clip]
        records.append(Record(f"{sample}/{name}", kind, media, str(mask), lines[:3], entity_masks=others))
    # a remove mask names no clip: its entity masks are the instances only when the sample has a single clip
    clips = {clip for clip, _ in instances}
    remove_entities = [str(p) for _, p in sorted(instances.items())] if len(clips) <= 1 else []
    for rid, mask in sorted(removes.items()):
        records.append(Record(f"{sample}/remove{rid}", kind, media, str(mask), [], task="delete",
                              entity_masks=remove_entities))
    return records, skipped


def interleave_kinds(records: list[Record]) -> list[Record]:
    """The records sorted by id within each kind, the kinds merged evenly (record i of a kind with n records at
    position (i + 0.5) / n), so any run of consecutive records, hence every shard, holds each kind in proportion."""
    by_kind: dict[str, list[Record]] = {}
    for r in sorted(records, key=lambda r: r.id):
        by_kind.setdefault(r.kind, []).append(r)
    order = sorted(((i + 0.5) / len(rs), kind, i) for kind, rs in by_kind.items() for i in range(len(rs)))
    return [by_kind[kind][i] for _, kind, i in order]


def convert_vivid10m(root: str | os.PathLike, out_dir: str | os.PathLike, shard_size: int = 10000) -> tuple[list[Path], Counter]:
    """Scan an extracted VIVID-10M tree and write `vivid10m-*.jsonl` shards under `out_dir`."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"VIVID-10M root {root} is not a folder")
    records: list[Record] = []
    counts: Counter = Counter()
    for folder, source in _sample_folders(root):
        recs, skipped = scan_sample(folder, source, root)
        records += recs
        counts.update(skipped)
        counts["samples"] += 1
    if not records:
        raise ValueError(f"no VIVID-10M samples under {root} (expected folders with source_image.* / source_video.*)")
    counts["records"] = len(records)
    counts["skipped"] = sum(v for k, v in counts.items() if k.startswith("skipped_"))
    return write_shards(interleave_kinds(records), out_dir, "vivid10m", shard_size), counts
