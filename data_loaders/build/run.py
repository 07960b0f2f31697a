"""`vivid data build`: raw videos in, a data set in the project's format out (docs/data_build.md).

Scale: under `accelerate launch` process r of W takes the videos r, r + W, ... of the sorted input list and
runs the per-video stages on its own GPU (`data_loaders.build.video`); a video whose `video.json` exists is
finished and skipped, so a killed run resumes where it stopped and no video is built twice. Process 0 then waits
for every video's `video.json` (files, not a collective: no timeout however unequal the shards), runs the
deletion stage and writes the manifests and the summary, which depend only on the finished videos, so one and
several processes write the same data set.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

from vivid.io.atomic import write_json_atomic
from vivid.io.masks import write_mask_npz

from ..errors import BadSample
from ..format import Record, parse_record
from .config import BuildConfig
from .deletion import Donor, deletion_mask, pick_donor
from .inputs import InputVideo, expand_inputs
from .manifest import eval_videos, write_manifests
from .summary import BuildSummary, summarize
from .video import OUTCOME, Models, process_video, read_json, read_mask_file

logger = logging.getLogger("data_loaders.build")

DELETION = "deletion.json"
SUMMARY = "build_summary.json"
_POLL_SECONDS = 2.0


def check_writable(out: Path) -> None:
    """OSError with one clear line when `out` cannot hold the data set."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".vivid-write-test-"):
            pass
    except OSError as err:
        raise OSError(f"output folder {out} is not writable: {err.strerror or err}") from None


def process_rank() -> tuple[int, int, int]:
    """(rank, world size, local rank) from accelerate's launcher environment (1 process without it)."""
    import torch
    from accelerate import PartialState

    # without a GPU, cpu=True makes accelerate read a torchrun launch as MULTI_CPU (else every rank is rank 0)
    state = PartialState(cpu=not torch.cuda.is_available())
    return state.process_index, state.num_processes, state.local_process_index


def load_models(config: BuildConfig, out: Path, local_rank: int) -> Models:
    """The segmenter and the captioner on this process's device; ModelLoadError (one line) if one cannot load."""
    from .caption import Captioner
    from .models import load_segmenter, resolve_device, resolve_dtype, set_threads

    set_threads(config.models.threads)
    device = resolve_device(config.models, local_rank)
    dtype = resolve_dtype(config.models, device)
    tiny_root = out / "work" / "tiny-models"
    return Models(load_segmenter(config, device, dtype, tiny_root), Captioner(config, device, dtype, tiny_root))


def wait_for_videos(out: Path, videos: list[InputVideo], poll: float = _POLL_SECONDS) -> None:
    """Block until every video has its outcome file (written by whichever process owns it)."""
    missing = [v for v in videos if not (out / "videos" / v.id / OUTCOME).is_file()]
    while missing:
        time.sleep(poll)
        missing = [v for v in missing if not (out / "videos" / v.id / OUTCOME).is_file()]


def deletion_stage(out: Path, outcomes: list[dict], config: BuildConfig) -> list[dict]:
    """deletion.json of every video with kept entities (reused when it exists)."""
    pool = [Donor(o["id"], d["clip"], str(out / d["mask"])) for o in outcomes for d in o.get("donors", [])]
    results = []
    for o in outcomes:
        if not o.get("deletion_clips") or config.deletion.per_clip == 0:
            continue
        path = out / "videos" / o["id"] / DELETION
        if path.is_file():
            results.append(read_json(path))
            continue
        start = time.perf_counter()
        records, drops = [], Counter()
        for c in o["deletion_clips"]:
            known = read_mask_file(out / c["known"])
            for k in range(config.deletion.per_clip):
                donor = pick_donor(pool, o["id"], c["clip"], config.output.seed, k)
                if donor is None:
                    drops["no_background"] += 1
                    continue
                seed = [config.output.seed, int.from_bytes(hashlib.sha1(f"{o['id']}/{c['clip']}/{k}".encode()).digest()[:8], "big")]
                try:
                    mask = deletion_mask(known, read_mask_file(donor.mask), np.random.default_rng(seed),
                                         config.deletion.margin)
                except BadSample:
                    drops["no_background"] += 1
                    continue
                mask_path = out / Path(c["known"]).parent / f"delete{k}.npz"
                write_mask_npz(mask_path, mask)
                rec = Record(f"{o['id']}/{c['clip']}/delete{k}", "video", str(out / c["media"]), str(mask_path),
                             task="delete", entity_masks=[str(out / p) for p in c["entity_masks"]], fps=c["fps"],
                             attributes={"donor": Path(donor.mask).relative_to(out).as_posix()})
                records.append(rec.to_json(out))
        result = {"video": o["id"], "records": records, "drops": dict(drops),
                  "seconds": round(time.perf_counter() - start, 4)}
        write_json_atomic(path, result, indent=1)
        results.append(result)
    return results


def assemble(out: Path, videos: list[InputVideo], config: BuildConfig, built_now: set[str]) -> BuildSummary:
    """Deletion stage, manifests and summary, from the outcome files of all `videos` (process 0 only)."""
    outcomes = [read_json(out / "videos" / v.id / OUTCOME) for v in videos]
    deletions = deletion_stage(out, outcomes, config)
    by_video: dict[str, list[dict]] = {o["id"]: list(o.get("records", [])) for o in outcomes}
    for d in deletions:
        by_video[d["video"]] += d["records"]
    with_records = sorted(v for v, recs in by_video.items() if recs)
    held_out = eval_videos(with_records, config.output.eval_fraction, config.output.eval_min_videos,
                           config.output.seed)
    train, evals = [], []
    for vid in with_records:
        recs = [parse_record(r, out, f"{vid}/{OUTCOME}") for r in by_video[vid]]
        (evals if vid in held_out else train).extend(recs)
    train_paths, eval_paths = write_manifests(out, train, evals, config.output.shard_size)
    summary = summarize(out, outcomes, built_now, deletions)
    summary.train_records, summary.eval_records = len(train), len(evals)
    summary.train_manifests = [str(p) for p in train_paths]
    summary.eval_manifests = [str(p) for p in eval_paths]
    write_json_atomic(out / SUMMARY, summary.to_json(), indent=1)
    return summary


def build_dataset(inputs: list[str], out: str | Path, config: BuildConfig, progress: bool = True) -> BuildSummary | None:
    """Build the data set under `out`; the summary on process 0, None on the others."""
    from tqdm.auto import tqdm

    out = Path(out).resolve()
    videos = expand_inputs(inputs)
    check_writable(out)
    rank, world, local_rank = process_rank()
    # finished before this run: checked first thing, before any process can have finished a video of this run
    reused = {v.id for v in videos if (out / "videos" / v.id / OUTCOME).is_file()}
    mine = videos[rank::world]
    pending = [v for v in mine if v.id not in reused]
    if pending:
        models = load_models(config, out, local_rank)
        bar = tqdm(total=len(mine), initial=len(mine) - len(pending), desc=f"videos (process {rank})",
                   disable=not progress, dynamic_ncols=True, position=rank)
        entities, drops = 0, 0
        for video in pending:
            outcome = process_video(video, out, config, models, process=rank)
            entities += outcome.get("entities", 0)
            drops += sum(outcome.get("drops", {}).values())
            bar.update(1)
            bar.set_postfix(entities=entities, dropped=drops)
        bar.close()
    if rank != 0:
        return None
    wait_for_videos(out, videos)
    return assemble(out, videos, config, {v.id for v in videos} - reused)

