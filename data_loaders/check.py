"""Validate a data set before training (`vivid data check`): every record, every file it names.

Per record: the manifest fields; the media opens and its first and last clip frames decode; the mask has one
frame per media frame and the media's size and is not empty; entity masks likewise; an eval target opens; the
clip holds at least `frames` frames when asked.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from vivid.io.masks import MaskSource
from vivid.io.video import VideoSource, video_info

from .decode import bad_samples, read_image
from .errors import BadSample
from .format import Record, read_manifests

_MASK_CHUNK = 64


@dataclass
class CheckReport:
    records: int = 0
    counts: Counter = field(default_factory=Counter)  # (kind, task) -> valid records
    bad: list[tuple[str, BadSample]] = field(default_factory=list)  # (manifest:line, problem)

    @property
    def ok(self) -> bool:
        return not self.bad

    def bad_by_reason(self) -> Counter:
        return Counter(b.reason for _, b in self.bad)


def _mask_nonempty(src: MaskSource, start: int, end: int) -> bool:
    for lo in range(start, end, _MASK_CHUNK):
        if src.read(np.arange(lo, min(end, lo + _MASK_CHUNK))).any():
            return True
    return False


def _check_mask(path: str, count: int, h: int, w: int, record: Record, what: str, start: int, end: int) -> None:
    src = MaskSource(path)  # a MediaError becomes a BadSample in check_record
    if src.count != count:
        raise BadSample("length_mismatch", f"{what} has {src.count} frames, the media has {count}", record.id, path)
    if (src.height, src.width) != (h, w):
        raise BadSample("size_mismatch", f"{what} is {src.height}x{src.width}, the media is {h}x{w}", record.id, path)
    if what == "mask" and not _mask_nonempty(src, start, end):
        raise BadSample("empty_mask", "mask is empty in every frame of the clip", record.id, path)


def check_record(record: Record, frames: int | None = None) -> None:
    """Raise BadSample for the first problem of `record`."""
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
            _check_mask(record.mask, count, h, w, record, "mask", start, end)
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


def check_manifests(
    patterns: list[str], frames: int | None = None, progress: Callable[[int], None] | None = None
) -> CheckReport:
    records, invalid = read_manifests(patterns)
    report = CheckReport(records=len(records) + len(invalid))
    report.bad += [(b.path or "?", b) for b in invalid]
    for i, record in enumerate(records):
        try:
            check_record(record, frames)
            report.counts[(record.kind, record.task)] += 1
        except BadSample as bad:
            report.bad.append((record.source, bad))
        if progress is not None:
            progress(i + 1)
    return report
