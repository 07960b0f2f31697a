"""The model-specific part of a VIVID training step, small and free of accelerate.

CogVideoX's objective as diffusers' CogVideoX LoRA example trains it: a timestep drawn uniformly from
[0, num_train_timesteps), noise added with the scheduler, the transformer's v-prediction turned into an x0
prediction with `scheduler.get_velocity(model_output, noisy, t)`, and the squared error to the clean latents
weighted by 1 / (1 - alphas_cumprod[t]). VIVID only changes the transformer input: noise | conditions.

`training_step` runs one whole step (encode, forward, backward, optimizer) and is what benchmarks time.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from diffusers import AutoencoderKLCogVideoX, CogVideoXDDIMScheduler
from diffusers.utils.torch_utils import randn_tensor

from vivid.constants import LATENT_CHANNELS
from vivid.model.conditioning import conditions_from_latents, rotary_embeddings, to_unit_range, transformer_input
from vivid.model.transformer import compute_dtype


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The bare model under a DDP / DeepSpeed wrapper (for its config)."""
    while hasattr(model, "module"):
        model = model.module
    return model


class VAELatentCache:
    """VAE posteriors (mean, std) of inputs seen before, keyed by the input's content, on the CPU, least recently
    used dropped beyond `max_items`.

    The VAE is frozen, so an input it has encoded once never needs encoding again: the cache returns the same
    posterior, and the target latents are still drawn from it afresh at every step. Where a data set is small and
    revisited (the tiny recipe's synthetic data: every image, every 9-frame clip and every mask augmentation recurs),
    most encodes become lookups, and the VAE is most of a CPU step's cost. On VIVID-10M (millions of clips, random
    windows) inputs rarely recur: leave it off there (`cache_vae_latents: false`, the default).
    """

    def __init__(self, max_items: int = 20000):
        if max_items < 1:
            raise ValueError(f"max_items must be >= 1, got {max_items}")
        self.max_items = max_items
        self._items: OrderedDict[bytes, tuple[torch.Tensor, torch.Tensor]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._items)

    @staticmethod
    def key(video: torch.Tensor) -> bytes:
        """A digest of one input (uint8 (F, 3, H, W)): its shape and bytes."""
        data = video.detach().to("cpu").contiguous()
        h = hashlib.blake2b(digest_size=20)
        h.update(repr((tuple(data.shape), str(data.dtype))).encode())
        h.update(data.numpy().tobytes())
        return h.digest()

    def get(self, key: bytes) -> tuple[torch.Tensor, torch.Tensor] | None:
        item = self._items.get(key)
        if item is not None:
            self._items.move_to_end(key)
        return item

    def put(self, key: bytes, mean: torch.Tensor, std: torch.Tensor) -> None:
        self._items[key] = (mean.detach().to("cpu", copy=True), std.detach().to("cpu", copy=True))
        self._items.move_to_end(key)
        while len(self._items) > self.max_items:
            self._items.popitem(last=False)


