"""The batch plan: which records go into which batch, as a pure function of (seed, rank, world size, state).

- Rank split: every record belongs to exactly one rank, fixed for the whole run. Either whole shards are dealt
  to the ranks (`assign_shards`: each rank parses only its own shards) or, with fewer shards than ranks, the
  records are (`split_records`: each (kind, task) group permuted from the seed and dealt round-robin; every
  rank computes the same split). A rank's planner only ever sees its own records, in every stream, as bad-sample
  replacements and as deletion donors, so the ranks' record sets are disjoint over the whole run.
- Streams: one per (kind, task), over this rank's records. The add&modify stream of a kind holds its add_modify
  records; the delete stream holds every record of the kind (delete records are used as they are, add_modify
  records become deletion samples by synthesis).
- Epochs: each stream walks a permutation of this rank's pool drawn from (seed, stream, epoch, rank).
- Mixing: batch b's kind (image with probability ratio / (ratio + 1)) and each slot's task (delete with
  probability delete_ratio) are drawn from (seed, b) only and from which streams exist on *any* rank
  (`available`, the same on every rank), so all ranks load the same kind at the same step. A rank without
  records for a stream the mix draws is a DataError rather than a silent divergence. Batches are kind-pure and
  sized per kind.
- Buckets (aspect-ratio training sizes, `vivid.conditioning.buckets`): with more than one bucket every stream is split per
  bucket (each record belongs to the bucket nearest its source's aspect) and each sub-stream walks its own
  permutations. After the kind, batch b's bucket is drawn from (seed, b, rank) with probability proportional to
  this rank's records of the kind in the bucket, so every record is drawn equally often in expectation; all
  slots of the batch come from that bucket (a slot whose task has no records in the bucket takes the kind's
  other task there). The bucket is per rank: ranks train on different sizes at the same step (DDP needs the same
  parameters, not the same shapes); the kind stays the same on every rank. One bucket: exactly the plan without.
- Resume: the state is (next batch number, per stream (and bucket): epoch, position); the batch carrying state s
  is followed by exactly the batches planned from s.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from .errors import DataError

STREAMS = ("video/add_modify", "video/delete", "image/add_modify", "image/delete")
_KIND_SALT, _SLOT_SALT, _PERM_SALT, _SPLIT_SALT, _BUCKET_SALT = 0x4B1D, 0x5107, 0x9E37, 0x5A11, 0xB0C7


def assign_shards(n_shards: int, rank: int, world_size: int) -> list[int]:
    """The shard indices (into the sorted shard list) that `rank` reads: shards rank, rank + W, ..."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in [0, world_size={world_size})")
    return list(range(rank, n_shards, world_size))


