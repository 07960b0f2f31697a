"""Turning one planned record into one training sample: decode, augment or synthesise a deletion, caption, KIVE.

Everything random comes from the generator it is given, so a sample is a function of its seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from vivid.conditioning.buckets import nearest_bucket
from vivid.constants import DELETE_CAPTION

from .augment import augment_mask
from .config import DataConfig
from vivid.io.masks import MaskSource
from vivid.io.resize import cover_geometry, resize_frames
from vivid.io.video import VideoSource

from .decode import bad_samples, media_size, open_mask, read_image, sample_indices
from .deletion import synthesize_deletion_mask
from .errors import BadSample
from .format import Record

_DONOR_TRIES = 3


@dataclass
class Decoded:
    frames: np.ndarray  # uint8 (F, H, W, 3)
    mask: np.ndarray  # bool (F, H, W)
    indices: np.ndarray  # source frame indices
    fps: float  # source fps (0 for images)
    total: int  # frames in the media file


def _open_mask(path: str, sample_id: str) -> MaskSource:
    try:
        return open_mask(path)
    except BadSample as bad:
        raise bad.with_context(sample_id)


def _check_match(mask: MaskSource, count: int, h: int, w: int, record: Record, what: str = "mask") -> None:
    if mask.count != count:
        raise BadSample(
            "length_mismatch", f"{what} has {mask.count} frames, the media {record.media} has {count}", record.id, mask.path
        )
    if (mask.height, mask.width) != (h, w):
        raise BadSample(
            "size_mismatch",
            f"{what} is {mask.height}x{mask.width}, the media {record.media} is {h}x{w}",
            record.id,
            mask.path,
        )


def source_size(record: Record) -> tuple[int, int]:
    """(height, width) of the record's media: as the manifest records it, else read from the file's header."""
    if record.height is not None and record.width is not None:
        return record.height, record.width
    try:
        return media_size(record.media, record.kind)
    except BadSample as bad:
        raise bad.with_context(record.id, record.media)


def training_size(record: Record, config: DataConfig) -> tuple[int, int]:
    """The size a record is trained at: the bucket nearest its aspect (`vivid.conditioning.buckets`), or height x width."""
    if not config.buckets:
        return config.height, config.width
    return nearest_bucket(*source_size(record), config.sizes())


def decode_record(
    record: Record,
    config: DataConfig,
    rng: np.random.Generator | None,
    frames: int | None = None,
    size: tuple[int, int] | None = None,
) -> Decoded:
    """Frames and mask of a record, cover-cropped to `size` (default `training_size`); `rng` None =
    deterministic (clip start)."""
    height, width = size or training_size(record, config)
    try:
        with bad_samples(record.id):
            if record.kind == "image":
                image = read_image(record.media)
                h, w = image.shape[:2]
                mask_src = _open_mask(record.mask, record.id)
                _check_match(mask_src, 1, h, w, record)
                g = cover_geometry(h, w, height, width)
                out = resize_frames(image[None], g, cv2.INTER_AREA)
                return Decoded(out, mask_src.read_resized([0], g), np.array([0]), 0.0, 1)
            src = VideoSource(record.media)
            n, h, w = src.num_frames, src.height, src.width
            g = cover_geometry(h, w, height, width)
            fps = record.fps or src.fps
            mask_src = _open_mask(record.mask, record.id)
            _check_match(mask_src, n, h, w, record)
            try:
                idx = sample_indices(n, fps, config.fps, frames or config.frames, rng, record.start, record.end)
            except BadSample as bad:
                raise bad.with_context(record.id, record.media)
            video = src.read_resized(idx, g)
            if len(video) != len(idx):
                raise BadSample("unreadable", f"decoded {len(video)} frames, {len(idx)} requested", record.id, record.media)
            return Decoded(video, mask_src.read_resized(idx, g), idx, fps, n)
    except BadSample as bad:
        raise bad.with_context(record.id, record.media)


def _known_entities(record: Record, decoded: Decoded, config: DataConfig) -> np.ndarray:
    """The union of the record's own mask and its `entity_masks`, on the decoded frames."""
    known = decoded.mask.copy()
    hh, ww = known.shape[1:]
    for path in record.entity_masks:
        src = _open_mask(path, record.id)
        if src.count != decoded.total:
            raise BadSample(
                "length_mismatch", f"entity mask has {src.count} frames, the media has {decoded.total}", record.id, path
            )
        known |= src.read_resized(decoded.indices, cover_geometry(src.height, src.width, hh, ww))
    return known


