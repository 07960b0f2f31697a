"""A synthetic data set in the training format: moving coloured shapes on moving textured backgrounds.

The vocabulary (colours, shapes, motions, sizes, captions) is `vivid.synthetic_world`'s, which the tiny model's
tokenizer and the synthetic text-alignment metric also use. Backgrounds are muted (low saturation), so the
palette colours of the shapes stand out.

Train split: videos with one target shape (its mask is the entity mask, drawn on top) and up to two distractor
shapes (their union is written as `entity_masks`, so deletion synthesis keeps clear of them); images likewise,
static. Eval split: videos for each task, with ground truth rendered from the same scene:
- add: the source lacks the target shape; mask = its per-frame bounding box (grown 2 px); target = with it;
- modify: the source has shape A; the caption and `attributes` name a shape B of another colour and shape on
  A's trajectory; mask = per-frame box around A and B (grown 2 px); target = with B;
- delete: the source has A; mask = A's mask grown 2 px; target = without A; `attributes` name A.
Videos are written lossless (exact colours), masks as packed .npz, images and image masks as PNG.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from vivid.io.images import write_image
from vivid.io.masks import write_mask_npz
from vivid.io.video import write_video
from vivid.segmentation.shaping import bounding_box, dilate
from vivid.synthetic_world import COLORS, MOTIONS, SHAPES, SIZES, captions_for

from .format import Record, write_shards

# Shape radius as a fraction of the shorter side. At 64x96 with CogVideoX's 8x VAE a large shape spans about 5
# latent cells and a small one 3: what tells a circle from a square or a triangle in a box must be whole cells
# (at 0.12 / 0.2, 2-3 cells, the tiny model learnt colours but never shapes).
SIZE_FRACTION = {"small": 0.18, "large": 0.3}
TRAVEL_FRACTION = 0.2  # how far a shape moves over a clip, as a fraction of the frame side it moves along
# Entities never overlap: their bounding boxes stay ENTITY_GAP px apart in every frame (a distractor that finds no
# such place in PLACEMENT_TRIES draws is left out). So a box around one entity, grown by up to ENTITY_GAP - 1 px,
# holds only it and background, and what an add/modify edit must paint there is told by the caption alone. (With
# overlaps the box also hid part of a neighbour; the demo's held-out add edits matched 0.13 of the time, 0.44
# without.)
ENTITY_GAP = 4
PLACEMENT_TRIES = 20


@dataclass
class Entity:
    color: str
    shape: str
    size: str
    motion: str | None
    centers: np.ndarray  # (F, 2) float (x, y)
    radius: float

    @property
    def attributes(self) -> dict[str, str]:
        out = {"color": self.color, "shape": self.shape, "size": self.size}
        if self.motion is not None:
            out["motion"] = self.motion
        return out

    def captions(self) -> list[str]:
        return captions_for(self.color, self.shape, self.motion, self.size)


def _draw(canvas: np.ndarray, shape: str, center: np.ndarray, radius: float, value) -> None:
    """Filled shape at sub-pixel precision (cv2 shift = 4 fractional bits)."""
    s = 16
    cx, cy = center
    if shape == "circle":
        cv2.circle(canvas, (round(cx * s), round(cy * s)), round(radius * s), value, -1, cv2.LINE_8, 4)
        return
    if shape == "square":
        half = radius * 0.886  # same area as the circle
        pts = [(cx - half, cy - half), (cx + half, cy - half), (cx + half, cy + half), (cx - half, cy + half)]
    elif shape == "triangle":  # apex up, inscribed in the circle
        pts = [(cx, cy - radius), (cx - radius * 0.866, cy + radius * 0.5), (cx + radius * 0.866, cy + radius * 0.5)]
    else:
        raise ValueError(f"unknown shape {shape!r}; the synthetic world has {', '.join(SHAPES)}")
    cv2.fillPoly(canvas, [np.round(np.array(pts) * s).astype(np.int32)], value, cv2.LINE_8, 4)


def entity_masks(entity: Entity, height: int, width: int) -> np.ndarray:
    out = np.zeros((len(entity.centers), height, width), np.uint8)
    for t, c in enumerate(entity.centers):
        _draw(out[t], entity.shape, c, entity.radius, 1)
    return out.view(bool)


def background(rng: np.random.Generator, frames: int, height: int, width: int) -> np.ndarray:
    """A muted two-tone texture (smooth blobs, stripes, grain) panned by a constant velocity: (F, H, W, 3)."""
    vx, vy = rng.uniform(-1.0, 1.0, size=2) * max(1.0, min(height, width) / 64)
    pad = int(np.ceil(max(abs(vx), abs(vy)) * frames)) + 2
    ch, cw = height + 2 * pad, width + 2 * pad
    blobs = cv2.resize(rng.random((max(2, ch // 12), max(2, cw // 12))).astype(np.float32), (cw, ch), interpolation=cv2.INTER_CUBIC)
    yy, xx = np.mgrid[0:ch, 0:cw].astype(np.float32)
    angle, freq = rng.uniform(0, np.pi), rng.uniform(0.15, 0.4)
    stripes = 0.5 + 0.5 * np.sin(freq * (xx * np.cos(angle) + yy * np.sin(angle)))
    tex = np.clip(0.6 * blobs + 0.4 * stripes + rng.normal(0, 0.04, (ch, cw)), 0, 1)[..., None]
    grey_a, grey_b = rng.uniform(60, 110), rng.uniform(140, 200)
    tint_a, tint_b = rng.uniform(-15, 15, size=3), rng.uniform(-15, 15, size=3)  # saturation stays < 40
    canvas = (grey_a + tint_a) * (1 - tex) + (grey_b + tint_b) * tex
    canvas = np.clip(canvas, 0, 255).astype(np.uint8)
    out = np.empty((frames, height, width, 3), np.uint8)
    for t in range(frames):
        oy, ox = pad + round(vy * t), pad + round(vx * t)
        out[t] = canvas[oy : oy + height, ox : ox + width]
    return out


def _random_entity(
    rng: np.random.Generator, frames: int, height: int, width: int, color: str, shape: str, moving: bool,
    motion: str | None = None, size: str | None = None,
) -> Entity:
    size = size or str(rng.choice(SIZES))
    radius = SIZE_FRACTION[size] * min(height, width)
    motion = (motion or str(rng.choice(list(MOTIONS)))) if moving else None
    dx, dy = MOTIONS[motion] if motion else (0.0, 0.0)
    travel = TRAVEL_FRACTION * (width if dx else height) if motion else 0.0
    lo = np.array([radius + 1, radius + 1])
    hi = np.array([width - radius - 1, height - radius - 1])
    direction = np.array([dx, dy])
    start_lo = lo - np.minimum(direction * travel, 0)
    start_hi = hi - np.maximum(direction * travel, 0)
    start = rng.uniform(start_lo, np.maximum(start_lo, start_hi))
    steps = np.linspace(0, 1, frames)[:, None] if frames > 1 else np.zeros((1, 1))
    return Entity(color, shape, size, motion, start + steps * direction * travel, radius)


def render(bg: np.ndarray, entities: list[Entity]) -> np.ndarray:
    """Entities painted over the background in order (the last on top)."""
    frames = bg.copy()
    for e in entities:
        for t in range(len(frames)):
            _draw(frames[t], e.shape, e.centers[t], e.radius, COLORS[e.color])
    return frames


def _pick_combo(rng: np.random.Generator, exclude_colors: set[str]) -> tuple[str, str]:
    colors = [c for c in COLORS if c not in exclude_colors] or list(COLORS)
    return str(rng.choice(colors)), str(rng.choice(SHAPES))


def _scene(rng: np.random.Generator, frames: int, h: int, w: int, moving: bool, max_distractors: int = 2):
    bg = background(rng, frames, h, w) if moving else background(rng, 1, h, w)
    color, shape = _pick_combo(rng, set())
    target = _random_entity(rng, len(bg), h, w, color, shape, moving)
    distractors = []
    used = {color}
    for _ in range(int(rng.integers(0, max_distractors + 1))):
        c, s = _pick_combo(rng, used)
        for _ in range(PLACEMENT_TRIES):
            candidate = _random_entity(rng, len(bg), h, w, c, s, moving)
            if all(_apart(candidate, e) for e in [target, *distractors]):
                used.add(c)
                distractors.append(candidate)
                break
    return bg, target, distractors


def _apart(a: Entity, b: Entity) -> bool:
    """Whether the two entities' bounding boxes stay ENTITY_GAP pixels apart in every frame."""
    reach = a.radius + b.radius + ENTITY_GAP
    gap = np.abs(a.centers - b.centers)  # (frames, 2): |dx|, |dy| between centres
    return bool(((gap[:, 0] >= reach) | (gap[:, 1] >= reach)).all())


