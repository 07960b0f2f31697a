"""The output of a chained edit: the finished clips streamed into one video (or, for an image, its one frame)."""

from __future__ import annotations

from pathlib import Path

from vivid.io.files import is_image_path
from vivid.io.images import write_image
from vivid.io.video import VideoWriter, read_video
from vivid.longvideo.plan import ClipPlan
from vivid.longvideo.state import clip_files


def assemble(plan: ClipPlan, work: Path, out: Path, fps: float, lossless: bool) -> None:
    """Stream the finished clips into the output video, or write the one frame of an image edit to an image `out`
    (atomic: the file appears complete or not at all)."""
    if is_image_path(out):
        if plan.num_frames != 1:
            raise ValueError(f"an image is written to {out}, but the edit has {plan.num_frames} frames")
        frames, _ = read_video(clip_files(work, plan.clips[-1].index)[0], what="finished clip")
        write_image(out, frames[0])
        return
    written = 0
    with VideoWriter(out, fps, lossless=lossless) as writer:
        for clip in plan.clips:
            if clip.write_stop < clip.write_start:
                continue
            if clip.write_start != written:
                raise RuntimeError(f"clip plan writes frame {clip.write_start} after {written - 1} (internal error)")
            frames, _ = read_video(clip_files(work, clip.index)[0], what="finished clip")
            writer.write(frames)
            written += len(frames)
    if written != plan.num_frames:
        raise RuntimeError(f"assembled {written} frames, expected {plan.num_frames} (internal error)")
