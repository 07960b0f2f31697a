"""Single images: reading (RGB, or a mask image's raw values), the size from the header, and atomic writing."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from vivid.io.atomic import atomic_path
from vivid.io.files import MediaError, require_file

# EXIF orientations that rotate an image by 90 degrees (cv2.imread applies them, PIL's header size does not)
_EXIF_TRANSPOSED = (5, 6, 7, 8)


def read_image(path: str | os.PathLike, what: str = "image") -> np.ndarray:
    """uint8 (H, W, 3) RGB."""
    path = Path(path)
    require_file(path, what)
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise MediaError(f"{what} {path} could not be decoded as an image", path=path,
                         detail="cannot be decoded as an image")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def image_size(path: str | os.PathLike, what: str = "image") -> tuple[int, int]:
    """(height, width) of an image as `read_image` decodes it, from the header where PIL reads the format."""
    path = Path(path)
    require_file(path, what)
    try:
        with Image.open(path) as image:
            w, h = image.size
            transposed = image.getexif().get(0x0112) in _EXIF_TRANSPOSED
        return (w, h) if transposed else (h, w)
    except Exception:  # a format PIL does not read: decode it as the readers do
        return read_image(path, what).shape[:2]


def read_mask_image(path: str | os.PathLike, what: str = "mask") -> np.ndarray:
    """The raw values (H, W, C) uint8 of a mask image, alpha kept (C = 1 grey, 3 RGB, 4 RGBA), for
    `vivid.io.masks.binarize_mask`; 16-bit images are scaled to 8 bits."""
    path = Path(path)
    require_file(path, what)
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise MediaError(f"{what} {path} could not be decoded as an image", path=path,
                         detail=f"{what} cannot be decoded as an image")
    if img.dtype == np.uint16:
        img = (img // 257).astype(np.uint8)
    elif img.dtype != np.uint8:
        raise MediaError(f"{what} {path} has {img.dtype} pixels; give an 8- or 16-bit image", path=path)
    if img.ndim == 2:
        return img[..., None]
    if img.shape[-1] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2RGBA)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def write_image(path: str | os.PathLike, frame: np.ndarray) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        ok, buf = cv2.imencode(path.suffix.lower() or ".png", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        if not ok:
            raise MediaError(f"could not encode an image for {path} (unsupported suffix {path.suffix!r}?)")
        tmp.write_bytes(buf.tobytes())
    return path