@dataclass
class SynthResult:
    train_manifests: list[Path]
    eval_manifests: list[Path]
    counts: dict[str, int] = field(default_factory=dict)


def _others_mask(distractors: list[Entity], frames: int, h: int, w: int) -> np.ndarray:
    out = np.zeros((frames, h, w), bool)
    for d in distractors:
        out |= entity_masks(d, h, w)
    return out


def write_synthetic_dataset(
    out_dir: str | os.PathLike,
    videos: int = 32,
    images: int = 64,
    size: tuple[int, int] = (64, 96),
    frames: int = 9,
    seed: int = 0,
    eval_per_task: int = 4,
    fps: float = 8.0,
    shard_size: int = 10000,
    max_distractors: int = 2,
) -> SynthResult:
    """Write train and eval splits under `out_dir`: media in train/ and eval/, manifests train-*.jsonl and
    eval-*.jsonl. Deterministic from `seed`. Train samples have up to `max_distractors` uncaptioned shapes beside
    the captioned one (0: the caption describes the whole scene, as text-to-video pretraining wants)."""
    h, w = size
    if h < 16 or w < 16:
        raise ValueError(f"synthetic frames must be at least 16x16, got {h}x{w}")
    if frames < 1:
        raise ValueError(f"frames must be >= 1, got {frames}")
    if min(videos, images, eval_per_task) < 0:
        raise ValueError("--videos, --images and --eval must be >= 0")
    if max_distractors < 0:
        raise ValueError(f"max_distractors must be >= 0, got {max_distractors}")
    out = Path(out_dir)
    rng = np.random.default_rng(seed)
    train: list[Record] = []
    for i in range(videos):
        bg, target, distractors = _scene(rng, frames, h, w, moving=True, max_distractors=max_distractors)
        sid = f"synth-v{i:05d}"
        base = out / "train" / sid
        write_video(f"{base}.mp4", render(bg, distractors + [target]), fps, lossless=True)
        write_mask_npz(f"{base}_mask.npz", entity_masks(target, h, w))
        entity_paths = []
        if distractors:
            write_mask_npz(f"{base}_entities.npz", _others_mask(distractors, frames, h, w))
            entity_paths = [f"{base}_entities.npz"]
        train.append(Record(sid, "video", f"{base}.mp4", f"{base}_mask.npz", target.captions(),
                            entity_masks=entity_paths, fps=fps, attributes=target.attributes, height=h, width=w))
    for i in range(images):
        bg, target, distractors = _scene(rng, 1, h, w, moving=False, max_distractors=max_distractors)
        sid = f"synth-i{i:05d}"
        base = out / "train" / sid
        write_image(f"{base}.png", render(bg, distractors + [target])[0])
        write_image(f"{base}_mask.png", np.repeat(entity_masks(target, h, w)[0, ..., None] * np.uint8(255), 3, -1))
        entity_paths = []
        if distractors:
            others = _others_mask(distractors, 1, h, w)[0]
            write_image(f"{base}_entities.png", np.repeat(others[..., None] * np.uint8(255), 3, -1))
            entity_paths = [f"{base}_entities.png"]
        train.append(Record(sid, "image", f"{base}.png", f"{base}_mask.png", target.captions(),
                            entity_masks=entity_paths, attributes=target.attributes, height=h, width=w))
    evals = [_eval_record(rng, out / "eval", task, i, frames, h, w, fps)
             for i in range(eval_per_task) for task in ("add", "modify", "delete")]
    result = SynthResult(
        write_shards(train, out, "train", shard_size),
        write_shards(evals, out, "eval", shard_size) if evals else [],
        {"videos": videos, "images": images, "eval": len(evals)},
    )
    return result


