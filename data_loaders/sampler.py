"""The batch plan: which records go into which batch, as a pure function of (seed, rank, world size, state).

- Streams: one per (kind, task). The add&modify stream of a kind holds its add_modify records; the delete
  stream holds every record of the kind (delete records are used as they are, add_modify records become
  deletion samples by synthesis).
- Epochs: each stream walks a permutation of its records drawn from (seed, stream, epoch); rank r of W takes
  positions r, r+W, ... of it (padded by wrapping to a multiple of W, so every rank gets the same count and the
  ranks stay in step). Within an epoch the ranks' samples are disjoint.
- Mixing: batch b's kind (image with probability ratio / (ratio + 1)) and each slot's task (delete with
  probability delete_ratio) are drawn from (seed, b) only, identical on every rank, so all ranks load the same
  kind at the same step. Batches are kind-pure and sized per kind.
- Resume: the state is (next batch number, per stream: epoch, position); the batch carrying state s is followed
  by exactly the batches planned from s.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

STREAMS = ("video/add_modify", "video/delete", "image/add_modify", "image/delete")
_KIND_SALT, _SLOT_SALT, _PERM_SALT = 0x4B1D, 0x5107, 0x9E37


@dataclass(frozen=True)
class SampleSpec:
    stream: str
    record: int  # index into the loader's record list
    seed: tuple[int, ...]  # entropy for everything random about this sample (with an attempt number)


@dataclass
class BatchSpec:
    batch: int
    kind: str
    samples: list[SampleSpec]
    state_after: dict = field(default_factory=dict)


def stream_id(name: str) -> int:
    return STREAMS.index(name)


class BatchPlanner:
    def __init__(
        self,
        pools: dict[str, list[int]],
        *,
        seed: int,
        rank: int,
        world_size: int,
        image_video_ratio: float,
        delete_ratio: float,
        video_batch_size: int,
        image_batch_size: int,
    ):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, world_size={world_size})")
        self.pools = {s: list(pools.get(s, [])) for s in STREAMS}
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.delete_ratio = delete_ratio
        self.batch_sizes = {"video": video_batch_size, "image": image_batch_size}
        has = {k: bool(self.pools[f"{k}/add_modify"] or self.pools[f"{k}/delete"]) for k in ("video", "image")}
        if not any(has.values()):
            raise ValueError("no usable records: the manifests hold no valid video or image samples")
        if not has["image"] or image_video_ratio == 0:
            self.p_image = 0.0
        elif not has["video"]:
            self.p_image = 1.0
        else:
            self.p_image = image_video_ratio / (image_video_ratio + 1.0)
        self.batch = 0
        self.positions = {s: [0, 0] for s in STREAMS}  # epoch, position in this rank's share
        self._orders: dict[str, tuple[int, np.ndarray]] = {}

    # ----------------------------------------------------------------- state
    def state_dict(self) -> dict:
        return {
            "batch": self.batch,
            "streams": {s: list(p) for s, p in self.positions.items()},
            "seed": self.seed,
            "rank": self.rank,
            "world_size": self.world_size,
        }

    def load_state_dict(self, state: dict) -> None:
        for key, mine in (("seed", self.seed), ("world_size", self.world_size), ("rank", self.rank)):
            if key in state and state[key] != mine:
                raise ValueError(f"data loader state was saved with {key}={state[key]}, this loader has {key}={mine}")
        self.batch = int(state["batch"])
        self.positions = {s: [int(v) for v in state["streams"].get(s, [0, 0])] for s in STREAMS}

    # ----------------------------------------------------------------- plan
    def rank_share(self, stream: str, epoch: int) -> np.ndarray:
        """This rank's records of `stream` for `epoch`, in order."""
        cached = self._orders.get(stream)
        if cached is not None and cached[0] == epoch:
            return cached[1]
        pool = np.asarray(self.pools[stream], dtype=np.int64)
        rng = np.random.default_rng((self.seed, _PERM_SALT, stream_id(stream), epoch))
        perm = pool[rng.permutation(len(pool))]
        per_rank = math.ceil(len(pool) / self.world_size)
        padded = np.resize(perm, per_rank * self.world_size)  # wraps around when len(pool) % W != 0
        share = padded[self.rank :: self.world_size]
        self._orders[stream] = (epoch, share)
        return share

    def _take(self, stream: str) -> int:
        epoch, pos = self.positions[stream]
        share = self.rank_share(stream, epoch)
        if pos >= len(share):
            epoch, pos = epoch + 1, 0
            share = self.rank_share(stream, epoch)
        self.positions[stream] = [epoch, pos + 1]
        return int(share[pos])

    def batch_kind(self, batch: int) -> str:
        u = np.random.default_rng((self.seed, _KIND_SALT, batch)).random()
        return "image" if u < self.p_image else "video"

    def slot_task(self, batch: int, slot: int, kind: str) -> str:
        if not self.pools[f"{kind}/delete"]:
            return "add_modify"
        if not self.pools[f"{kind}/add_modify"]:
            return "delete"
        u = np.random.default_rng((self.seed, _SLOT_SALT, batch, slot)).random()
        return "delete" if u < self.delete_ratio else "add_modify"

    def next_batch(self) -> BatchSpec:
        b = self.batch
        kind = self.batch_kind(b)
        samples = []
        for slot in range(self.batch_sizes[kind]):
            stream = f"{kind}/{self.slot_task(b, slot, kind)}"
            samples.append(SampleSpec(stream, self._take(stream), (self.seed, self.rank, b, slot)))
        self.batch = b + 1
        return BatchSpec(b, kind, samples, self.state_dict())
