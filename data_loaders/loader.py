"""The public entry points: `build_train_loader` (infinite, resumable training batches) and `build_eval_samples`
(`read_eval_records` + `decode_eval_samples`).

    loader = build_train_loader(config.data, rank=accelerator.process_index, world_size=accelerator.num_processes)
    for batch in loader: ...                 # video, masked_video, mask, prompt, task, kind, id, kive, kive_last
    state = loader.state_dict()              # JSON-able; save it with the checkpoint
    loader.load_state_dict(state)            # the next batch is the one after the batch `state` was taken at

The plan (which records form which batch) is made in the main process by `sampler.BatchPlanner`; workers only
decode. Each batch carries the planner state after it, so the state of the last batch handed out is exact even
though workers run ahead.

Rank split (docs/data_format.md, "Sharding"): with world_size > 1 and at least as many shards as ranks, each
rank reads only its own shards (shard i goes to rank i % world_size); otherwise every rank reads every shard and
keeps its per-record share (`sampler.split_records`). Either way a rank trains, replaces bad samples and takes
deletion donors from its own records only.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, get_worker_info

from vivid.conditioning.buckets import bucket_index, bucket_name
from vivid.constants import DELETE_CAPTION

from .config import DataConfig
from .decode import media_size
from .deletion import raft_available
from .errors import BadSample, BadSampleTracker, DataError
from .format import Record, expand_manifests, read_manifests, read_shards
from .samples import build_sample, decode_record
from .sampler import STREAMS, BatchPlanner, BatchSpec, SampleSpec, assign_shards, split_pools, split_records

logger = logging.getLogger("data_loaders")
STATE_VERSION = 2  # 2: per-rank record split (version 1 positions indexed a shared, padded permutation)
SPLITS = ("records", "shards")
_CHECK_SALT = 0xC4EC  # the seeds of `unfillable_slot`'s trial samples (never those of a training sample)
# Library errors a corrupt file can raise past our own checks; they make the sample bad, not the run.
_DATA_EXCEPTIONS = (cv2.error, OSError, ValueError, RuntimeError, IndexError, EOFError)


def _pools(records: list[Record], config: DataConfig) -> dict[str, list[int]]:
    """Record indices per stream: add_modify records; every record of the kind for delete (if delete_ratio > 0)."""
    pools: dict[str, list[int]] = {s: [] for s in STREAMS}
    for i, r in enumerate(records):
        if r.task == "add_modify":
            pools[f"{r.kind}/add_modify"].append(i)
        if config.delete_ratio > 0:
            pools[f"{r.kind}/delete"].append(i)
    return pools


def _configured_streams(config: DataConfig) -> list[str]:
    """The streams the config asks for, without looking at the data (whole-shard split: a rank cannot see the
    other ranks' records, so every rank assumes the same thing and checks its own shards against it)."""
    kinds = [k for k, on in (("video", not np.isinf(config.image_video_ratio)), ("image", config.image_video_ratio > 0)) if on]
    tasks = ["add_modify"] + (["delete"] if config.delete_ratio > 0 else [])
    return [f"{k}/{t}" for k in kinds for t in tasks]


def record_buckets(records: list[Record], config: DataConfig) -> list[int]:
    """Each record's bucket (index into `config.sizes()`): the bucket nearest its source's aspect. Sizes come from
    the manifest where recorded, else from each media file's header (once per file, `num_workers` threads); a
    file that cannot be read goes to the bucket of height x width and fails as a bad sample when drawn."""
    sizes = config.sizes()
    if len(sizes) == 1:
        return [0] * len(records)
    unknown = sorted({(r.media, r.kind) for r in records if r.height is None or r.width is None})

    def probe(item: tuple[str, str]) -> tuple[int, int] | None:
        try:
            return media_size(*item)
        except BadSample:
            return None

    with ThreadPoolExecutor(max(1, config.num_workers)) as pool:
        probed = dict(zip(unknown, pool.map(probe, unknown)))
    if unknown:
        logger.info("buckets: read the frame size of %d media file(s) the manifests give no height/width for",
                    len(unknown))
    index: dict[tuple[int, int] | None, int] = {None: bucket_index(config.height, config.width, sizes)}
    out = []
    for r in records:
        size = (r.height, r.width) if r.height is not None and r.width is not None else probed[(r.media, r.kind)]
        if size not in index:
            index[size] = bucket_index(*size, sizes)
        out.append(index[size])
    return out


def collate(samples: list[dict[str, Any]], kind: str, shared: bool = False) -> dict[str, Any]:
    """Stack samples into the batch layout: video / masked_video uint8 (B, F, 3, H, W), mask uint8 (B, F, 1, H, W).

    The masked video is video * (1 - mask), written straight into the output; with KIVE the mask's frame 0 is
    empty, so masked frame 0 is the real frame 0. `shared` allocates in shared memory (worker processes), which
    saves the copy torch would otherwise make to send the batch to the main process.
    """
    b = len(samples)
    f, h, w = samples[0]["mask"].shape
    video = torch.empty((b, f, 3, h, w), dtype=torch.uint8)
    masked = torch.empty_like(video)
    mask = torch.empty((b, f, 1, h, w), dtype=torch.uint8)
    if shared:
        for t in (video, masked, mask):
            t.share_memory_()
    v, mv, m = video.numpy(), masked.numpy(), mask.numpy()  # numpy's strided copies are the fastest here
    for i, s in enumerate(samples):
        np.copyto(v[i], s["video"].transpose(0, 3, 1, 2))
        np.copyto(m[i, :, 0], s["mask"].view(np.uint8))
        np.multiply(v[i], 1 - m[i], out=mv[i])
    return {
        "video": video,
        "masked_video": masked,
        "mask": mask,
        "prompt": [s["prompt"] for s in samples],
        "task": [s["task"] for s in samples],
        "kind": kind,
        "id": [s["id"] for s in samples],
        "kive": torch.tensor([s["kive"] for s in samples], dtype=torch.bool),
        "kive_last": torch.tensor([s["kive_last"] for s in samples], dtype=torch.bool),
    }


class _BatchDataset(Dataset):
    """Maps a BatchSpec to a finished batch (runs in the workers)."""

    def __init__(
        self, records: list[Record], config: DataConfig, pools: dict[str, list[int]], buckets: list[int] | None = None
    ):
        """`records` and `pools`: this rank's records only, so donors and replacements never cross ranks.
        `buckets`: each record's bucket (index into `config.sizes()`); replacements come from the same bucket."""
        self.records = records
        self.config = config
        self.sizes = config.sizes()
        self.donors = {k: [r for r in records if r.kind == k and r.task == "add_modify"] for k in ("video", "image")}
        self.replacements = split_pools(pools, buckets, len(self.sizes))

    def __len__(self) -> int:  # never used for sampling (the sampler is infinite); here for tools that ask
        return len(self.records)

    def sample(self, spec: SampleSpec, events: list[tuple[str, str, str]]) -> dict[str, Any]:
        kind, task = spec.stream.split("/")
        last = ""
        for attempt in range(self.config.max_attempts):
            rng = np.random.default_rng(spec.seed + (attempt,))
            if attempt == 0:
                record = self.records[spec.record]
            else:
                pool = self.replacements[(spec.stream, spec.bucket)]
                record = self.records[pool[int(rng.integers(0, len(pool)))]]
            try:
                try:
                    return build_sample(record, task, self.donors[kind], self.config, rng, size=self.sizes[spec.bucket])
                except _DATA_EXCEPTIONS as err:
                    if isinstance(err, BadSample):
                        raise
                    raise BadSample("unreadable", f"{type(err).__name__}: {err}", record.id, record.media) from None
            except BadSample as bad:
                bad.with_context(record.id, record.media)
                events.append(bad.to_event())
                last = bad.message
        raise DataError(
            f"could not fill a {spec.stream} batch slot: {self.config.max_attempts} bad samples in a row; last: {last}"
        )

    def __getitem__(self, spec: BatchSpec) -> dict[str, Any]:
        events: list[tuple[str, str, str]] = []
        samples = [self.sample(s, events) for s in spec.samples]
        batch = collate(samples, spec.kind, shared=get_worker_info() is not None)
        batch["_state"] = spec.state_after
        batch["_events"] = events
        return batch


class _PlanSampler:
    """An infinite sampler of BatchSpecs (iterated by torch's DataLoader in the main process)."""

    def __init__(self, planner: BatchPlanner):
        self.planner = planner

    def __iter__(self) -> Iterator[BatchSpec]:
        while True:
            yield self.planner.next_batch()


def _identity(batch: Any) -> Any:
    return batch


class TrainLoader:
    """Infinite iterable of training batches; see the module docstring.

    `split="records"`: `records` are all records of the data set, identical on every rank; this rank keeps its
    share (`sampler.split_records`). `split="shards"`: `records` are already this rank's (its own shards).
    """

    def __init__(
        self,
        records: list[Record],
        config: DataConfig,
        rank: int = 0,
        world_size: int = 1,
        tracker: BadSampleTracker | None = None,
        split: str = "records",
    ):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {list(SPLITS)}, got {split!r}")
        self.config = config
        self.rank, self.world_size, self.split = rank, world_size, split
        if split == "records":
            available = [s for s, pool in _pools(records, config).items() if pool]  # over all ranks' records
            mine = split_records([f"{r.kind}/{r.task}" for r in records], seed=config.seed, rank=rank,
                                 world_size=world_size)
            records = [records[i] for i in mine]
        else:
            available = _configured_streams(config)
        self.records = records  # this rank's records only
        self.pools = _pools(records, config)
        self.buckets = record_buckets(records, config)  # each record's training size (index into config.sizes())
        self._planner_args = dict(
            seed=config.seed,
            rank=rank,
            world_size=world_size,
            image_video_ratio=config.image_video_ratio,
            delete_ratio=config.delete_ratio,
            video_batch_size=config.video_batch_size,
            image_batch_size=config.image_batch_size,
            available=available,
            record_buckets=self.buckets,
            bucket_names=[bucket_name(b) for b in config.sizes()],
        )
        self._dataset = _BatchDataset(records, config, self.pools, self.buckets)
        self._state = self._new_planner().state_dict()  # also checks this rank has every stream the mix draws
        self._generation = 0
        self.tracker = tracker or BadSampleTracker(config.max_bad_fraction, config.bad_window)

    def _new_planner(self) -> BatchPlanner:
        return BatchPlanner(self.pools, **self._planner_args)

    def unfillable_slot(self) -> str | None:
        """None if every slot of the batch mix (each kind x task it draws) can be filled from this rank's records,
        else one line saying which cannot and the config key to change. Tried before training, as training fills a
        slot (a record of the stream, then up to `max_attempts` replacements, each with its own seeded draws), so
        a data set that cannot fill a slot stops the run before its first step, not at the step that draws it."""
        for stream in self._new_planner().drawn_streams():
            kind, task = stream.split("/")
            pool = self.pools[stream]
            spec = SampleSpec(stream, pool[0], (self.config.seed, _CHECK_SALT, STREAMS.index(stream)),
                              self.buckets[pool[0]])
            try:
                self._dataset.sample(spec, [])
            except DataError as err:
                if task == "delete":
                    given = sum(r.task == "delete" for r in self.records if r.kind == kind)
                    donors = len(self._dataset.donors[kind])
                    return (f"no {kind} deletion sample can be made from {given} {kind} deletion record(s) and "
                            f"{donors} donor mask(s) ({err}): set data.delete_ratio=0 to train without deletion, or "
                            f"build a set with deletion records (`vivid data check` counts them)")
                other = "0 (videos only)" if kind == "image" else ".inf (images only)"
                return (f"no {stream} sample can be made ({err}): set data.image_video_ratio={other}, or fix the "
                        "records (`vivid data check`)")
        return None

    def state_dict(self) -> dict[str, Any]:
        return {"version": STATE_VERSION, "split": self.split, "planner": dict(self._state)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("version") != STATE_VERSION or "planner" not in state:
            raise ValueError(
                f"not a data loader state of version {STATE_VERSION} (got version {state.get('version')!r}, keys "
                f"{sorted(state)}); a state from an older vivid cannot be resumed exactly"
            )
        if state.get("split", self.split) != self.split:
            raise ValueError(
                f"data loader state was saved with a per-{state['split'][:-1]} rank split, this loader splits per "
                f"{self.split[:-1]} (the number of shards changed?)"
            )
        planner = self._new_planner()
        planner.load_state_dict(state["planner"])  # validates seed / rank / world size
        self._state = planner.state_dict()
        self._generation += 1  # a running iterator restarts from here at its next step

    def bad_sample_counts(self) -> dict[str, int]:
        """Bad samples so far by reason (manifest records rejected at load time included)."""
        return self.tracker.state()

    def _dataloader(self) -> DataLoader:
        planner = self._new_planner()
        planner.load_state_dict(self._state)
        workers = self.config.num_workers
        return DataLoader(
            self._dataset,
            batch_size=None,
            sampler=_PlanSampler(planner),
            num_workers=workers,
            collate_fn=_identity,
            # no cv2.setNumThreads in the workers: after fork it deadlocks if the parent used cv2's thread pool
            prefetch_factor=self.config.prefetch_factor if workers else None,
            persistent_workers=False,
        )

    def __iter__(self) -> Iterator[dict[str, Any]]:
        while True:
            generation = self._generation
            for batch in self._dataloader():
                if generation != self._generation:
                    break  # load_state_dict was called: rebuild from the new state
                state, events = batch.pop("_state"), batch.pop("_events")
                for sample_id, reason, message in events:
                    self.tracker.bad(sample_id, reason, message)
                self.tracker.good(len(batch["id"]))
                self._state = state
                yield batch


def build_train_loader(config: DataConfig, rank: int = 0, world_size: int = 1) -> TrainLoader:
    """Read and validate this rank's train records and return its loader.

    With world_size > 1 and at least as many shards as ranks, only this rank's shards are read (whole shards per
    rank); otherwise all shards, and the records are split per rank. Records that are malformed (bad JSON,
    missing fields or captions) are logged and counted; more than `max_bad_fraction` of the records read is a
    DataError. Files are checked lazily, when a sample is loaded.
    """
    if not config.train_manifests:
        raise ValueError("data.train_manifests is empty: give at least one JSONL manifest (or glob)")
    if config.flow == "raft" and config.delete_ratio > 0 and not raft_available():
        raise ValueError("data.flow='raft' needs torchvision and its RAFT-small weights in the torch hub cache; use 'farneback'")
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in [0, world_size={world_size})")
    shards = expand_manifests(config.train_manifests)
    split = "shards" if world_size > 1 and len(shards) >= world_size else "records"
    if split == "shards":
        shards = [shards[i] for i in assign_shards(len(shards), rank, world_size)]
        where = f"rank {rank}'s {len(shards)} shard(s) ({shards[0]}, ...)"
    else:
        where = f"the manifests {config.train_manifests}"
    records, bad = read_shards(shards, config.max_caption_chars, config.allow_absolute_paths)
    tracker = BadSampleTracker(config.max_bad_fraction, config.bad_window)
    for item in bad:
        logger.warning("skipping bad manifest record: %s", item.message)
        tracker.counts[item.reason] += 1
    total = len(records) + len(bad)
    if bad and len(bad) > config.max_bad_fraction * total:
        raise DataError(
            f"{len(bad)} of {total} manifest records are invalid (limit {config.max_bad_fraction:.1%}, in {where}); "
            f"first: {bad[0].message}. Run `vivid data check` to list them all."
        )
    if not records:
        raise DataError(f"{where} hold no records")
    return TrainLoader(records, config, rank, world_size, tracker, split=split)


# --------------------------------------------------------------------------- evaluation


@dataclass
class EvalSample:
    id: str
    video: np.ndarray  # uint8 (F, H, W, 3): the input video to edit
    mask: np.ndarray  # bool (F, H, W), True = edit
    caption: str  # the caption to edit with (the shortest caption; the deletion caption for delete)
    task: str  # "add" | "modify" | "delete"
    attributes: dict[str, Any] = field(default_factory=dict)
    captions: list[str] = field(default_factory=list)
    target: np.ndarray | None = None  # uint8 (F, H, W, 3) ground truth, where the manifest names one
    fps: float = 8.0  # fps of the sampled frames


def _eval_task(record: Record) -> str:
    if record.eval_task:
        return record.eval_task
    return "delete" if record.task == "delete" else "modify"


def read_eval_records(manifests: str | list[str], config: DataConfig,
                      what: str = "eval") -> tuple[list[Record], list[BadSample]]:
    """The eval manifests' records and invalid lines (read once; `decode_eval_samples` decodes them). `what` names
    the use in the error when there are no manifests."""
    manifests = [manifests] if isinstance(manifests, str) else list(manifests)
    if not manifests:
        raise ValueError(f"{what} needs data.eval_manifests (held-out samples to edit)")
    return read_manifests(manifests, config.max_caption_chars, config.allow_absolute_paths)


def build_eval_samples(
    manifests: str | list[str], config: DataConfig, limit: int | None = None, strict: bool = True
) -> list[EvalSample]:
    """Read the eval manifests and decode their records (`decode_eval_samples`)."""
    return decode_eval_samples(*read_eval_records(manifests, config), config, limit=limit, strict=strict)


def decode_eval_samples(records: list[Record], bad: list[BadSample], config: DataConfig, limit: int | None = None,
                        strict: bool = True) -> list[EvalSample]:
    """Decode eval records deterministically (the first `config.frames` frames at `config.fps` from the clip
    start, resized and cropped like training: to the bucket nearest the source's aspect, masks not augmented). A bad
    record (or an invalid manifest line in `bad`) is a DataError naming it when `strict`, else logged and
    skipped."""
    problems = [b.message for b in bad]
    out: list[EvalSample] = []
    for record in records:
        if limit is not None and len(out) >= limit:
            break
        try:
            decoded = decode_record(record, config, None, frames=1 if record.kind == "image" else None)
            if not decoded.mask.any():
                raise BadSample("empty_mask", "mask is empty in every frame of the clip", record.id, record.mask)
            target = None
            if record.target is not None:
                target_record = Record(id=record.id, kind=record.kind, media=record.target, mask=record.mask,
                                       start=record.start, end=record.end, fps=record.fps)
                target = decode_record(target_record, config, None, frames=len(decoded.frames),
                                       size=decoded.frames.shape[1:3]).frames
        except BadSample as err:
            problems.append(err.message)
            continue
        task = _eval_task(record)
        step = float(np.mean(np.diff(decoded.indices))) if len(decoded.indices) > 1 else 1.0
        out.append(EvalSample(
            id=record.id, video=decoded.frames, mask=decoded.mask,
            caption=DELETE_CAPTION if task == "delete" else (record.captions[0] if record.captions else ""),
            task=task, attributes=dict(record.attributes), captions=list(record.captions), target=target,
            fps=decoded.fps / step if decoded.fps else config.fps,
        ))
    if problems:
        if strict:
            raise DataError(f"{len(problems)} bad eval record(s): " + "; ".join(problems[:5]))
        for p in problems:
            logger.warning("skipping bad eval record: %s", p)
    return out
