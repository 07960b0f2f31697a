"""Mask shapes (`vivid mask --shape/--grow`, VIVID's mask augmentations)."""

from __future__ import annotations

import numpy as np


def test_shape_mask_hull_box_grow():
    from vivid.segmentation.shaping import shape_mask

    mask = np.zeros((1, 20, 20), bool)
    mask[0, 5, 5] = mask[0, 5, 14] = mask[0, 14, 5] = True  # three corners of a square
    hull, box = shape_mask(mask, "hull"), shape_mask(mask, "box")
    assert hull[0, 8, 8] and not hull[0, 13, 13] and box[0, 13, 13] and box.sum() == 100
    assert shape_mask(mask, "box", 2).sum() == 14 * 14 and shape_mask(mask, "mask", 1)[0, 4, 5]
