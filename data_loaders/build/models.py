"""The build's models: its config's device and dtype, and the id or folder behind each `models.<key>`.

Loading, the "tiny" models and the SAM frame preprocessing are the library's (`vivid.segmentation.loading`);
the captioner's tiny model is written here (`tiny_captioner`), as captioning is the build's alone.
"""

from __future__ import annotations

from pathlib import Path

import torch

from vivid.segmentation.tiny import tiny_model_dir

from .config import TINY, BuildConfig, ModelsConfig


def resolve_device(config: ModelsConfig, local_rank: int = 0) -> torch.device:
    if config.device != "auto":
        return torch.device(config.device)
    if torch.cuda.is_available():
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return torch.device("cpu")


def resolve_dtype(config: ModelsConfig, device: torch.device) -> torch.dtype:
    if config.dtype != "auto":
        return getattr(torch, config.dtype)
    return torch.bfloat16 if device.type == "cuda" else torch.float32


def model_path(config: ModelsConfig, key: str, tiny_root: Path) -> str:
    """The id or folder to load for `models.<key>`; "tiny" writes (once) and names the tiny model's folder."""
    value = getattr(config, key)
    if value != TINY:
        return value
    writer = None
    if key == "captioner":
        from .tiny_captioner import write_tiny_captioner as writer
    return str(tiny_model_dir(key, tiny_root, config.tiny_seed, writer=writer))


def set_threads(threads: int) -> None:
    if threads > 0:
        torch.set_num_threads(threads)


def load_segmenter(config: BuildConfig, device: torch.device, dtype: torch.dtype, tiny_root: Path):
    """The config's segmenter: callable (frames, prompts, keyframe) -> list[Entity]."""
    from vivid.segmentation.sam import GroundingSam2Segmenter, Sam3Segmenter

    models, entities = config.models, config.entities
    if models.segmenter == "sam3":
        return Sam3Segmenter(model_path(models, "sam3", tiny_root), device, dtype, entities.max_entities)
    detector, sam = model_path(models, "grounding_dino", tiny_root), model_path(models, "sam2", tiny_root)
    return GroundingSam2Segmenter(detector, sam, device, dtype, entities.max_entities, entities.box_threshold,
                                  entities.text_threshold)
