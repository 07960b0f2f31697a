"""Loading the segmentation models by hub id, local folder or "tiny", and the SAM models' frame preprocessing.

Every model is loaded with its `transformers` class's `from_pretrained`; a model that cannot be loaded (unknown
id, no network, missing files) is a `ModelLoadError` naming what it was for, raised before any video is touched.

`transformers`' SAM 2/3 video processors need torchvision; vivid does the SAM frame preprocessing itself from the
model's own preprocessing config (square resize, rescale, normalise: what `Sam2VideoVideoProcessor` does), so one
code path serves the real models on a GPU machine and the tiny ones on a CPU without torchvision.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

TINY = "tiny"  # reserved model id: the built-in seeded tiny random model of that class (vivid.segmentation.tiny)


class ModelLoadError(ValueError):
    """A model cannot be loaded; the message is one line naming what it was for and the id."""


def model_path(key: str, value: str, tiny_root: str | os.PathLike, seed: int = 0) -> str:
    """The id or folder to load; "tiny" writes (once) and names the tiny model's folder under `tiny_root`."""
    if value == TINY:
        from .tiny import tiny_model_dir

        return str(tiny_model_dir(key, tiny_root, seed))
    return value


def load(key: str, name: str, loader: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """`loader(name, ...)`, with any failure turned into one ModelLoadError line."""
    try:
        return loader(name, *args, **kwargs)
    except Exception as err:  # OSError (no such repo / files), ValueError (wrong class), hub errors
        lines = [ln for ln in str(err).splitlines() if ln.strip()]
        raise ModelLoadError(f"models.{key}: cannot load {name!r}: {lines[0] if lines else type(err).__name__}") from err


def load_model(key: str, name: str, cls: Any, device: torch.device, dtype: torch.dtype, **kwargs: Any) -> Any:
    model = load(key, name, cls.from_pretrained, dtype=dtype, **kwargs)
    return model.to(device).eval()


def preprocessing_config(key: str, name: str) -> dict[str, Any]:
    """The video (else image) preprocessing config saved with a SAM model: size, rescale factor, mean, std."""
    from transformers.image_processing_base import ImageProcessingMixin
    from transformers.video_processing_utils import BaseVideoProcessor

    try:
        return BaseVideoProcessor.get_video_processor_dict(name)[0]
    except OSError:
        return load(key, name, ImageProcessingMixin.get_image_processor_dict)[0]


def pixel_values(frames: np.ndarray, prep: dict[str, Any], device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """(F, 3, S, S) model input from uint8 frames (F, H, W, 3): bilinear (antialiased) resize to the config's
    size, rescale and normalise, frame by frame (peak memory one float frame)."""
    size = prep.get("size") or {}
    if "height" in size:
        out_hw = (int(size["height"]), int(size["width"]))
    else:
        side = int(size.get("longest_edge") or size.get("shortest_edge") or 1024)
        out_hw = (side, side)
    scale = float(prep.get("rescale_factor", 1 / 255)) if prep.get("do_rescale", True) else 1.0
    normalize = prep.get("do_normalize", True)
    mean = torch.tensor(prep.get("image_mean", [0.5, 0.5, 0.5]), dtype=torch.float32).view(3, 1, 1)
    std = torch.tensor(prep.get("image_std", [0.5, 0.5, 0.5]), dtype=torch.float32).view(3, 1, 1)
    out = torch.empty((len(frames), 3, *out_hw), dtype=dtype, device=device)
    for i, frame in enumerate(frames):
        x = torch.from_numpy(np.ascontiguousarray(frame)).permute(2, 0, 1)[None].float()
        if tuple(x.shape[-2:]) != out_hw:
            x = F.interpolate(x, size=out_hw, mode="bilinear", antialias=True, align_corners=False)
        x = x[0] * scale
        if normalize:
            x = (x - mean) / std
        out[i] = x.to(device=device, dtype=dtype)
    return out


def default_device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def default_dtype(device: torch.device) -> torch.dtype:
    return torch.bfloat16 if device.type == "cuda" else torch.float32
