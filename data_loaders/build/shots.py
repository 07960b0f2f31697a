"""Shots stage: split a video at hard cuts, drop shots shorter than one clip, cut long shots into clips.

Hard cuts come from the project's cut detection (`vivid.longvideo.boundaries.detect_hard_cuts`: whole-frame colour
histograms and single-frame collapses of patch similarity), computed in one streamed pass over every source frame.
A clip is `shots.frames` frames sampled at `shots.fps` inside one shot (never across a cut); it is written as its
own video at that rate and at most `shots.max_side` pixels on its longer side, so the trainer reads it with a
stride of 1 and the masks are made at the clip's own size.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from vivid.longvideo.boundaries import BoundaryConfig, compute_features, detect_hard_cuts
from vivid.io.resize import cover_geometry
from vivid.io.video import VideoSource, iter_video_chunks, video_info, write_video

from .config import ShotsConfig

_CHUNK = 64  # frames decoded at a time for the cut detection (memory does not grow with the video)


@dataclass
class ShotClip:
    index: int
    shot: int
    source_frames: list[int]  # indices into the source video, one per clip frame
    file: str  # the clip video, relative to the video's folder

    @property
    def name(self) -> str:
        return f"c{self.index:03d}"


@dataclass
class ShotPlan:
    source_fps: float
    source_frames: int
    clip_fps: float  # the rate the clips are written with (the source's when it is below shots.fps)
    height: int  # size of the written clips
    width: int
    cuts: list[int] = field(default_factory=list)
    shots: list[tuple[int, int]] = field(default_factory=list)  # [start, stop) in source frames
    clips: list[ShotClip] = field(default_factory=list)
    too_short: int = 0  # shots dropped as shorter than one clip
    motion: dict[str, float] = field(default_factory=dict)  # clip name -> mean frame difference (filters.min_motion)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "ShotPlan":
        data = dict(data)
        data["clips"] = [ShotClip(**c) for c in data["clips"]]
        data["shots"] = [tuple(s) for s in data["shots"]]
        return cls(**data)


def shots_from_cuts(cuts: list[int], frame_count: int) -> list[tuple[int, int]]:
    edges = [0, *sorted(c for c in set(cuts) if 0 < c < frame_count), frame_count]
    return [(a, b) for a, b in zip(edges[:-1], edges[1:]) if b > a]


def clip_stride(source_fps: float, fps: float) -> float:
    """Source frames per clip frame: source fps / clip fps, at least 1 (a slower source keeps every frame)."""
    return max(1.0, source_fps / fps) if source_fps > 0 else 1.0


def sample_clips(start: int, stop: int, stride: float, frames: int, max_clips: int) -> list[list[int]]:
    """Source-frame indices of the clips of one shot [start, stop): consecutive, non-overlapping runs of `frames`
    frames `stride` apart; none when the shot holds fewer than `frames` samples."""
    samples = int(np.floor((stop - 1 - start) / stride)) + 1 if stop > start else 0
    out = []
    for k in range(min(samples // frames, max_clips)):
        out.append([min(stop - 1, start + int(round((k * frames + i) * stride))) for i in range(frames)])
    return out


def clip_size(height: int, width: int, max_side: int) -> tuple[int, int]:
    """The clip size: scaled down to `max_side` on the longer side (never up), even (H.264 4:2:0)."""
    scale = min(1.0, max_side / max(height, width))
    return max(2, int(round(height * scale / 2)) * 2), max(2, int(round(width * scale / 2)) * 2)


def detect_cuts(path: str | Path, config: ShotsConfig, frame_count: int) -> list[int]:
    boundary = BoundaryConfig(cut_similarity=config.cut_similarity, cut_contrast=config.cut_contrast)
    chunks = ((chunk, None) for chunk in iter_video_chunks(path, _CHUNK))
    features = compute_features(chunks, boundary, num_frames=frame_count)
    return detect_hard_cuts(features, boundary)


def plan_shots(path: str | Path, config: ShotsConfig) -> ShotPlan:
    """Cuts, shots and clips of one video (no clip is written). MediaError for an unreadable video."""
    count, fps, h, w = video_info(path)
    cuts = detect_cuts(path, config, count)
    height, width = clip_size(h, w, config.max_side)
    stride = clip_stride(fps, config.fps)
    plan = ShotPlan(source_fps=fps, source_frames=count, clip_fps=(fps / stride) if fps > 0 else config.fps,
                    height=height, width=width, cuts=cuts, shots=shots_from_cuts(cuts, count))
    for s, (a, b) in enumerate(plan.shots):
        runs = sample_clips(a, b, stride, config.frames, config.max_clips_per_shot)
        if not runs:
            plan.too_short += 1
        for run in runs:
            index = len(plan.clips)
            plan.clips.append(ShotClip(index=index, shot=s, source_frames=run, file=f"c{index:03d}.mp4"))
    return plan


def read_clip_frames(path: str | Path, plan: ShotPlan, clip: ShotClip) -> np.ndarray:
    """uint8 (F, H, W, 3): the clip's source frames at the clip size."""
    source = VideoSource(path)
    return source.read_resized(clip.source_frames, cover_geometry(source.height, source.width, plan.height, plan.width))


def write_clip(frames: np.ndarray, out: Path, fps: float) -> Path:
    """The clip as its own video (H.264, written atomically)."""
    return write_video(out, frames, fps)
