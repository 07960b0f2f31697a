"""The trainer's step on one micro-batch, free of accelerate: encode the batch (VAE, captions), the base's loss.

Everything model-specific (VAE encoding, text encoding, the transformer input, the training objective and its
loss weighting) is the model specification's (`vivid/model/spec.py`); what is the trainer's own lives here: the
caches of VAE posteriors and caption embeddings, moving offloaded encoders onto the device for the step, and
precomputed caption embeddings. `TrainStep` is what the trainer calls for every micro-batch and what the
benchmarks time (followed by backward and the optimizer step, which accelerate does in the trainer).
"""

from __future__ import annotations

import contextlib
import hashlib
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from train.models import on_device
from vivid.model.spec import ModelSpecification


class LRUCache:
    """Values (tensors, or tuples of tensors) of keys seen before, as compact CPU copies, least recently used
    dropped beyond `max_items`; `hits` / `misses` count the lookups of `cached`.

    Used twice by the trainer: for VAE posteriors (`cache_vae_latents`: the VAE is frozen, so an input encoded once
    never needs encoding again; the target latents are still drawn from the posterior afresh at every step; worth
    it where a small data set is revisited, useless on VIVID-10M, where inputs rarely recur) and for caption
    embeddings (one CogVideoX-5B caption is 226 x 4096 bf16 = 1.85 MB and VIVID-10M captions are nearly all
    distinct, hence the bound).
    """

    def __init__(self, max_items: int):
        if max_items < 1:
            raise ValueError(f"max_items must be >= 1, got {max_items}")
        self.max_items = max_items
        self._items: OrderedDict[Hashable, Any] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def missing(self, keys: Iterable[Hashable]) -> list[Hashable]:
        """The distinct keys of `keys` not in the cache, in order of first appearance."""
        return [k for k in dict.fromkeys(keys) if k not in self._items]

    def get(self, key: Hashable) -> Any | None:
        """The cached value (marked most recently used), or None."""
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: Hashable, value: Any) -> None:
        """Store a CPU copy of `value`, dropping the least recently used entries beyond `max_items`. Always a
        copy: a row of a batch's tensor is a view that would keep the whole batch alive."""
        copy = lambda t: t.detach().to("cpu", copy=True)  # noqa: E731
        self._items[key] = tuple(copy(t) for t in value) if isinstance(value, tuple) else copy(value)
        self._items.move_to_end(key)
        while len(self._items) > self.max_items:
            self._items.popitem(last=False)

    def cached(self, keys: Sequence[Hashable], compute: Callable[[list[int]], Iterable[Any]]) -> list[Any]:
        """The values of `keys` (duplicates allowed): hits from the cache, the distinct missing ones from one call of
        `compute(indices into keys)`, stored. The hits are read before any store, which may evict them."""
        found = {k: self.get(k) for k in dict.fromkeys(keys)}
        missing = [k for k, value in found.items() if value is None]
        self.hits += len(keys) - sum(k in missing for k in keys)
        self.misses += len(missing)
        if missing:
            first = {k: i for i, k in reversed(list(enumerate(keys)))}
            for k, value in zip(missing, compute([first[k] for k in missing])):
                found[k] = value
                self.put(k, value)
        return [found[k] for k in keys]


def content_key(tensor: torch.Tensor) -> bytes:
    """A digest of one input (e.g. a uint8 clip (F, 3, H, W)): its shape, dtype and bytes."""
    data = tensor.detach().to("cpu").contiguous()
    h = hashlib.blake2b(digest_size=20)
    h.update(repr((tuple(data.shape), str(data.dtype))).encode())
    h.update(data.numpy().tobytes())
    return h.digest()