def _eval_record(rng: np.random.Generator, folder: Path, task: str, i: int, frames: int, h: int, w: int, fps: float) -> Record:
    bg, a, distractors = _scene(rng, frames, h, w, moving=True, max_distractors=1)
    sid = f"synth-eval-{task}-{i:03d}"
    base = folder / sid
    a_mask = entity_masks(a, h, w)
    if task == "add":
        source, target = render(bg, distractors), render(bg, distractors + [a])
        mask, edit, attributes = dilate(bounding_box(a_mask), 2, rect=True), a, a.attributes
    elif task == "modify":
        color = str(rng.choice([c for c in COLORS if c != a.color]))
        shape = str(rng.choice([s for s in SHAPES if s != a.shape]))
        b = Entity(color, shape, a.size, a.motion, a.centers, a.radius)
        source, target = render(bg, distractors + [a]), render(bg, distractors + [b])
        mask = dilate(bounding_box(a_mask | entity_masks(b, h, w)), 2, rect=True)
        edit, attributes = b, {**b.attributes, "source_color": a.color, "source_shape": a.shape}
    else:
        source, target = render(bg, distractors + [a]), render(bg, distractors)
        mask, edit, attributes = dilate(a_mask, 2), None, a.attributes
    write_video(f"{base}_source.mp4", source, fps, lossless=True)
    write_video(f"{base}_target.mp4", target, fps, lossless=True)
    write_mask_npz(f"{base}_mask.npz", mask)
    return Record(
        sid, "video", f"{base}_source.mp4", f"{base}_mask.npz", edit.captions() if edit else [],
        task="delete" if task == "delete" else "add_modify", fps=fps, attributes=attributes, eval_task=task,
        target=f"{base}_target.mp4",
    )
