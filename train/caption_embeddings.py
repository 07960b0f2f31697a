"""Precomputed T5 caption embeddings on disk: `vivid data embed-captions` writes them, the trainer reads them.

A store is a folder holding
- `captions-<n>.safetensors` shards: one tensor (max_text_seq_length, D) per caption, in the dtype T5 ran in,
  keyed by `caption_key(caption)` (SHA-256 of the UTF-8 caption),
- `caption_embeddings.json`: what made them (model, T5 config signature, dtype, length, width) and the shards.

Each shard is written to a temporary file and renamed; the JSON, which lists the shards, is rewritten (atomically)
after each one, so a kill loses at most the shard being written, and a run again adds only the captions the
store lacks. Embeddings are computed exactly as the trainer computes them on the fly (the model specification's
`encode_prompts`; CogVideoX: padded to the transformer's `max_text_seq_length`, no attention mask, CogVideoX's
pipeline's T5 call).

With `caption_embeddings: DIR` in the training config the trainer reads these (memory-mapped, one caption at a
time) and never loads T5. See docs/training.md for what each choice costs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from tqdm.auto import tqdm
from transformers import AutoConfig

from data_loaders.errors import BadSample, DataError
from data_loaders.format import stream_manifests
from vivid.constants import DELETE_CAPTION
from vivid.io.atomic import atomic_path, write_json_atomic
from vivid.model.spec import ModelSpecification

logger = logging.getLogger(__name__)

FORMAT = "vivid-caption-embeddings-1"
META_NAME = "caption_embeddings.json"
SHARD_NAME = "captions-{:05d}.safetensors"
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
# config keys that say nothing about the weights' architecture (paths, versions, the dtype it was loaded in)
_VOLATILE_CONFIG_KEYS = {"_name_or_path", "transformers_version", "torch_dtype", "dtype", "_commit_hash",
                         "_attn_implementation_autoset", "_attn_implementation_internal"}


def caption_key(caption: str) -> str:
    """The key of a caption's embedding: the SHA-256 of its UTF-8 text (hex)."""
    return hashlib.sha256(caption.encode("utf-8")).hexdigest()


def text_encoder_signature(config: Any) -> str:
    """A digest of a T5 config (a transformers config or its dict), without paths, versions or dtype: embeddings
    made by one T5 architecture are refused for another."""
    data = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    data = {k: v for k, v in data.items() if k not in _VOLATILE_CONFIG_KEYS}
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def dtype_name(dtype: torch.dtype) -> str:
    return next(name for name, d in DTYPES.items() if d == dtype)


def manifest_prompts(patterns: Iterable[str | os.PathLike]) -> tuple[list[str], int]:
    """Every prompt training on these manifests can use: each record's captions, the deletion caption, and ""
    (caption dropout; the negative prompt of validation). Returns (distinct prompts, invalid records skipped)."""
    prompts = dict.fromkeys(["", DELETE_CAPTION])
    bad = 0
    for item in stream_manifests(patterns):  # the records are not kept: only their distinct captions
        if isinstance(item, BadSample):
            bad += 1
        else:
            prompts.update(dict.fromkeys(item.captions))
    return list(prompts), bad


class StoreWriteError(OSError):
    """A shard could not be written (e.g. a full disk); the store keeps the shards written before."""


@dataclass
class StoreMeta:
    model: str  # as given to embed-captions (hub id or folder)
    text_encoder: str  # text_encoder_signature of its T5
    dtype: str  # fp32 | bf16 | fp16: what T5 ran in
    max_length: int  # tokens per caption (the transformer's max_text_seq_length)
    dim: int  # T5's width
    shards: list[str] = field(default_factory=list)
    count: int = 0
    format: str = FORMAT