@torch.no_grad()
def vae_posteriors(
    vae: AutoencoderKLCogVideoX, videos_uint8: torch.Tensor, cache: VAELatentCache | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior mean and std (B, T, 16, h, w), unscaled, of uint8 videos (B, F, 3, H, W); with `cache`, the VAE
    encodes only the inputs it lacks (in one batch) and stores them."""
    def encode(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = to_unit_range(x).to(device=vae.device, dtype=vae.dtype).permute(0, 2, 1, 3, 4)  # B, C, F, H, W
        dist = vae.encode(x).latent_dist
        return dist.mean.permute(0, 2, 1, 3, 4), dist.std.permute(0, 2, 1, 3, 4)

    if cache is None:
        return encode(videos_uint8)
    keys = [cache.key(v) for v in videos_uint8]
    found = {k: cache.get(k) for k in dict.fromkeys(keys)}
    missing = [k for k, item in found.items() if item is None]
    cache.hits += len(keys) - sum(k in missing for k in keys)
    cache.misses += len(missing)
    if missing:
        first = {k: i for i, k in reversed(list(enumerate(keys)))}
        mean, std = encode(videos_uint8[[first[k] for k in missing]])
        for k, m, s in zip(missing, mean, std):
            found[k] = (m, s)
            cache.put(k, m, s)
    device = vae.device
    return (
        torch.stack([found[k][0].to(device) for k in keys]),
        torch.stack([found[k][1].to(device) for k in keys]),
    )


@torch.no_grad()
def encode_batch(
    vae: AutoencoderKLCogVideoX,
    batch: dict[str, Any],
    generator: torch.Generator | None = None,
    cache: VAELatentCache | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A loader batch -> (target latents (B, T, 16, h, w) sampled from the posterior, conditions (B, T, 20, h, w)).

    The VAE is frozen; nothing here keeps a graph. With `cache`, inputs seen before are not encoded again.
    """
    for name in ("video", "masked_video", "mask"):
        if name not in batch:
            raise KeyError(f"batch has no {name!r} (keys: {sorted(batch)})")
    video, masked, mask = batch["video"], batch["masked_video"], batch["mask"]
    if video.dim() != 5 or video.shape[2] != 3 or masked.shape != video.shape:
        raise ValueError(
            f"batch video {tuple(video.shape)} / masked_video {tuple(masked.shape)} must both be (B, F, 3, H, W)"
        )
    if mask.shape != (*video.shape[:2], 1, *video.shape[3:]):
        raise ValueError(f"batch mask {tuple(mask.shape)} must be (B, F, 1, H, W) for video {tuple(video.shape)}")
    scale = vae.config.scaling_factor
    mean, std = vae_posteriors(vae, video, cache)
    # a posterior sample as diffusers' DiagonalGaussianDistribution.sample draws it (same generator use)
    noise = randn_tensor(mean.permute(0, 2, 1, 3, 4).shape, generator=generator, device=mean.device, dtype=mean.dtype)
    latents = (mean + std * noise.permute(0, 2, 1, 3, 4)) * scale
    masked_mean, _ = vae_posteriors(vae, masked, cache)  # conditions use the posterior's mode (= mean)
    return latents, conditions_from_latents(masked_mean * scale, mask.float())


def compute_loss(
    transformer: torch.nn.Module,
    scheduler: CogVideoXDDIMScheduler,
    latents: torch.Tensor,
    conditions: torch.Tensor,
    prompt_embeds: torch.Tensor,
    generator: torch.Generator | None = None,
    mask_loss_weight: float = 0.0,
) -> torch.Tensor:
    """The weighted v-prediction loss (a scalar) for clean `latents` (B, T, 16, h, w) and their conditions.

    `transformer` may be wrapped (DDP, DeepSpeed); `generator` draws the timesteps and the noise, so a step
    is reproducible from its generator's seed alone. `mask_loss_weight` > 0 weights the latent cells of the
    edit region (any of the 4 packed mask channels set) 1 + `mask_loss_weight` times the others; the loss stays
    a weighted mean, so 0 is CogVideoX's own loss exactly.
    """
    b, t, _, h, w = latents.shape
    device = latents.device
    num_train_timesteps = scheduler.config.num_train_timesteps
    timesteps = torch.randint(0, num_train_timesteps, (b,), device=device, generator=generator).long()
    noise = torch.randn(latents.shape, device=device, dtype=latents.dtype, generator=generator)
    noisy = scheduler.add_noise(latents, noise, timesteps)

    height, width = h * 8, w * 8  # pixel size, for the rotary grid
    rotary = rotary_embeddings(unwrap(transformer), height, width, t, device)
    model_dtype = compute_dtype(unwrap(transformer))
    model_output = transformer(
        hidden_states=transformer_input(noisy, conditions).to(model_dtype),
        encoder_hidden_states=prompt_embeds.to(model_dtype),
        timestep=timesteps,
        image_rotary_emb=rotary,
        return_dict=False,
    )[0]
    model_pred = scheduler.get_velocity(model_output.float(), noisy.float(), timesteps)
    alphas_cumprod = scheduler.alphas_cumprod.to(device=device, dtype=torch.float32)[timesteps]
    weights = (1.0 / (1.0 - alphas_cumprod)).view(b, 1, 1, 1, 1)
    error = weights * (model_pred - latents.float()) ** 2
    if mask_loss_weight == 0:
        return error.reshape(b, -1).mean(dim=1).mean()
    if mask_loss_weight < 0:
        raise ValueError(f"mask_loss_weight must be >= 0, got {mask_loss_weight}")
    region = conditions[:, :, LATENT_CHANNELS:].amax(dim=2, keepdim=True).float()  # (B, T, 1, h, w), 1 = edit
    cell_weights = (1.0 + mask_loss_weight * region).expand_as(error)
    loss = (cell_weights * error).reshape(b, -1).sum(dim=1) / cell_weights.reshape(b, -1).sum(dim=1)
    return loss.mean()


class TextEmbeddingCache:
    """T5 embeddings of captions seen before, on the CPU, least recently used dropped beyond `max_items`.

    One CogVideoX-5B caption embedding is 226 x 4096 bf16 = 1.85 MB, and VIVID-10M captions are nearly all
    distinct: an unbounded cache grows by that much per sample until the host runs out of memory.
    """

    def __init__(self, max_items: int = 1024):
        if max_items < 1:
            raise ValueError(f"max_items must be >= 1, got {max_items}")
        self.max_items = max_items
        self._items: OrderedDict[str, torch.Tensor] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, prompt: object) -> bool:
        return prompt in self._items

    def missing(self, prompts: Iterable[str]) -> list[str]:
        """The distinct prompts of `prompts` not in the cache, in order of first appearance."""
        return [p for p in dict.fromkeys(prompts) if p not in self._items]

    def get(self, prompt: str) -> torch.Tensor | None:
        """The cached embedding (marked most recently used), or None."""
        embedding = self._items.get(prompt)
        if embedding is not None:
            self._items.move_to_end(prompt)
        return embedding

    def put(self, prompt: str, embedding: torch.Tensor) -> None:
        """Store a CPU copy of `embedding`, dropping the least recently used entries beyond `max_items`.

        Always a copy: a row of a batch's embeddings is a view that would keep the whole batch alive."""
        self._items[prompt] = embedding.detach().to("cpu", copy=True)
        self._items.move_to_end(prompt)
        while len(self._items) > self.max_items:
            self._items.popitem(last=False)


