"""The plan of a chained edit: which clips are edited, in which order, and where each one's keyframe comes from."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from vivid.io.files import read_json
from vivid.longvideo.boundaries import BoundaryPlan, check_clip_frames
from vivid.model.registry import spec_for


@dataclass(frozen=True)
class Clip:
    """One pipeline call. Source frames [start, stop] (inclusive) are fed in order, or reversed when `reverse`
    (backward propagation from a keyframe inside the first clip). `key` is where frame 0's keyframe comes
    from: "none" (a plain edit), "given" (the first shot's keyframe), "previous" (the previous clip's last
    edited frame), "joint" (`--long-mode parallel`'s jointly edited keyframes). `last_key`: where the keyframe
    of its last frame comes from: "none", or "joint" (a clip between two keyframes). `anchor_only`: the
    single-frame edit that makes the first shot's keyframe (writes nothing). The clip writes source frames
    [write_start, write_stop] to the output."""

    index: int
    start: int
    stop: int
    key: str = "none"
    reverse: bool = False
    anchor_only: bool = False
    write_start: int = 0
    write_stop: int = -1
    last_key: str = "none"

    @property
    def order(self) -> list[int]:
        frames = list(range(self.start, self.stop + 1))
        return frames[::-1] if self.reverse else frames

    @property
    def num_frames(self) -> int:
        return self.stop - self.start + 1


@dataclass
class ClipPlan:
    num_frames: int
    max_frames: int
    clips: list[Clip]
    cuts: list[int] = field(default_factory=list)
    boundaries: list[int] = field(default_factory=list)
    anchor: int = 0

    def to_json(self) -> dict:
        return {
            "num_frames": self.num_frames, "max_frames": self.max_frames, "cuts": self.cuts,
            "boundaries": self.boundaries, "anchor": self.anchor, "clips": [asdict(c) for c in self.clips],
        }

    @classmethod
    def from_json(cls, d: dict) -> "ClipPlan":
        return cls(
            num_frames=d["num_frames"], max_frames=d["max_frames"], cuts=list(d["cuts"]),
            boundaries=list(d["boundaries"]), anchor=d["anchor"], clips=[Clip(**c) for c in d["clips"]],
        )

    def seams(self) -> list[int]:
        """Frames t where output pair (t, t+1) comes from two clips carried over by a keyframe (not a hard cut):
        what `vivid.metrics.boundary.boundary_tc` compares against the pairs inside clips."""
        return sorted(c.start for c in self.clips if not c.reverse and not c.anchor_only and c.write_start == c.start + 1)


def _windows(start: int, last: int, max_frames: int, boundaries: Sequence[int]) -> list[tuple[int, int]]:
    """Clips covering [start, last] that share boundary frames, split at `boundaries` and at `max_frames`."""
    windows = []
    stops = sorted(b for b in set(boundaries) if start < b < last) + [last]
    s = start
    for b in stops:
        while b - s + 1 > max_frames:
            windows.append((s, s + max_frames - 1))
            s += max_frames - 1
        if b > s or not windows:
            windows.append((s, b))
        s = b
    return windows


def plan_clips(
    num_frames: int,
    max_frames: int,
    boundaries: BoundaryPlan | None = None,
    anchor: int = 0,
    keyframe_given: bool = False,
) -> ClipPlan:
    """The clips of a long edit. `anchor` is the frame the first shot's keyframe shows (0 = first frame);
    when `keyframe_given` is False and anchor > 0, that frame is edited alone first (an `anchor_only` clip)."""
    check_clip_frames(max_frames)
    boundaries = boundaries or BoundaryPlan()
    edges = [0, *sorted(c for c in set(boundaries.cuts) if 0 < c < num_frames), num_frames]
    if not 0 <= anchor < edges[1]:
        raise ValueError(f"keyframe frame {anchor} is outside the first shot (frames 0..{edges[1] - 1})")
    if anchor > max_frames - 1:
        raise ValueError(f"keyframe frame {anchor} must lie in the first clip (frames 0..{max_frames - 1})")
    clips: list[Clip] = []

    for shot, (seg_start, seg_stop) in enumerate(zip(edges[:-1], edges[1:])):
        last = seg_stop - 1
        first_key = "given" if shot == 0 and (keyframe_given or anchor > 0) else "none"
        begin = seg_start
        if shot == 0 and anchor > 0:
            if not keyframe_given:
                clips.append(Clip(len(clips), anchor, anchor, "none", anchor_only=True, write_start=anchor + 1, write_stop=anchor))
            clips.append(Clip(len(clips), 0, anchor, "given", reverse=True, write_start=0, write_stop=anchor))
            begin = anchor
        if begin == last and shot == 0 and anchor > 0:
            continue
        for i, (s, e) in enumerate(_windows(begin, last, max_frames, boundaries.boundaries)):
            if i == 0:
                skip = shot == 0 and anchor > 0
                clips.append(Clip(len(clips), s, e, first_key, write_start=s + 1 if skip else s, write_stop=e))
            else:
                clips.append(Clip(len(clips), s, e, "previous", write_start=s + 1, write_stop=e))
    plan = ClipPlan(num_frames, max_frames, clips, list(boundaries.cuts), [], anchor)
    plan.boundaries = plan.seams()
    return plan


CLIP_PLAN_NAME = "clips.json"


def default_work_dir(out: str | os.PathLike) -> Path:
    """Where an edit keeps its finished clips and state unless told: `<out>.work` beside the output."""
    out = Path(out)
    return out.parent / f"{out.name}.work"


def clip_plan_path(work: str | os.PathLike) -> Path:
    """The JSON a chained edit writes in its work folder: its clips, cuts and seams (for the boundary metric);
    kept with the work folder (`keep_work`)."""
    return Path(work) / CLIP_PLAN_NAME


def load_clip_plan(path: str | os.PathLike) -> ClipPlan:
    """The clip plan of a chained edit: its `clips.json`, its work folder, or its output (then the default work
    folder beside it)."""
    path = Path(path)
    if path.is_dir():
        path = clip_plan_path(path)
    elif path.suffix != ".json":
        path = clip_plan_path(default_work_dir(path))
    return ClipPlan.from_json(read_json(path, "clip plan"))


def model_clip_frames(transformer: Any) -> int:
    """The model's clip length (frames, 4k+1), by its base's rule (`ModelSpecification.clip_frames`: CogVideoX's
    `sample_frames`, Wan2.1's 81)."""
    return spec_for(transformer).clip_frames(transformer)
