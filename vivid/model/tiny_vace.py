"""A seeded, randomly initialised tiny Wan2.1-VACE family written as a diffusers folder (the VACE twin of
`vivid/model/tiny_wan.py`).

Same classes as Wan-AI/Wan2.1-VACE-1.3B-diffusers (WanVACETransformer3DModel, AutoencoderKLWan, UMT5EncoderModel,
tokenizer, UniPC flow-matching scheduler) and the tiny Wan's VAE, text encoder and tokenizer, so that every path that
loads the real model runs offline. Random weights: it shows the paths, never VACE's quality.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from diffusers import WanVACEPipeline, WanVACETransformer3DModel

from vivid.model.configs import TINY_VACE_TRANSFORMER
from vivid.model.tiny import with_overrides
from vivid.model.tiny_wan import build_tiny_wan_components


def build_tiny_vace_components(seed: int = 0, transformer_overrides: dict | None = None) -> dict:
    """The five components of a tiny VACE pipeline, randomly initialised from `seed` (the VAE, text encoder,
    tokenizer and scheduler are the tiny Wan's of the same seed)."""
    components = build_tiny_wan_components(seed)
    torch.manual_seed(seed)
    components["transformer"] = WanVACETransformer3DModel(**with_overrides(TINY_VACE_TRANSFORMER, transformer_overrides))
    return components


def write_tiny_vace_model(
    out_dir: str | os.PathLike, seed: int = 0, transformer_overrides: dict | None = None
) -> Path:
    """Write the tiny VACE family as a diffusers folder (a WanVACEPipeline's) loadable with `from_pretrained`."""
    out_dir = Path(out_dir)
    WanVACEPipeline(**build_tiny_vace_components(seed, transformer_overrides)).save_pretrained(
        out_dir, safe_serialization=True
    )
    return out_dir
