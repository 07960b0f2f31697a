"""Deletion stage: `delete` records whose masks are other entities of the data set pasted onto a clip.

VIVID-10M's deletion samples are a mask taken from another sample laid on background: the model learns to fill
it with what is really there. For every clip with kept entities, `deletion.per_clip` donors are drawn (seeded by
the clip) from the kept entity masks of *other videos* (other clips of the same video when there is only one),
scaled to the clip, and placed by the loader's own deletion synthesis
(`data_loaders.deletion.synthesize_deletion_mask`, "copy" mode: the donor keeps its trajectory) where they overlap
none of the clip's segmented entities. This stage runs once every video has been segmented, on one process.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import cv2
import numpy as np

from ..deletion import synthesize_deletion_mask


@dataclass(frozen=True)
class Donor:
    video: str
    clip: str
    mask: str  # path of a kept entity's mask file


def pick_donor(pool: list[Donor], video: str, clip: str, seed: int, k: int) -> Donor | None:
    """A donor for deletion record `k` of (video, clip), from another video if there is one, else another clip
    of the same video; deterministic in (seed, video, clip, k) and in the pool, not in the order of the build."""
    candidates = [d for d in pool if d.video != video] or [d for d in pool if d.clip != clip]
    if not candidates:
        return None
    digest = hashlib.sha1(f"{seed}/{video}/{clip}/{k}".encode()).digest()
    return sorted(candidates, key=lambda d: (d.video, d.clip, d.mask))[int.from_bytes(digest[:8], "big") % len(candidates)]


def fit_donor(donor: np.ndarray, frames: int, height: int, width: int) -> np.ndarray:
    """The donor mask (F', H', W') at the clip's frame count and size (nearest-neighbour in time and space)."""
    idx = np.linspace(0, len(donor) - 1, frames).round().astype(int) if len(donor) > 1 else np.zeros(frames, int)
    out = np.empty((frames, height, width), bool)
    for t, i in enumerate(idx):
        f = donor[i].view(np.uint8) if donor.dtype == np.bool_ else donor[i].astype(np.uint8)
        out[t] = cv2.resize(f, (width, height), interpolation=cv2.INTER_NEAREST).astype(bool)
    return out


def deletion_mask(known: np.ndarray, donor: np.ndarray, rng: np.random.Generator, margin: int) -> np.ndarray:
    """The deletion mask for a clip whose entities are `known` (F, H, W): the fitted donor placed where it
    overlaps none of them. BadSample("no_background") when there is no such place."""
    f, h, w = known.shape
    fitted = fit_donor(donor, f, h, w)
    # "copy" mode reads no pixel: a zero-strided stand-in for the frames costs no memory
    no_pixels = np.broadcast_to(np.zeros(3, np.uint8), (f, h, w, 3))
    return synthesize_deletion_mask(no_pixels, known, fitted, rng, mode="copy", margin=margin)
