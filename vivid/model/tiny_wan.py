"""A seeded, randomly initialised tiny Wan2.1 family written as a diffusers folder (the Wan twin of
`vivid/model/tiny.py`).

Same classes as Wan-AI/Wan2.1-T2V-1.3B-Diffusers (WanTransformer3DModel, AutoencoderKLWan, UMT5EncoderModel,
tokenizer, UniPC flow-matching scheduler), so every code path that loads the real model (`from_pretrained` on a
folder or hub id) runs offline. The tokenizer is the tiny family's byte-level BPE (its `model_max_length`, 16,
is the caption length the Wan specification uses for it).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanPipeline, WanTransformer3DModel
from transformers import UMT5Config, UMT5EncoderModel

from vivid.model.configs import TINY_UMT5, TINY_WAN_TRANSFORMER, TINY_WAN_VAE, WAN21_SCHEDULER
from vivid.model.tiny import build_tiny_tokenizer, encoder_token_config, with_overrides

TINY_WAN_TEXT_LENGTH = 16


def build_tiny_wan_components(seed: int = 0, transformer_overrides: dict | None = None) -> dict:
    """The five components of a tiny Wan pipeline, randomly initialised from `seed`.

    `transformer_overrides` change fields of TINY_WAN_TRANSFORMER (e.g. `num_layers=2`).
    """
    tokenizer = build_tiny_tokenizer(TINY_WAN_TEXT_LENGTH)
    torch.manual_seed(seed)
    config = with_overrides(TINY_WAN_TRANSFORMER, transformer_overrides)
    transformer = WanTransformer3DModel(**config)
    vae = AutoencoderKLWan(**TINY_WAN_VAE)
    text_encoder = UMT5EncoderModel(UMT5Config(**encoder_token_config(tokenizer), **TINY_UMT5))
    if text_encoder.config.d_model != config["text_dim"]:
        raise AssertionError("tiny UMT5 width must equal the transformer's text_dim")
    scheduler = UniPCMultistepScheduler(**WAN21_SCHEDULER)
    return dict(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, transformer=transformer, scheduler=scheduler)


def write_tiny_wan_model(
    out_dir: str | os.PathLike, seed: int = 0, transformer_overrides: dict | None = None
) -> Path:
    """Write the tiny Wan family as a diffusers folder (a WanPipeline's) loadable with `from_pretrained`."""
    out_dir = Path(out_dir)
    WanPipeline(**build_tiny_wan_components(seed, transformer_overrides)).save_pretrained(
        out_dir, safe_serialization=True
    )
    return out_dir