class CaptionEmbeddings:
    """A store's embeddings, read lazily: shards are memory-mapped (at most `max_open` at a time) and one
    caption's tensor is read when asked for."""

    def __init__(self, folder: str | os.PathLike, max_open: int = 16):
        self.folder = Path(folder)
        path = self.folder / META_NAME
        if not path.is_file():
            raise FileNotFoundError(f"{self.folder}: not a caption embedding store (no {META_NAME}); write one "
                                    "with `vivid data embed-captions`")
        data = json.loads(path.read_text())
        if data.get("format") != FORMAT:
            raise ValueError(f"{path}: format {data.get('format')!r}, expected {FORMAT!r}")
        self.meta = StoreMeta(**data)
        self._where: dict[str, str] = {}
        for shard in self.meta.shards:
            with safe_open(str(self.folder / shard), framework="pt") as f:
                for key in f.keys():
                    self._where[key] = shard
        self._open: OrderedDict[str, Any] = OrderedDict()
        self.max_open = max_open

    def __len__(self) -> int:
        return len(self._where)

    def __contains__(self, caption: object) -> bool:
        return isinstance(caption, str) and caption_key(caption) in self._where

    def missing(self, prompts: Iterable[str]) -> list[str]:
        """The distinct prompts of `prompts` the store lacks, in order of first appearance."""
        return [p for p in dict.fromkeys(prompts) if p not in self]

    def _handle(self, shard: str) -> Any:
        handle = self._open.get(shard)
        if handle is None:
            handle = safe_open(str(self.folder / shard), framework="pt")
            self._open[shard] = handle
            while len(self._open) > self.max_open:
                self._open.popitem(last=False)
        self._open.move_to_end(shard)
        return handle

    def get(self, prompts: Sequence[str], device: torch.device | str | None = None) -> torch.Tensor:
        """The embeddings (B, max_length, dim) of `prompts`; KeyError naming a caption the store lacks."""
        rows = []
        for prompt in prompts:
            shard = self._where.get(caption_key(prompt))
            if shard is None:
                raise KeyError(f"caption {prompt!r} is not in the caption embeddings of {self.folder}")
            rows.append(self._handle(shard).get_tensor(caption_key(prompt)))
        return torch.stack(rows).to(device or "cpu")

    def check_fits(self, *, signature: str, dtype: torch.dtype, max_length: int, dim: int) -> None:
        """ValueError (one line, naming the fix) unless the store was made by this T5, in this dtype and shape."""
        m = self.meta
        problems = []
        if m.text_encoder != signature:
            problems.append(f"another T5 architecture (made with {m.model})")
        if m.dtype != dtype_name(dtype):
            problems.append(f"dtype {m.dtype}, the run computes in {dtype_name(dtype)}")
        if (m.max_length, m.dim) != (max_length, dim):
            problems.append(f"{m.max_length} x {m.dim} per caption, the transformer takes {max_length} x {dim}")
        if problems:
            raise ValueError(f"caption embeddings {self.folder} do not fit this run: {'; '.join(problems)}. Recompute "
                             f"them with `vivid data embed-captions` for the run's model in {dtype_name(dtype)}")