def _donor_mask(donor: Record, decoded: Decoded, config: DataConfig, rng: np.random.Generator) -> np.ndarray:
    """A donor record's mask sequence, sampled like this sample's clip (same stride), at the same size."""
    src = _open_mask(donor.mask, donor.id)
    f = len(decoded.frames)
    if donor.kind == "image" or f == 1:
        idx = np.array([int(rng.integers(0, src.count))]) if f == 1 else None
        if idx is None:
            raise BadSample("length_mismatch", "an image mask cannot donate to a video", donor.id, donor.mask)
    else:
        try:
            idx = sample_indices(src.count, decoded.fps, config.fps, f, rng, donor.start, donor.end)
        except BadSample as bad:
            raise bad.with_context(donor.id, donor.mask)
    g = cover_geometry(src.height, src.width, *decoded.frames.shape[1:3])
    return src.read_resized(idx, g)


def build_sample(
    record: Record,
    task: str,
    donors: list[Record],
    config: DataConfig,
    rng: np.random.Generator,
    size: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """One sample as numpy arrays: video (uint8 (F, H, W, 3)), mask (bool (F, H, W), KIVE applied), prompt, task,
    id, kive, kive_last, at `size` (the batch's bucket; default `training_size`). The masked video is video * (1 - mask) (see
    `loader.collate`). `task` is the planned task: "delete" on an add_modify record synthesises a deletion with a
    mask from one of `donors`."""
    decoded = decode_record(record, config, rng, size=size)
    try:
        if task == "add_modify":
            mask, _ = augment_mask(decoded.mask, config.augment_weights, config.mask_area_range, config.dilation_range, rng)
            caption = str(rng.choice(record.captions))
        elif record.task == "delete":  # a deletion sample as given: its mask is the region to clear
            mask, _ = augment_mask(decoded.mask, config.augment_weights, config.mask_area_range, config.dilation_range, rng)
            caption = DELETE_CAPTION
        else:
            mask = _synthesise(record, decoded, donors, config, rng)
            caption = DELETE_CAPTION
    except BadSample as bad:
        raise bad.with_context(record.id, record.mask)
    if rng.random() < config.caption_dropout:
        caption = ""
    kive = False
    if len(decoded.frames) > 1 and rng.random() < config.kive_prob:
        kive = True  # KIVE: the mask's frame 0 is empty, so the masked video's frame 0 is the real frame 0
        mask[0] = False
    kive_last = False  # drawn only when enabled: at 0 the samples are the first-frame-only recipe's, bit for bit
    if len(decoded.frames) > 1 and config.kive_last_frame_prob > 0 and rng.random() < config.kive_last_frame_prob:
        kive_last = True  # last-frame KIVE (vivid's addition): the masked video's last frame is the real one
        mask[-1] = False
    return {"video": decoded.frames, "mask": mask, "prompt": caption, "task": task, "id": record.id, "kive": kive,
            "kive_last": kive_last}


def _synthesise(record: Record, decoded: Decoded, donors: list[Record], config: DataConfig, rng: np.random.Generator) -> np.ndarray:
    known = _known_entities(record, decoded, config)
    if not donors:
        raise BadSample("no_background", "no donor masks for deletion synthesis")
    last: BadSample | None = None
    for _ in range(_DONOR_TRIES):
        donor = donors[int(rng.integers(0, len(donors)))]
        try:
            donor_mask = _donor_mask(donor, decoded, config, rng)
            if not donor_mask.any():
                raise BadSample("empty_mask", "donor mask is empty in the sampled clip", donor.id, donor.mask)
            donor_mask, _ = augment_mask(donor_mask, config.augment_weights, config.mask_area_range, config.dilation_range, rng)
            mode = "flow" if rng.random() < config.delete_flow_prob else "copy"
            return synthesize_deletion_mask(
                decoded.frames, known, donor_mask, rng, mode=mode, flow=config.flow, flow_max_side=config.flow_max_side
            )
        except BadSample as bad:
            last = bad
    assert last is not None
    raise BadSample(last.reason, f"deletion synthesis failed with {_DONOR_TRIES} donors; last: {last.message}", record.id, record.media)
