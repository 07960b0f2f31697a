"""The size limit on an input video or image, checked from its header before any frame is decoded: a 190 KB video
of 8000x8000 frames would otherwise take gigabytes to decode. Two limits, each configurable (0: none): the
pixels of one frame (width x height) and of the whole video (frames x width x height)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from vivid.io.files import MediaError, is_image_path

DEFAULT_MAX_FRAME_PIXELS = 4096 * 4096  # width x height: 4K (4096x2160) and 4096x4096 pass
DEFAULT_MAX_PIXELS = 10_000_000_000  # frames x width x height: ~80 minutes of 480x720 at 8 fps, ~4800 1080p frames


@dataclass(frozen=True)
class PixelLimits:
    """The largest input accepted (0 or None: no limit); the options that set them, as the error names them."""

    frame: int | None = DEFAULT_MAX_FRAME_PIXELS
    total: int | None = DEFAULT_MAX_PIXELS
    frame_option: str = "--max-frame-pixels"
    total_option: str = "--max-pixels"


def header_size(path: str | os.PathLike) -> tuple[int, int, int] | None:
    """(frames, height, width) as the file's header gives them, nothing decoded: the image header (PIL) for an
    image, the container's for a video (OpenCV). None where the header does not say: the reader then decides."""
    path = Path(path)
    if is_image_path(path):
        from PIL import Image

        try:
            with Image.open(path) as image:
                return getattr(image, "n_frames", 1) if image.format == "GIF" else 1, image.height, image.width
        except Exception:  # not an image PIL reads: the image reader gives the error
            return None
    import cv2

    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            return None
        width, height = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        frames = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    finally:
        capture.release()
    return (max(frames, 1), height, width) if width > 0 and height > 0 else None


def check_pixel_limits(path: str | os.PathLike, limits: PixelLimits = PixelLimits(), what: str = "video") -> None:
    """Refuse an input over `limits` in one MediaError naming its size and the option to change, before decoding."""
    if not isinstance(path, (str, os.PathLike)) or not Path(path).is_file():
        return  # arrays, folders of images (each image is checked by its reader's size checks), missing files
    size = header_size(path)
    if size is None:
        return
    frames, height, width = size
    if limits.frame and width * height > limits.frame:
        raise MediaError(f"{what} {path} is {width}x{height} ({width * height:,} pixels a frame), over the limit of "
                         f"{limits.frame:,} ({limits.frame_option}; 0 for no limit)", reason="too_large", path=path)
    if limits.total and frames * width * height > limits.total:
        raise MediaError(f"{what} {path} has {frames} frames of {width}x{height} ({frames * width * height:,} pixels), "
                         f"over the limit of {limits.total:,} ({limits.total_option}; 0 for no limit)",
                         reason="too_large", path=path)