@torch.no_grad()
def encode_prompts(
    tokenizer: Any,
    text_encoder: torch.nn.Module,
    prompts: Sequence[str],
    max_length: int,
    device: torch.device | str | None = None,
    cache: TextEmbeddingCache | None = None,
) -> torch.Tensor:
    """T5 embeddings (B, max_length, D) of `prompts`, as CogVideoX's pipeline computes them.

    With `cache`, captions seen before are taken from it and new ones are added to it; T5 runs only on the
    captions it lacks (not at all when none is missing, so the caller need not move T5 to the GPU then).
    """
    device = device or text_encoder.device
    found: dict[str, torch.Tensor] = {}
    if cache is not None:  # read the hits before adding: adding may evict them
        for p in dict.fromkeys(prompts):
            hit = cache.get(p)
            if hit is not None:
                found[p] = hit
    missing = [p for p in dict.fromkeys(prompts) if p not in found]
    if missing:
        ids = tokenizer(
            list(missing), padding="max_length", max_length=max_length, truncation=True,
            add_special_tokens=True, return_tensors="pt",
        ).input_ids
        embeds = text_encoder(ids.to(text_encoder.device))[0]
        for p, e in zip(missing, embeds):
            found[p] = e
            if cache is not None:
                cache.put(p, e)
    return torch.stack([found[p].to(device) for p in prompts])


def training_step(
    transformer: torch.nn.Module,
    vae: AutoencoderKLCogVideoX,
    scheduler: CogVideoXDDIMScheduler,
    batch: dict[str, Any],
    prompt_embeds: torch.Tensor,
    optimizer: torch.optim.Optimizer | None = None,
    generator: torch.Generator | None = None,
    max_grad_norm: float | None = 1.0,
    autocast_dtype: torch.dtype | None = None,
) -> dict[str, float]:
    """One full VIVID training step without accelerate: VAE encoding (no grad), forward, backward, clipping
    and (if `optimizer` is given) the optimizer step. Returns {"loss", "grad_norm"}.

    For benchmarks: put the batch and the models on the GPU, build `transformer` with
    `make_vivid_transformer` (+ `enable_gradient_checkpointing()`), and time this function after a warm-up
    call (synchronise the device around it).
    """
    latents, conditions = encode_batch(vae, batch, generator)
    device_type = latents.device.type
    with torch.autocast(device_type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
        loss = compute_loss(transformer, scheduler, latents, conditions, prompt_embeds, generator)
    loss.backward()
    params = [p for p in transformer.parameters() if p.requires_grad]
    if max_grad_norm is not None:
        grad_norm = torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
    else:
        grad_norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params if p.grad is not None]))
    if optimizer is not None:
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return {"loss": float(loss.detach()), "grad_norm": float(grad_norm)}
