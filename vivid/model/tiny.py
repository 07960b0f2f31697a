"""`vivid init-tiny`: a seeded, randomly initialised tiny CogVideoX family written as a diffusers folder.

Same classes as THUDM/CogVideoX-5b (transformer, VAE, T5 encoder, tokenizer, scheduler), so every code
path that loads the real model (`from_pretrained` on a folder or hub id) is exercised offline.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Literal

import torch
from diffusers import AutoencoderKLCogVideoX, CogVideoXDDIMScheduler, CogVideoXTransformer3DModel
from transformers import PreTrainedTokenizerFast, T5Config, T5EncoderModel

from vivid.model.configs import COGVIDEOX_SCHEDULER, TINY_BASE_OVERRIDES, TINY_T5, TINY_TRANSFORMER, TINY_VAE
from vivid.synthetic_world import corpus

# Committed weights trained on the synthetic world (each folder's README says how): the VAE, and the text-to-video
# base (its transformer/ and the text_encoder/ it was trained with).
TINY_VAE_DIR = Path(__file__).resolve().parent / "tiny_vae"
TINY_BASE_DIR = Path(__file__).resolve().parent / "tiny_base"
PRETRAINED_CHOICES = ("none", "vae", "base")


def build_tiny_tokenizer(max_length: int) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained, deterministically and offline, on the synthetic world's captions.

    Byte-level means any caption can be encoded; the synthetic words get tokens of their own.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=512,
        special_tokens=["<pad>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus(), trainer=trainer)
    eos = tok.token_to_id("</s>")
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", eos)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", model_max_length=max_length, padding_side="right"
    )


def with_overrides(config: dict, overrides: dict | None) -> dict:
    """`config` with the fields of `overrides` changed; ValueError naming any field `config` lacks."""
    unknown = sorted(set(overrides or {}) - set(config))
    if unknown:
        raise ValueError(f"unknown transformer config field(s): {', '.join(unknown)}")
    return {**config, **(overrides or {})}


def encoder_token_config(tokenizer: PreTrainedTokenizerFast) -> dict:
    """The token fields of a tiny T5-style encoder's config: vocabulary and special tokens of `tokenizer`, encoder
    only, no cache."""
    return dict(
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
        is_encoder_decoder=False,
        use_cache=False,
    )


def build_tiny_components(seed: int = 0, transformer_overrides: dict | None = None) -> dict:
    """The five components of a tiny CogVideoX pipeline, randomly initialised from `seed`.

    `transformer_overrides` change fields of TINY_TRANSFORMER (e.g. `patch_size=1`, one token per latent cell).
    """
    tokenizer = build_tiny_tokenizer(TINY_TRANSFORMER["max_text_seq_length"])
    torch.manual_seed(seed)
    transformer = CogVideoXTransformer3DModel(**with_overrides(TINY_TRANSFORMER, transformer_overrides))
    vae = AutoencoderKLCogVideoX(**TINY_VAE)
    text_encoder = T5EncoderModel(T5Config(**encoder_token_config(tokenizer), **TINY_T5))
    if text_encoder.config.d_model != TINY_TRANSFORMER["text_embed_dim"]:
        raise AssertionError("tiny T5 width must equal the transformer's text_embed_dim")
    scheduler = CogVideoXDDIMScheduler(**COGVIDEOX_SCHEDULER)
    return dict(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, transformer=transformer, scheduler=scheduler)


def install_component(source: str | os.PathLike, model_dir: str | os.PathLike, name: str) -> None:
    """Replace component `name` (e.g. "vae") of the diffusers folder `model_dir` by the saved model in `source`
    (its config.json and safetensors files)."""
    source, model_dir = Path(source), Path(model_dir)
    if not (model_dir / "model_index.json").is_file():
        raise FileNotFoundError(f"{model_dir}: no model_index.json (not a diffusers pipeline folder)")
    files = sorted(source.glob("*.safetensors"))
    if not (source / "config.json").is_file() or not files:
        raise FileNotFoundError(f"{source}: no config.json and safetensors weights (not a saved model folder)")
    target = model_dir / name
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    for path in [source / "config.json", *files]:
        shutil.copy2(path, target / path.name)


def write_tiny_model(
    out_dir: str | os.PathLike, seed: int = 0, transformer_overrides: dict | None = None,
    pretrained: Literal["none", "vae", "base"] = "none",
) -> Path:
    """Write the tiny family as a diffusers folder loadable by `VIVIDPipeline.from_pretrained`.

    `pretrained`: "none", every component random from `seed`; "vae", the committed synthetic-world VAE and a random
    transformer of the base's architecture (TINY_BASE_OVERRIDES: what text-to-video pretraining starts from);
    "base", the committed VAE and the pretrained text-to-video base with its text encoder (`seed` then changes
    nothing).
    """
    from diffusers import CogVideoXPipeline

    if pretrained not in PRETRAINED_CHOICES:
        raise ValueError(f"pretrained must be one of {PRETRAINED_CHOICES}, got {pretrained!r}")
    if pretrained != "none":
        transformer_overrides = {**TINY_BASE_OVERRIDES, **(transformer_overrides or {})}
    out_dir = Path(out_dir)
    pipe = CogVideoXPipeline(**build_tiny_components(seed, transformer_overrides))
    pipe.save_pretrained(out_dir, safe_serialization=True)
    if pretrained != "none":
        install_component(TINY_VAE_DIR, out_dir, "vae")
    if pretrained == "base":
        install_component(TINY_BASE_DIR / "transformer", out_dir, "transformer")
        install_component(TINY_BASE_DIR / "text_encoder", out_dir, "text_encoder")
    return out_dir