@dataclass
class TrainStep:
    """The trainer's step on one micro-batch: `loss(transformer, batch, generator)`.

    The VAE encodes the batch (`spec.encode_batch`, with `latent_cache` only the inputs not seen before), the
    captions come from `captions` (precomputed: a callable `(prompts, device) -> embeddings`, e.g.
    `CaptionEmbeddings.get`) or from the text encoder (with `text_cache` only those not seen before; the encoder
    goes to the device only then), and the spec computes its loss. With `offload_encoders` the VAE and the text
    encoder live on the CPU between steps. `generator` draws the posterior sample, timesteps and noise, so a step
    is reproducible from its seed alone.
    """

    spec: ModelSpecification
    vae: torch.nn.Module
    scheduler: Any
    device: torch.device
    tokenizer: Any = None
    text_encoder: torch.nn.Module | None = None
    max_text_length: int = 0
    captions: Callable[[Sequence[str], torch.device], torch.Tensor] | None = None
    latent_cache: LRUCache | None = None
    text_cache: LRUCache | None = None
    mask_loss_weight: float = 0.0
    offload_encoders: bool = False
    # False: the text-to-video objective: the target video alone is encoded and the conditions have no channels
    conditioned: bool = True
    # the share of video batches trained as joint keyframe edits (`keyframe_batch`, `joint_training_attention`)
    joint_keyframe_prob: float = 0.0
    joint_keyframes: int = 4

    def posterior(self, vae: torch.nn.Module, videos_uint8: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The spec's VAE posterior (mean, std) of uint8 videos; with `latent_cache`, the VAE encodes only the
        inputs it lacks (in one batch)."""
        if self.latent_cache is None:
            return self.spec.posterior(vae, videos_uint8)

        def encode(indices: list[int]) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
            mean, std = self.spec.posterior(vae, videos_uint8[indices])
            return zip(mean, std)

        found = self.latent_cache.cached([content_key(v) for v in videos_uint8], encode)
        return (torch.stack([m.to(vae.device) for m, _ in found]), torch.stack([s.to(vae.device) for _, s in found]))

    def encode_batch(
        self, batch: dict[str, Any], generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(target latents drawn from the posterior, conditions) of a loader batch (see `spec.encode_batch`); not
        `conditioned`, the conditions have zero channels (the transformer's input is the noisy latents alone)."""
        with on_device(self.vae, self.device, self.offload_encoders):
            if self.conditioned:
                return self.spec.encode_batch(self.vae, batch, generator, posterior=self.posterior)
            latents = self.spec.encode_targets(self.vae, batch["video"], generator, posterior=self.posterior)
            return latents, latents[:, :, :0]

    @torch.no_grad()
    def encode_prompts(self, prompts: Sequence[str]) -> torch.Tensor:
        """Caption embeddings (B, max_text_length, D) on the device: precomputed, cached or encoded."""
        if self.captions is not None:
            return self.captions(prompts, self.device)

        def encode(indices: list[int]) -> torch.Tensor:
            chunk = [prompts[i] for i in indices]
            return self.spec.encode_prompts(self.tokenizer, self.text_encoder, chunk, self.max_text_length)

        prompts = list(prompts)
        if self.text_cache is None:  # each distinct caption once
            distinct = list(dict.fromkeys(prompts))
            with on_device(self.text_encoder, self.device, self.offload_encoders):
                rows = dict(zip(distinct, encode([prompts.index(p) for p in distinct])))
        else:
            needs_encoder = bool(self.text_cache.missing(prompts))
            with on_device(self.text_encoder, self.device, self.offload_encoders and needs_encoder):
                rows = dict(zip(prompts, self.text_cache.cached(prompts, encode)))
        return torch.stack([rows[p].to(self.device) for p in prompts])

    def loss(
        self,
        transformer: torch.nn.Module,
        batch: dict[str, Any],
        generator: torch.Generator | None = None,
        autocast: contextlib.AbstractContextManager | None = None,
    ) -> torch.Tensor:
        """The spec's training loss (a scalar) of one loader batch; the transformer's forward runs under `autocast`
        (the trainer's `accelerator.autocast()`). A video batch drawn for joint keyframe training (probability
        `joint_keyframe_prob`, drawn from `generator`) is trained as its frames' one-frame edits, each attending to
        the others of its video."""
        joint = self.joint_keyframes_of(batch, generator)
        if joint:
            batch = keyframe_batch(batch, joint)
        latents, conditions = self.encode_batch(batch, generator)
        embeds = self.encode_prompts(batch["prompt"])
        region = None
        if not self.conditioned and self.mask_loss_weight:  # the text-to-video objective: the entity's cells
            region = self.spec.pack_mask(batch["mask"].float()).amax(dim=2, keepdim=True)
        with autocast or contextlib.nullcontext(), \
                joint_training_attention(transformer, joint) if joint else contextlib.nullcontext():
            return self.spec.compute_loss(
                transformer, self.scheduler, latents, conditions, embeds, generator, self.mask_loss_weight, region
            )

    def joint_keyframes_of(self, batch: dict[str, Any], generator: torch.Generator | None) -> int:
        """Keyframes per video if this batch trains as joint keyframe edits, else 0. Nothing is drawn unless
        `joint_keyframe_prob` is set (runs without it keep their random streams)."""
        frames = batch["video"].shape[1]
        if not (self.conditioned and self.joint_keyframe_prob > 0 and frames >= 2):
            return 0
        drawn = float(torch.rand((), generator=generator, device=generator.device if generator else "cpu"))
        return min(self.joint_keyframes, frames) if drawn < self.joint_keyframe_prob else 0


def keyframe_batch(batch: dict[str, Any], keyframes: int) -> dict[str, Any]:
    """A video batch (B videos of F frames) as B x `keyframes` one-frame samples, video b's frames in rows
    b K .. b K + K - 1: frames evenly spaced from the first to the last (the ends of a clip, where a long edit's
    joint keyframes lie; a KIVE-given first or last frame stays given, as the user's keyframe is in the joint
    pass), each with its video's caption."""
    frames = batch["video"].shape[1]
    index = torch.linspace(0, frames - 1, keyframes).round().long()
    out = dict(batch)
    for name in ("video", "masked_video", "mask"):
        out[name] = batch[name][:, index].flatten(0, 1).unsqueeze(1)
    out["prompt"] = [p for p in batch["prompt"] for _ in range(keyframes)]
    return out


@contextlib.contextmanager
def joint_training_attention(transformer: torch.nn.Module, keyframes: int):
    """The joint keyframe attention (full, one group) over sets of `keyframes` consecutive batch rows, for one
    training forward. Under gradient checkpointing each block is checkpointed with the processors it has now, so
    that the backward's recompute, which runs after they are restored, recomputes what the loss was computed with."""
    from vivid.model.keyframe_attention import JointAttentionOptions, joint_keyframe_attention
    from vivid.model.transformer import unwrap

    model = unwrap(transformer)
    checkpoint = getattr(model, "_gradient_checkpointing_func", None)
    with joint_keyframe_attention(model, JointAttentionOptions(keyframes, keyframe_group=keyframes)):
        if checkpoint is not None:
            model._gradient_checkpointing_func = lambda block, *args: checkpoint(_WithProcessorsOfNow(block), *args)
        try:
            yield
        finally:
            if checkpoint is not None:
                model._gradient_checkpointing_func = checkpoint


class _WithProcessorsOfNow:
    """A transformer block that, whenever it is called (also by checkpointing's recompute in backward), runs with
    the attention processors it has at construction, restoring the ones it then finds."""

    def __init__(self, block: torch.nn.Module):
        self.block = block
        self.processors = [(m, m.processor) for m in block.modules() if hasattr(m, "set_processor")]

    def __call__(self, *args, **kwargs):
        found = [(m, m.processor) for m, _ in self.processors]
        for module, processor in self.processors:
            module.set_processor(processor)
        try:
            return self.block(*args, **kwargs)
        finally:
            for module, processor in found:
                module.set_processor(processor)
