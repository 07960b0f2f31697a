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
  non-empty line, short to long (up to three are kept). An instance without a caption file is skipped.
- Every instance of a sample becomes one add_modify record whose `entity_masks` are the sample's other
  instances (so deletion synthesis avoids them); every remove mask becomes one delete record.
Records get ids `<sample>/instanceNNNN` and `<sample>/removeNNNN`. Run `vivid data check` on the result.
"""

from __future__ import annotations

import logging
import os
import re
from collections import Counter
from pathlib import Path

from vivid.media import IMAGE_SUFFIXES

from .format import Record, write_shards

logger = logging.getLogger("data_loaders")

_INSTANCE = re.compile(r"^mask_(?:clip\d+_)?instance(\d+)_ori_mask\.\w+$")
_REMOVE = re.compile(r"^mask_remove(\d+)(?:_v\d+)?\.\w+$")
_CAPTION = re.compile(r"^local_caption_(?:clip\d+_)?instance(\d+)\.txt$")
_SOURCE = re.compile(r"^source_(image|video)\.\w+$")


def _sample_folders(root: Path):
    for dirpath, _dirs, files in os.walk(root):
        sources = sorted(f for f in files if _SOURCE.match(f))
        if sources:
            yield Path(dirpath), sources[0]


def scan_sample(folder: Path, source_name: str, root: Path) -> tuple[list[Record], Counter]:
    """The records of one sample folder, and counts of what was skipped and why."""
    kind = _SOURCE.match(source_name).group(1)
    if kind == "image" and Path(source_name).suffix.lower() not in IMAGE_SUFFIXES:
        return [], Counter({"skipped_unknown_source": 1})
    sample = folder.relative_to(root).as_posix()
    instances: dict[str, Path] = {}
    removes: dict[str, Path] = {}
    captions: dict[str, Path] = {}
    for path in sorted(folder.rglob("*")):
        name = path.name
        if m := _INSTANCE.match(name):
            instances[m.group(1)] = path
        elif m := _REMOVE.match(name):
            removes[m.group(1)] = path  # sorted order: the last version wins
        elif m := _CAPTION.match(name):
            captions[m.group(1)] = path
    media = str(folder / source_name)
    records: list[Record] = []
    skipped: Counter = Counter()
    for inst, mask in sorted(instances.items()):
        lines = []
        if inst in captions:
            lines = [ln.strip() for ln in captions[inst].read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()]
        if not lines:
            skipped["skipped_no_caption"] += 1
            logger.warning("VIVID-10M %s instance %s: no caption file, skipped", sample, inst)
            continue
        others = [str(p) for i, p in sorted(instances.items()) if i != inst]
        records.append(Record(f"{sample}/instance{inst}", kind, media, str(mask), lines[:3], entity_masks=others))
    for rid, mask in sorted(removes.items()):
        records.append(Record(f"{sample}/remove{rid}", kind, media, str(mask), [], task="delete",
                              entity_masks=[str(p) for p in instances.values()]))
    return records, skipped


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
    return write_shards(records, out_dir, "vivid10m", shard_size), counts