def check_out_folder(out: str | os.PathLike, dtype: str | None = None) -> None:
    """ValueError unless `out` is new, empty, or a caption embedding store (which is added to; in `dtype`, if
    given: fp32 | bf16 | fp16)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out} is a file, not a folder for caption embeddings")
    if (out / META_NAME).is_file():
        held = CaptionEmbeddings(out).meta.dtype
        if dtype is not None and held != dtype:
            raise ValueError(f"{out} holds {held} embeddings: add to it in {held}, or write to another folder")
    elif out.is_dir() and any(out.iterdir()):
        raise ValueError(f"{out} is a folder with other files in it, not a caption embedding store: give an "
                         "empty or new folder")


def write_caption_embeddings(
    out_dir: str | os.PathLike,
    prompts: Sequence[str],
    tokenizer: Any,
    text_encoder: torch.nn.Module,
    max_length: int,
    model: str,
    spec: ModelSpecification,
    batch_size: int = 8,
    shard_size: int = 256,
) -> tuple[StoreMeta, int]:
    """Add the embeddings of the `prompts` the store at `out_dir` lacks (creating it); returns (meta, added).

    A folder that exists, is not empty and is not a store is refused, as is a store made by another T5, dtype or
    length. Leftover temporaries of a killed earlier run (`.captions-*.part`) are removed.
    """
    if batch_size < 1 or shard_size < 1:
        raise ValueError(f"batch size and shard size must be >= 1, got {batch_size} and {shard_size}")
    out = Path(out_dir)
    dtype = next(text_encoder.parameters()).dtype
    meta = StoreMeta(model=model, text_encoder=text_encoder_signature(text_encoder.config), dtype=dtype_name(dtype),
                     max_length=int(max_length), dim=int(text_encoder.config.d_model))
    known: set[str] = set()
    check_out_folder(out, dtype_name(dtype))
    if (out / META_NAME).is_file():
        store = CaptionEmbeddings(out)
        store.check_fits(signature=meta.text_encoder, dtype=dtype, max_length=meta.max_length, dim=meta.dim)
        meta.shards, meta.count, known = list(store.meta.shards), store.meta.count, set(store._where)
    out.mkdir(parents=True, exist_ok=True)
    for leftover in out.glob(".captions-*.safetensors.part"):  # a killed run's own temporary shard
        leftover.unlink()
    todo = [p for p in dict.fromkeys(prompts) if caption_key(p) not in known]
    text_encoder.eval()
    pending: dict[str, torch.Tensor] = {}
    added = 0

    def flush() -> None:
        nonlocal added
        if not pending:
            return
        n = len(meta.shards)
        while (out / SHARD_NAME.format(n)).exists():
            n += 1
        name = SHARD_NAME.format(n)
        try:
            with atomic_path(out / name) as tmp:
                save_file(pending, str(tmp), metadata={"format": FORMAT})
        except (OSError, SafetensorError) as err:  # e.g. a full disk: the temporary shard is gone, the store intact
            reason = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise StoreWriteError(
                f"could not write {out / name} ({reason}): the store keeps the {meta.count} caption embeddings "
                f"written before; free space and run embed-captions again to add the other {len(todo) - added}"
            ) from err
        meta.shards.append(name)
        meta.count += len(pending)
        added += len(pending)
        pending.clear()
        write_json_atomic(out / META_NAME, asdict(meta))

    device = next(text_encoder.parameters()).device  # the token ids go where the embedding table is (e.g. cuda)
    for start in tqdm(range(0, len(todo), batch_size), desc="embed-captions", unit="batch", disable=not todo):
        chunk = todo[start:start + batch_size]
        embeds = spec.encode_prompts(tokenizer, text_encoder, chunk, max_length, device=device)
        for prompt, row in zip(chunk, embeds.to("cpu")):  # stored from the CPU
            pending[caption_key(prompt)] = row.contiguous().clone()
        if len(pending) >= shard_size:
            flush()
    flush()
    if not (out / META_NAME).is_file():  # nothing to add to a new store: still write its description
        write_json_atomic(out / META_NAME, asdict(meta))
    return meta, added


def check_caption_store(store: CaptionEmbeddings, pretrained: str, dtype: torch.dtype, max_length: int,
                        dim: int) -> None:
    """The store must come from this model's T5 architecture, in the run's dtype, at the transformer's size."""
    t5_config = AutoConfig.from_pretrained(pretrained, subfolder="text_encoder")
    store.check_fits(signature=text_encoder_signature(t5_config), dtype=dtype, max_length=max_length, dim=dim)
    logger.info("caption embeddings: %d captions from %s (%s); T5 is not loaded", len(store), store.folder,
                store.meta.model)


def check_captions_stored(store: CaptionEmbeddings, records: list, eval_records: list) -> None:
    """DataError (one line) if any prompt the run can use is missing from the store: this rank's training
    captions (`records`), the deletion caption, "" (caption dropout, validation's negative prompt) and the
    captions of the `eval_records` validation edits."""
    prompts = ["", DELETE_CAPTION] + [c for r in [*records, *eval_records] for c in r.captions]
    missing = store.missing(prompts)
    if missing:
        raise DataError(
            f"caption_embeddings {store.folder} lacks {len(missing)} of the run's {len(set(prompts))} captions "
            f"(first: {missing[0]!r}): run `vivid data embed-captions` on the train and eval manifests into it"
        )
