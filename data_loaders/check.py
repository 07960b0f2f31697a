"""Validate a data set before training (`vivid data check`): every record, every file it names.

Per record: the manifest fields; the media opens and its first and last clip frames decode; the mask has one
frame per media frame and the media's size and is not empty; entity masks likewise; an eval target opens; the
clip holds at least `frames` frames when asked. The manifests are streamed: memory does not grow with the number
of records (the report keeps counts and the first few bad records per reason; the full list goes to a file).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TextIO

import numpy as np

from vivid.io.masks import MaskSource
from vivid.io.video import VideoSource, video_info

from .decode import bad_samples, read_image
from .errors import BadSample
from .format import Record, stream_manifests

_MASK_CHUNK = 64


DONOR_MAX_COVER = 0.5  # a deletion donor's mask covers at most this share of the frame (over its clip)
EXAMPLES = 5  # bad records kept per reason in the report


@dataclass
class CheckReport:
    records: int = 0
    counts: Counter = field(default_factory=Counter)  # (kind, task) -> valid records
    donors: Counter = field(default_factory=Counter)  # kind -> valid add_modify records usable as deletion donors
    bad_counts: Counter = field(default_factory=Counter)  # reason -> bad records
    examples: dict[str, list[tuple[str, BadSample]]] = field(default_factory=dict)  # reason -> first EXAMPLES
    bad_list: TextIO | None = None  # every bad record, one "where: message" line each, when given

    @property
    def ok(self) -> bool:
        return not self.bad_counts

    @property
    def bad_total(self) -> int:
        return sum(self.bad_counts.values())

    @property
    def bad(self) -> list[tuple[str, BadSample]]:
        """The bad records kept (the first EXAMPLES per reason)."""
        return [item for items in self.examples.values() for item in items]

    def bad_by_reason(self) -> Counter:
        return Counter(self.bad_counts)

    def add_bad(self, where: str, bad: BadSample) -> None:
        self.bad_counts[bad.reason] += 1
        kept = self.examples.setdefault(bad.reason, [])
        if len(kept) < EXAMPLES:
            kept.append((where, bad))
        if self.bad_list is not None:
            self.bad_list.write(f"{where}: {bad.message}\n")


def _mask_cover(src: MaskSource, start: int, end: int) -> float:
    """The share of the frame the mask covers in any frame of [start, end) (0: empty in every frame)."""
    union = np.zeros((src.height, src.width), bool)
    for lo in range(start, end, _MASK_CHUNK):
        union |= src.read(np.arange(lo, min(end, lo + _MASK_CHUNK))).any(axis=0)
    return float(union.mean())


def _check_mask(path: str, count: int, h: int, w: int, record: Record, what: str, start: int, end: int) -> float:
    """The mask's cover (`_mask_cover`) of the clip; BadSample if it does not fit the media or is empty."""
    src = MaskSource(path)  # a MediaError becomes a BadSample in check_record
    if src.count != count:
        raise BadSample("length_mismatch", f"{what} has {src.count} frames, the media has {count}", record.id, path)
    if (src.height, src.width) != (h, w):
        raise BadSample("size_mismatch", f"{what} is {src.height}x{src.width}, the media is {h}x{w}", record.id, path)
    if what != "mask":
        return 0.0
    cover = _mask_cover(src, start, end)
    if cover == 0.0:
        raise BadSample("empty_mask", "mask is empty in every frame of the clip", record.id, path)
    return cover


def check_record(record: Record, frames: int | None = None) -> float:
    """Raise BadSample for the first problem of `record`; else return the share of the frame its mask covers over
    the clip."""
    try:
        with bad_samples(record.id):
            if record.kind == "image":
                h, w = read_image(record.media).shape[:2]
                count, start, end = 1, 0, 1
            else:
                video = VideoSource(record.media)
                count, h, w = video.num_frames, video.height, video.width
                start, end = record.start, min(record.end or count, count)
                if start >= count:
                    raise BadSample("no_frames", f"clip start {start} is past the video's {count} frames", record.id, record.media)
                if frames is not None and end - start < frames:
                    raise BadSample("too_short", f"clip holds {end - start} frames, {frames} needed", record.id, record.media)
                decoded = video.read([start, end - 1])
                if len(decoded) != 2:
                    raise BadSample("unreadable", "first/last clip frames could not be decoded", record.id, record.media)
            cover = _check_mask(record.mask, count, h, w, record, "mask", start, end)
            for path in record.entity_masks:
                _check_mask(path, count, h, w, record, "entity mask", start, end)
            if record.target is not None:
                tcount = 1 if record.kind == "image" else video_info(record.target, "target")[0]
                if record.kind == "image":
                    read_image(record.target)
                if tcount != count:
                    raise BadSample("length_mismatch", f"target has {tcount} frames, the media has {count}", record.id, record.target)
    except BadSample as bad:
        raise bad.with_context(record.id, record.media)
    return cover


def check_manifests(
    patterns: list[str], frames: int | None = None, progress: Callable[[int], None] | None = None,
    bad_list: TextIO | None = None,
) -> CheckReport:
    """Check every record of the manifests, streamed; every bad record is also written to `bad_list` if given."""
    report = CheckReport(bad_list=bad_list)
    for item in stream_manifests(patterns):
        report.records += 1
        if isinstance(item, BadSample):
            report.add_bad(item.path or "?", item)
        else:
            try:
                cover = check_record(item, frames)
                report.counts[(item.kind, item.task)] += 1
                if item.task == "add_modify" and cover <= DONOR_MAX_COVER:
                    report.donors[item.kind] += 1
            except BadSample as bad:
                report.add_bad(item.source, bad)
        if progress is not None:
            progress(report.records)
    return report