def split_records(groups: Sequence[str], *, seed: int, rank: int, world_size: int) -> list[int]:
    """This rank's record indices, ascending. `groups[i]` is record i's group (e.g. "video/add_modify"); each
    group is permuted from (seed, group) and dealt round-robin, starting one rank further for each successive
    group so the remainders spread over the ranks. Same result on every rank; the ranks' shares are disjoint
    and cover every record."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in [0, world_size={world_size})")
    members: dict[str, list[int]] = {}
    for i, g in enumerate(groups):
        members.setdefault(g, []).append(i)
    mine: list[int] = []
    for k, group in enumerate(sorted(members)):
        idx = np.asarray(members[group], dtype=np.int64)
        rng = np.random.default_rng((seed, _SPLIT_SALT, zlib.crc32(group.encode())))
        mine += idx[rng.permutation(len(idx))][(rank - k) % world_size :: world_size].tolist()
    return sorted(mine)


@dataclass(frozen=True)
class SampleSpec:
    stream: str
    record: int  # index into the loader's record list
    seed: tuple[int, ...]  # entropy for everything random about this sample (with an attempt number)
    bucket: int = 0  # index of the batch's bucket; bad-sample replacements come from the same (stream, bucket)


@dataclass
class BatchSpec:
    batch: int
    kind: str
    samples: list[SampleSpec]
    state_after: dict = field(default_factory=dict)
    bucket: int = 0  # index into the loader's bucket list: every sample of the batch has this size


def stream_id(name: str) -> int:
    return STREAMS.index(name)


def split_pools(
    pools: dict[str, list[int]], record_buckets: Sequence[int] | None, n_buckets: int
) -> dict[tuple[str, int], list[int]]:
    """Each stream's records per bucket: {(stream, bucket): records}, in pool order. `record_buckets[i]`: the
    bucket of record i (None: every record in bucket 0)."""
    out: dict[tuple[str, int], list[int]] = {(s, k): [] for s in STREAMS for k in range(n_buckets)}
    for stream in STREAMS:
        for i in pools.get(stream, []):
            out[(stream, record_buckets[i] if record_buckets is not None else 0)].append(i)
    return out


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
        available: Iterable[str] | None = None,
        record_buckets: Sequence[int] | None = None,
        bucket_names: Sequence[str] = (),
    ):
        """`pools`: this rank's record indices per stream. `available`: the streams that hold records on any
        rank (must be the same on every rank; default: the non-empty local pools, right for one rank).
        `bucket_names`: the buckets ("HxW", see `vivid.conditioning.buckets`), none or one = no bucketing; `record_buckets[i]`:
        the index of record i's bucket (needed with two or more buckets)."""
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, world_size={world_size})")
        self.pools = {s: list(pools.get(s, [])) for s in STREAMS}
        self.bucket_names = list(bucket_names) if len(bucket_names) > 1 else []
        if self.bucket_names and record_buckets is None:
            raise ValueError("record_buckets is needed with more than one bucket")
        n_buckets = max(1, len(self.bucket_names))
        self.sub_pools = split_pools(self.pools, record_buckets if self.bucket_names else None, n_buckets)
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.delete_ratio = delete_ratio
        self.batch_sizes = {"video": video_batch_size, "image": image_batch_size}
        if available is None:
            available = [s for s in STREAMS if self.pools[s]]
        self.available = frozenset(available)
        unknown = sorted(self.available - set(STREAMS))
        if unknown:
            raise ValueError(f"unknown stream {unknown[0]!r} (streams: {', '.join(STREAMS)})")
        has = {k: f"{k}/add_modify" in self.available or f"{k}/delete" in self.available for k in ("video", "image")}
        if not any(has.values()):
            raise ValueError("no usable records: the manifests hold no valid video or image samples")
        if not has["image"] or image_video_ratio == 0:
            self.p_image = 0.0
        elif not has["video"] or math.isinf(image_video_ratio):
            self.p_image = 1.0
        else:
            self.p_image = image_video_ratio / (image_video_ratio + 1.0)
        for stream in self.drawn_streams():
            if not self.pools[stream]:
                raise DataError(
                    f"rank {rank} of {world_size} has no records for the {stream} stream, which the batch mix "
                    "draws on every rank. With whole shards per rank, every rank's shards must hold every kind "
                    "the mix draws: mix kinds within shards, or set data.image_video_ratio=0 (videos only) or "
                    ".inf (images only). With a per-record split, a kind has fewer records than there are ranks."
                )
        # per kind, this rank's records of the kind in each bucket (over the streams the mix draws): bucket weights
        self.bucket_weights = {
            kind: np.array([len(set().union(*[self.sub_pools[(f"{kind}/{t}", k)] for t in self._tasks(kind)]))
                            for k in range(n_buckets)], dtype=np.float64)
            for kind in ("video", "image")
        }
        self.batch = 0
        self.positions = {self._key(s, k): [0, 0] for s in STREAMS for k in range(n_buckets)}  # epoch, position
        self._orders: dict[str, tuple[int, np.ndarray]] = {}

    def _key(self, stream: str, bucket: int) -> str:
        """The state key of a stream's bucket: the stream's name, with "@HxW" when bucketed."""
        return f"{stream}@{self.bucket_names[bucket]}" if self.bucket_names else stream

    # ----------------------------------------------------------------- state
    def state_dict(self) -> dict:
        return {
            "batch": self.batch,
            "streams": {s: list(p) for s, p in self.positions.items()},
            "seed": self.seed,
            "rank": self.rank,
            "world_size": self.world_size,
            "buckets": list(self.bucket_names),
        }

    def load_state_dict(self, state: dict) -> None:
        for key, mine in (("seed", self.seed), ("world_size", self.world_size), ("rank", self.rank)):
            if key in state and state[key] != mine:
                raise ValueError(f"data loader state was saved with {key}={state[key]}, this loader has {key}={mine}")
        saved = list(state.get("buckets", []))  # states without the key: one size
        if saved != self.bucket_names:
            raise ValueError(
                f"data loader state was saved with buckets {saved or 'none (one size)'}, this loader has "
                f"{self.bucket_names or 'none (one size)'}"
            )
        self.batch = int(state["batch"])
        self.positions = {key: [int(v) for v in state["streams"].get(key, [0, 0])] for key in self.positions}

    # ----------------------------------------------------------------- plan
    def _tasks(self, kind: str) -> list[str]:
        """The tasks slots of `kind` can be given (from `available`, so the same on every rank)."""
        am, de = f"{kind}/add_modify" in self.available, f"{kind}/delete" in self.available
        if not de:
            return ["add_modify"] if am else []
        if not am:
            return ["delete"]
        return [t for t, p in (("add_modify", 1 - self.delete_ratio), ("delete", self.delete_ratio)) if p > 0]

    def drawn_streams(self) -> list[str]:
        """The streams the batch mix can draw from (each must be non-empty on every rank)."""
        kinds = [k for k, p in (("video", 1 - self.p_image), ("image", self.p_image)) if p > 0]
        return [f"{k}/{t}" for k in kinds for t in self._tasks(k)]

    def rank_share(self, stream: str, epoch: int, bucket: int = 0) -> np.ndarray:
        """This rank's records of `stream` (in `bucket`) for `epoch`, in order: a permutation of its pool."""
        key = self._key(stream, bucket)
        cached = self._orders.get(key)
        if cached is not None and cached[0] == epoch:
            return cached[1]
        pool = np.asarray(self.sub_pools[(stream, bucket)], dtype=np.int64)
        entropy = (self.seed, _PERM_SALT, stream_id(stream), epoch, self.rank) + ((bucket,) if self.bucket_names else ())
        share = pool[np.random.default_rng(entropy).permutation(len(pool))]
        self._orders[key] = (epoch, share)
        return share

    def _take(self, stream: str, bucket: int = 0) -> int:
        key = self._key(stream, bucket)
        epoch, pos = self.positions[key]
        share = self.rank_share(stream, epoch, bucket)
        if pos >= len(share):
            epoch, pos = epoch + 1, 0
            share = self.rank_share(stream, epoch, bucket)
        self.positions[key] = [epoch, pos + 1]
        return int(share[pos])

    def batch_bucket(self, batch: int, kind: str) -> int:
        """Batch `batch`'s bucket on this rank: drawn in proportion to this rank's records of `kind` per bucket."""
        weights = self.bucket_weights[kind]
        if len(weights) == 1:
            return 0
        u = np.random.default_rng((self.seed, _BUCKET_SALT, batch, self.rank)).random()
        return int(min(np.searchsorted(np.cumsum(weights) / weights.sum(), u, side="right"), len(weights) - 1))

    def batch_kind(self, batch: int) -> str:
        u = np.random.default_rng((self.seed, _KIND_SALT, batch)).random()
        return "image" if u < self.p_image else "video"

    def slot_task(self, batch: int, slot: int, kind: str) -> str:
        if f"{kind}/delete" not in self.available:
            return "add_modify"
        if f"{kind}/add_modify" not in self.available:
            return "delete"
        u = np.random.default_rng((self.seed, _SLOT_SALT, batch, slot)).random()
        return "delete" if u < self.delete_ratio else "add_modify"

    def next_batch(self) -> BatchSpec:
        b = self.batch
        kind = self.batch_kind(b)
        bucket = self.batch_bucket(b, kind)
        samples = []
        for slot in range(self.batch_sizes[kind]):
            task = self.slot_task(b, slot, kind)
            if not self.sub_pools[(f"{kind}/{task}", bucket)]:  # only with buckets: the other task is there
                task = "delete" if task == "add_modify" else "add_modify"
            stream = f"{kind}/{task}"
            samples.append(SampleSpec(stream, self._take(stream, bucket), (self.seed, self.rank, b, slot), bucket))
        self.batch = b + 1
        return BatchSpec(b, kind, samples, self.state_dict(), bucket)
