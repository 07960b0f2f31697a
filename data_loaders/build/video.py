"""One video through the per-video stages: shots -> entities and masks -> filters -> captions -> images.

Everything lands in `<out>/videos/<video id>/`; each stage first looks for its output there and reuses it
(`shots.json` with the clip videos, `cNNN/entities.json` with the mask files, `cNNN/captions.json`, the keyframe
images), so a video interrupted half way redoes only what is missing. The filters are recomputed every time
(cheap). The result, `video.json`, is written last and atomically: it marks the video finished and holds its
records, the donors for the deletion stage, its counts, drops and seconds per stage.

A video that cannot be decoded is recorded as failed (and named in the summary); a model that fails on one clip
drops that clip (`model_error`) and the video goes on.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vivid.io.atomic import write_json_atomic
from vivid.io.files import MediaError, error_line
from vivid.io.masks import MaskSource, write_mask_npz
from vivid.io.video import VideoSource
from vivid.segmentation.sam import Entity

from ..errors import BadSample
from ..format import Record
from .caption import entity_crop
from .config import BuildConfig
from .filters import entity_drop_reason, is_static, keyframe_index, mean_motion
from .images import write_keyframe_sample
from .inputs import InputVideo
from .shots import ShotPlan, plan_shots, read_clip_frames, write_clip

logger = logging.getLogger("data_loaders.build")

OUTCOME = "video.json"


@dataclass
class Models:
    segmenter: Any  # callable (frames, prompts, keyframe) -> list[Entity]
    captioner: Any  # data_loaders.build.caption.Captioner


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def read_mask_file(path: str | Path) -> np.ndarray:
    src = MaskSource(str(path))
    return src.read(np.arange(src.count))


class _Timer:
    def __init__(self) -> None:
        self.seconds: Counter = Counter()

    def stage(self, name: str):
        timer = self

        class _Block:
            def __enter__(self):
                self.t = time.perf_counter()

            def __exit__(self, *exc):
                timer.seconds[name] += time.perf_counter() - self.t

        return _Block()


def shots_stage(video: InputVideo, folder: Path, config: BuildConfig) -> ShotPlan:
    """shots.json and the clip videos (reused when shots.json exists, written after the clips)."""
    path = folder / "shots.json"
    if path.is_file():
        plan = ShotPlan.from_json(read_json(path))
        if all((folder / c.file).is_file() for c in plan.clips):
            return plan
    plan = plan_shots(video.path, config.shots)
    for clip in plan.clips:
        frames = read_clip_frames(video.path, plan, clip)
        plan.motion[clip.name] = mean_motion(frames)
        write_clip(frames, folder / clip.file, plan.clip_fps)
    write_json_atomic(path, plan.to_json(), indent=1)
    return plan


def entities_stage(frames: np.ndarray, clip_dir: Path, config: BuildConfig, models: Models) -> list[Entity]:
    """cNNN/entities.json and one packed mask per entity (reused when entities.json exists)."""
    path = clip_dir / "entities.json"
    if path.is_file():
        return [Entity(read_mask_file(clip_dir / e["mask"]), e["label"], e["score"]) for e in read_json(path)]
    if config.entities.prompt_source == "captioner":
        prompts = models.captioner.objects(frames[len(frames) // 2], config.entities.max_prompts)
        prompts = prompts or list(config.entities.vocabulary)
    else:
        prompts = list(config.entities.vocabulary)
    entities = models.segmenter(frames, prompts, len(frames) // 2)
    listing = []
    for k, e in enumerate(entities):
        write_mask_npz(clip_dir / f"e{k:02d}.npz", e.mask)
        listing.append({"mask": f"e{k:02d}.npz", "label": e.label, "score": round(float(e.score), 6)})
    write_json_atomic(path, listing, indent=1)
    return entities


def captions_stage(frames: np.ndarray, kept: dict[int, Entity], clip_dir: Path, models: Models,
                   config: BuildConfig) -> dict[int, list[str]]:
    """cNNN/captions.json: the captions of each kept entity (only the missing ones are made)."""
    path = clip_dir / "captions.json"
    cache = {int(k): v for k, v in read_json(path).items()} if path.is_file() else {}
    missing = [k for k in kept if k not in cache]
    for k in missing:
        e = kept[k]
        key = keyframe_index(e.mask)
        cache[k] = models.captioner.captions(entity_crop(frames[key], e.mask[key], config.captions.crop_margin))
    if missing:
        write_json_atomic(path, {str(k): v for k, v in sorted(cache.items())}, indent=1)
    return {k: cache[k] for k in kept}


def process_video(video: InputVideo, out: Path, config: BuildConfig, models: Models, process: int = 0) -> dict:
    """Run the per-video stages and write `video.json` (which names the `process` that built it); returns its
    content."""
    folder = out / "videos" / video.id
    folder.mkdir(parents=True, exist_ok=True)
    timer = _Timer()
    drops: Counter = Counter()
    records: list[Record] = []
    donors: list[dict] = []
    deletion_clips: list[dict] = []
    errors: list[str] = []
    outcome = {"id": video.id, "source": video.path.name, "status": "done", "error": None, "process": process}
    try:
        with timer.stage("shots"):
            plan = shots_stage(video, folder, config)
    except (MediaError, BadSample, OSError) as err:
        outcome.update(status="failed", error=f"unreadable: {error_line(err)}")
        logger.warning("%s: %s", video.path, outcome["error"])
        write_json_atomic(folder / OUTCOME, outcome, indent=1)
        return outcome
    drops["shot_too_short"] += plan.too_short
    clips_used = 0
    for clip in plan.clips:
        if is_static(plan.motion.get(clip.name, 0.0), config.filters):
            drops["static_clip"] += 1
            continue
        clip_dir = folder / clip.name
        clip_dir.mkdir(exist_ok=True)
        media = folder / clip.file
        try:
            with timer.stage("segment"):
                frames = VideoSource(str(media)).read(np.arange(len(clip.source_frames)))
                entities = entities_stage(frames, clip_dir, config, models)
        except (MediaError, BadSample) as err:
            drops["model_error"] += 1
            errors.append(f"{clip.name}: {error_line(err)}")
            continue
        except Exception as err:  # a model failing on this clip: skip the clip, keep the video going
            drops["model_error"] += 1
            errors.append(f"{clip.name}: {type(err).__name__}: {error_line(err)}")
            logger.warning("%s %s: the segmenter failed: %s", video.path.name, clip.name, error_line(err))
            continue
        clips_used += 1
        if not entities:
            drops["no_entities"] += 1
            continue
        with timer.stage("filters"):
            kept: dict[int, Entity] = {}
            for k, e in enumerate(entities):
                reason = entity_drop_reason(e.mask, config.filters)
                if reason:
                    drops[reason] += 1
                else:
                    kept[k] = e
        if not kept:
            continue
        try:
            with timer.stage("captions"):
                captions = captions_stage(frames, kept, clip_dir, models, config)
        except Exception as err:
            drops["model_error"] += 1
            errors.append(f"{clip.name}: captioner {type(err).__name__}: {error_line(err)}")
            logger.warning("%s %s: the captioner failed: %s", video.path.name, clip.name, error_line(err))
            continue
        captioned = {k: e for k, e in kept.items() if captions.get(k)}
        drops["no_caption"] += len(kept) - len(captioned)
        mask_files = {k: clip_dir / f"e{k:02d}.npz" for k in captioned}
        for k in captioned:
            donors.append({"clip": clip.name, "mask": str(mask_files[k])})
        records += _entity_records(video, clip, clip_dir, media, plan.clip_fps, frames, captioned, captions, config,
                                   timer)
        if captioned:
            deletion_clips.append(_deletion_clip(clip, media, entities, mask_files, plan.clip_fps))
    entity_records = [r for r in records if r.kind == "video"]
    outcome.update(
        status="done" if records else "no_entities",
        error=None if records else ("; ".join(errors[:3]) if errors else None),
        clips=clips_used, entities=len(entity_records), images=len(records) - len(entity_records),
        drops={k: v for k, v in drops.items() if v}, errors=errors,
        records=[r.to_json(out) for r in records],
        donors=[{**d, "mask": _rel(d["mask"], out)} for d in donors],
        deletion_clips=[{**c, "media": _rel(c["media"], out), "known": _rel(c["known"], out),
                         "entity_masks": [_rel(p, out) for p in c["entity_masks"]]} for c in deletion_clips],
        timings={k: round(v, 4) for k, v in timer.seconds.items()},
    )
    write_json_atomic(folder / OUTCOME, outcome, indent=1)
    return outcome


def _entity_records(video: InputVideo, clip, clip_dir: Path, media: Path, fps: float, frames: np.ndarray,
                    captioned: dict[int, Entity], captions: dict[int, str], config: BuildConfig,
                    timer: _Timer) -> list[Record]:
    """A clip's captioned entities as records: one video record each (its mask `e{k}.npz` in the clip's folder,
    the others as `entity_masks`), plus its keyframe as an image sample where images are enabled."""
    mask_files = {k: clip_dir / f"e{k:02d}.npz" for k in captioned}
    records: list[Record] = []
    for k, e in captioned.items():
        attributes = {"label": e.label, "score": round(float(e.score), 4), "source": video.path.name,
                      "source_frames": [clip.source_frames[0], clip.source_frames[-1]]}
        rid = f"{video.id}/{clip.name}/e{k:02d}"
        records.append(Record(rid, "video", str(media), str(mask_files[k]), captions[k],
                              entity_masks=[str(p) for j, p in mask_files.items() if j != k],
                              fps=fps, attributes=attributes))
        if config.images.enabled:
            with timer.stage("images"):
                key = keyframe_index(e.mask)
                others = np.zeros_like(e.mask[key])
                for j, other in captioned.items():
                    if j != k:
                        others |= other.mask[key]
                records.append(write_keyframe_sample(f"{rid}/key", frames[key], e.mask[key], others,
                                                     clip_dir / f"e{k:02d}_key", captions[k],
                                                     {**attributes, "frame": int(key)}))
    return records


def _deletion_clip(clip, media: Path, entities: list[Entity], mask_files: dict[int, Path], fps: float) -> dict:
    """A clip that deletion synthesis may paste donors into: its media, the union of every entity found in it
    (`known.npz`, where no donor may land) and its entity masks."""
    known = np.zeros_like(entities[0].mask)
    for e in entities:
        known |= e.mask
    known_path = mask_files[next(iter(mask_files))].parent / "known.npz"
    if not known_path.is_file():
        write_mask_npz(known_path, known)
    return {"clip": clip.name, "media": str(media), "known": str(known_path),
            "entity_masks": [str(p) for p in mask_files.values()], "fps": fps}


def _rel(path: str | Path, out: Path) -> str:
    return Path(path).resolve().relative_to(out.resolve()).as_posix()

