"""The on-disk data set format: sharded JSON Lines manifests of local-editing samples (docs/data_format.md).

One JSON object per line. Media paths are relative to the manifest's folder, so a data set folder can be moved or
mounted anywhere; a path leaving that folder (absolute, or climbing out with "..") is refused unless the shard's
header line or the caller allows it. A data set is any number of shards; a manifest argument may be a glob
("data/train-*.jsonl").
"""

from __future__ import annotations

import glob
import hashlib
import json
import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vivid.io.atomic import atomic_path

from .config import MAX_CAPTION_CHARS
from .errors import BadSample

KINDS = ("video", "image")
TASKS = ("add_modify", "delete")
EVAL_TASKS = ("add", "modify", "delete")
_KNOWN_FIELDS = {
    "id", "kind", "media", "mask", "captions", "task", "entity_masks", "start", "end", "fps",
    "attributes", "eval_task", "target", "height", "width",
}
# An optional first line of a shard, `{"vivid_manifest": {...}}`, holding options for the whole shard. The one option:
# "allow_absolute_paths": true, written by `write_manifest` when a record names a file outside the shard's folder.
HEADER_KEY = "vivid_manifest"
_HEADER_FIELDS = {"allow_absolute_paths"}


@dataclass
class Record:
    """One sample, with paths resolved to absolute paths."""

    id: str
    kind: str  # "video" | "image"
    media: str  # video file, or image file for kind == "image"
    mask: str  # mask video, folder of PNGs, image, or .npz/.npy array; one mask frame per media frame
    captions: list[str] = field(default_factory=list)  # one to three local captions, short to long
    task: str = "add_modify"  # "add_modify" | "delete"
    entity_masks: list[str] = field(default_factory=list)  # other known entities (kept clear by deletion synthesis)
    start: int = 0  # clip range in media frames, [start, end)
    end: int | None = None
    fps: float | None = None  # overrides the container's fps
    attributes: dict[str, Any] = field(default_factory=dict)
    eval_task: str | None = None  # eval split: "add" | "modify" | "delete"
    target: str | None = None  # eval split: ground-truth edited video, if known
    height: int | None = None  # the media's frame size, if recorded (saves probing the file for its bucket)
    width: int | None = None
    source: str = ""  # "manifest:line", for messages

    def to_json(self, base_dir: str | os.PathLike | None = None) -> dict[str, Any]:
        """The manifest line, with paths made relative to `base_dir` (the manifest's folder) when given."""

        def rel(p: str) -> str:
            return os.path.relpath(p, base_dir) if base_dir is not None else p

        out: dict[str, Any] = {"id": self.id, "kind": self.kind, "media": rel(self.media), "mask": rel(self.mask)}
        if self.captions:
            out["captions"] = list(self.captions)
        out["task"] = self.task
        if self.entity_masks:
            out["entity_masks"] = [rel(p) for p in self.entity_masks]
        if self.start:
            out["start"] = self.start
        if self.end is not None:
            out["end"] = self.end
        if self.fps is not None:
            out["fps"] = self.fps
        if self.attributes:
            out["attributes"] = self.attributes
        if self.eval_task is not None:
            out["eval_task"] = self.eval_task
        if self.target is not None:
            out["target"] = rel(self.target)
        if self.height is not None and self.width is not None:
            out["height"], out["width"] = self.height, self.width
        return out


def _bad(detail: str, sample_id: str | None, source: str, reason: str = "invalid_record") -> BadSample:
    return BadSample(reason, detail, sample_id=sample_id, path=source)


def _leaves_folder(path: str) -> bool:
    """True for a path that is absolute or climbs out of its base folder with "..": it may name any file."""
    norm = os.path.normpath(path)
    return os.path.isabs(path) or norm == os.pardir or norm.startswith(os.pardir + os.sep)


