"""Images stage: every kept entity's keyframe also becomes an image sample (VIVID trains on images 10:1).

The image is the clip frame where the entity's mask is largest (its keyframe, on which it was captioned); its
mask is that frame of the entity mask, and the union of the clip's other kept entities on that frame is the
record's entity mask (so the loader's deletion synthesis keeps clear of them).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vivid.io.images import write_image

from ..format import Record


def _grey(mask: np.ndarray) -> np.ndarray:
    return np.repeat(mask[..., None].astype(np.uint8) * np.uint8(255), 3, axis=-1)


def write_keyframe_sample(
    record_id: str, frame: np.ndarray, mask: np.ndarray, others: np.ndarray | None, base: Path, captions: list[str],
    attributes: dict,
) -> Record:
    """Write `<base>.png`, `<base>_mask.png` (and `<base>_others.png` when other entities are on the frame),
    unless they exist (the stage's output), and return the image record."""
    image, mask_path, others_path = (base.with_name(base.name + s) for s in (".png", "_mask.png", "_others.png"))
    if not image.is_file():
        write_image(image, frame)
    if not mask_path.is_file():
        write_image(mask_path, _grey(mask))
    entity_masks = []
    if others is not None and others.any():
        if not others_path.is_file():
            write_image(others_path, _grey(others))
        entity_masks = [str(others_path)]
    return Record(record_id, "image", str(image), str(mask_path), list(captions), entity_masks=entity_masks,
                  attributes=attributes)