def parse_record(obj: Any, base_dir: str | os.PathLike, source: str = "", max_caption_chars: int = MAX_CAPTION_CHARS,
                 allow_absolute_paths: bool = False) -> Record:
    """Validate one manifest object and resolve its paths; BadSample("invalid_record" | "no_caption") otherwise.

    Paths must stay inside `base_dir` (no absolute path, no ".." out of it) unless `allow_absolute_paths`; every
    caption must be at most `max_caption_chars` characters."""
    if not isinstance(obj, dict):
        raise _bad(f"a record must be a JSON object, got {type(obj).__name__}", None, source)
    sid = obj.get("id")
    if not isinstance(sid, str) or not sid:
        raise _bad("missing or empty 'id' (a non-empty string)", None, source)
    unknown = sorted(set(obj) - _KNOWN_FIELDS)
    if unknown:
        raise _bad(f"unknown field {unknown[0]!r}", sid, source)
    kind = obj.get("kind")
    if kind not in KINDS:
        raise _bad(f"'kind' must be one of {list(KINDS)}, got {kind!r}", sid, source)
    task = obj.get("task", "add_modify")
    if task not in TASKS:
        raise _bad(f"'task' must be one of {list(TASKS)}, got {task!r}", sid, source)
    base = Path(base_dir)

    def resolve(name: str, value: str) -> str:
        if not allow_absolute_paths and _leaves_folder(value):
            raise _bad(f"'{name}' {value!r} leaves the manifest's folder (absolute or '..'); give a path inside it, "
                       f"or allow absolute paths (data.allow_absolute_paths, or the shard's header line)", sid, source)
        return value if os.path.isabs(value) else str(base / value)

    def path_field(name: str, required: bool = True) -> str | None:
        value = obj.get(name)
        if value is None and not required:
            return None
        if not isinstance(value, str) or not value:
            raise _bad(f"'{name}' must be a non-empty path string, got {value!r}", sid, source)
        return resolve(name, value)

    media = path_field("media")
    mask = path_field("mask")
    captions = obj.get("captions", [])
    if isinstance(captions, str):
        captions = [captions]
    if not isinstance(captions, list) or not all(isinstance(c, str) for c in captions) or len(captions) > 3:
        raise _bad(f"'captions' must be a list of one to three strings, got {captions!r}", sid, source)
    captions = [c.strip() for c in captions if c.strip()]
    for i, caption in enumerate(captions):
        if len(caption) > max_caption_chars:
            raise _bad(f"caption {i + 1} is {len(caption)} characters, over the limit of {max_caption_chars} "
                       "(data.max_caption_chars)", sid, source)
    if task == "add_modify" and not captions:
        raise _bad("add_modify record has no caption", sid, source, reason="no_caption")
    entity = obj.get("entity_masks", [])
    if not isinstance(entity, list) or not all(isinstance(p, str) and p for p in entity):
        raise _bad(f"'entity_masks' must be a list of paths, got {entity!r}", sid, source)
    start, end, fps = obj.get("start", 0), obj.get("end"), obj.get("fps")
    if not isinstance(start, int) or isinstance(start, bool) or start < 0:
        raise _bad(f"'start' must be an integer >= 0, got {start!r}", sid, source)
    if end is not None and (not isinstance(end, int) or isinstance(end, bool) or end <= start):
        raise _bad(f"'end' must be an integer > start ({start}), got {end!r}", sid, source)
    if fps is not None and (isinstance(fps, bool) or not isinstance(fps, (int, float)) or not math.isfinite(fps)
                            or fps <= 0):
        raise _bad(f"'fps' must be a finite number > 0, got {fps!r}", sid, source)
    attributes = obj.get("attributes", {})
    if not isinstance(attributes, dict):
        raise _bad(f"'attributes' must be an object, got {attributes!r}", sid, source)
    eval_task = obj.get("eval_task")
    if eval_task is not None and eval_task not in EVAL_TASKS:
        raise _bad(f"'eval_task' must be one of {list(EVAL_TASKS)}, got {eval_task!r}", sid, source)
    height, width = obj.get("height"), obj.get("width")
    if (height is None) != (width is None):
        raise _bad("'height' and 'width' go together: give both or neither", sid, source)
    for name, value in (("height", height), ("width", width)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
            raise _bad(f"'{name}' must be an integer > 0 (the media's frame size in pixels), got {value!r}", sid, source)
    return Record(
        id=sid, kind=kind, media=media, mask=mask, captions=captions, task=task,
        entity_masks=[resolve("entity_masks", p) for p in entity],
        start=start, end=end, fps=None if fps is None else float(fps), attributes=attributes,
        eval_task=eval_task, target=path_field("target", required=False), height=height, width=width,
        source=source,
    )


def expand_manifests(patterns: Iterable[str | os.PathLike]) -> list[Path]:
    """Manifest paths from paths or globs, in a stable order; FileNotFoundError for a pattern matching nothing."""
    out: list[Path] = []
    for pattern in patterns:
        pattern = str(pattern)
        matches = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
        if not matches or not all(Path(m).is_file() for m in matches):
            raise FileNotFoundError(f"manifest {pattern} not found")
        out += [Path(m) for m in matches]
    return out


def _header(obj: Any) -> dict[str, Any] | None:
    """The options of a header line, None for any other line; ValueError for a malformed header."""
    if not isinstance(obj, dict) or HEADER_KEY not in obj:
        return None
    options = obj[HEADER_KEY]
    if len(obj) != 1 or not isinstance(options, dict):
        raise ValueError(f"a header line is {{{HEADER_KEY!r}: {{...}}}} and nothing else")
    unknown = sorted(set(options) - _HEADER_FIELDS)
    if unknown:
        raise ValueError(f"unknown header option {unknown[0]!r}")
    if not isinstance(options.get("allow_absolute_paths", False), bool):
        raise ValueError("header option 'allow_absolute_paths' must be true or false")
    return options


def iter_manifest(path: str | os.PathLike, max_caption_chars: int = MAX_CAPTION_CHARS,
                  allow_absolute_paths: bool = False) -> Iterator[Record | BadSample]:
    """Each non-blank line of one shard as a Record, or a BadSample saying what is wrong with it (bytes that are
    not UTF-8 included). The first line may be a header (`HEADER_KEY`) allowing absolute paths for this shard."""
    path = Path(path)
    base = path.parent
    started = False  # a non-blank line was read: a header may only come first
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            source = f"{path}:{lineno}"
            first, started = not started, True
            try:
                obj = json.loads(raw.decode("utf-8"))
                header = _header(obj)
            except UnicodeDecodeError as err:
                yield _bad(f"not UTF-8 text: byte 0x{raw[err.start]:02x} at byte {err.start + 1} of the line", None,
                           source)
                continue
            except json.JSONDecodeError as err:
                yield _bad(f"not valid JSON: {err.msg} at column {err.colno}", None, source)
                continue
            except ValueError as err:  # a malformed header line
                yield _bad(str(err), None, source)
                continue
            if header is not None:
                if first:
                    allow_absolute_paths = allow_absolute_paths or header.get("allow_absolute_paths", False)
                else:
                    yield _bad("a header line must be the shard's first line", None, source)
                continue
            try:
                yield parse_record(obj, base, source, max_caption_chars, allow_absolute_paths)
            except BadSample as bad:
                yield bad


def read_manifests(patterns: Iterable[str | os.PathLike], max_caption_chars: int = MAX_CAPTION_CHARS,
                   allow_absolute_paths: bool = False) -> tuple[list[Record], list[BadSample]]:
    """All records of all shards, and every invalid line (including duplicate ids, which keep the first)."""
    return read_shards(expand_manifests(patterns), max_caption_chars, allow_absolute_paths)


def read_shards(paths: Iterable[str | os.PathLike], max_caption_chars: int = MAX_CAPTION_CHARS,
                allow_absolute_paths: bool = False) -> tuple[list[Record], list[BadSample]]:
    """The records of exactly these shard files (no globbing), and every invalid line (duplicate ids among
    them included, which keep the first). The limits are `parse_record`'s."""
    records: list[Record] = []
    bad: list[BadSample] = []
    for item in stream_shards(paths, max_caption_chars, allow_absolute_paths):
        (bad if isinstance(item, BadSample) else records).append(item)
    return records, bad


def stream_manifests(patterns: Iterable[str | os.PathLike], max_caption_chars: int = MAX_CAPTION_CHARS,
                     allow_absolute_paths: bool = False) -> Iterator[Record | BadSample]:
    """`read_manifests` one line at a time: memory does not grow with the records (16 bytes per id seen)."""
    return stream_shards(expand_manifests(patterns), max_caption_chars, allow_absolute_paths)


def stream_shards(paths: Iterable[str | os.PathLike], max_caption_chars: int = MAX_CAPTION_CHARS,
                  allow_absolute_paths: bool = False) -> Iterator[Record | BadSample]:
    """Each line of these shards as a Record or a BadSample (`iter_manifest`), a duplicate id (of any earlier
    line of these shards) as a BadSample naming where the id was first seen."""
    paths = [str(Path(p)) for p in paths]
    seen = SeenIds()
    for shard, path in enumerate(paths):
        for item in iter_manifest(path, max_caption_chars, allow_absolute_paths):
            if isinstance(item, BadSample):
                yield item
                continue
            first = seen.add(item.id, shard, int(item.source.rsplit(":", 1)[1]))
            if first is None:
                yield item
            else:
                yield _bad(f"duplicate id (first at {paths[first[0]]}:{first[1]})", item.id, item.source)


class SeenIds:
    """The ids seen so far and where each was first seen, in 16 bytes an id (a 64-bit digest and a (shard, line)
    pair in sorted NumPy arrays, new ids buffered in a small dict), so that duplicates are found in manifests
    too large to hold."""

    def __init__(self, buffer: int = 1 << 16):
        self._keys = np.empty(0, np.uint64)
        self._where = np.empty(0, np.int64)
        self._new: dict[int, int] = {}
        self._buffer = buffer

    @staticmethod
    def _key(sample_id: str) -> int:
        return int.from_bytes(hashlib.blake2b(sample_id.encode("utf-8"), digest_size=8).digest(), "little")

    def add(self, sample_id: str, shard: int, line: int) -> tuple[int, int] | None:
        """None if `sample_id` is new (it is remembered at (shard, line)), else where it was first seen."""
        key = self._key(sample_id)
        where = self._new.get(key)
        if where is None and len(self._keys):
            i = int(np.searchsorted(self._keys, np.uint64(key)))
            if i < len(self._keys) and int(self._keys[i]) == key:
                where = int(self._where[i])
        if where is not None:
            return where >> 32, where & 0xFFFFFFFF
        self._new[key] = (shard << 32) | line
        if len(self._new) >= self._buffer:
            self._merge()
        return None

    def _merge(self) -> None:
        keys = np.concatenate([self._keys, np.fromiter(self._new.keys(), np.uint64, len(self._new))])
        where = np.concatenate([self._where, np.fromiter(self._new.values(), np.int64, len(self._new))])
        order = np.argsort(keys, kind="stable")
        self._keys, self._where = keys[order], where[order]
        self._new = {}


def write_manifest(records: Iterable[Record], path: str | os.PathLike) -> Path:
    """Write one shard atomically, media paths relative to its folder. When a record names a file outside that
    folder, the shard starts with a header line allowing it (readers refuse such paths otherwise)."""
    path = Path(path)
    base = path.parent.resolve()
    lines = [record.to_json(base) for record in records]
    outside = any(_leaves_folder(p) for line in lines for p in _paths_of(line))
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            if outside:
                f.write(json.dumps({HEADER_KEY: {"allow_absolute_paths": True}}) + "\n")
            for line in lines:
                f.write(json.dumps(line, ensure_ascii=False) + "\n")
    return path


def _paths_of(line: dict[str, Any]) -> list[str]:
    """The file paths of one manifest line."""
    return [line["media"], line["mask"], *line.get("entity_masks", []), *([line["target"]] if "target" in line else [])]


def write_shards(records: list[Record], out_dir: str | os.PathLike, prefix: str, shard_size: int = 10000) -> list[Path]:
    """Split records into `<prefix>-00000.jsonl`, `<prefix>-00001.jsonl`, ... of at most `shard_size` lines."""
    out_dir = Path(out_dir)
    chunks = [records[i : i + shard_size] for i in range(0, len(records), shard_size)] or [[]]
    return [write_manifest(chunk, out_dir / f"{prefix}-{i:05d}.jsonl") for i, chunk in enumerate(chunks)]
