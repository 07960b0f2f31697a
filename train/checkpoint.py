"""Crash-safe training checkpoints.

A checkpoint is `<output_dir>/checkpoints/checkpoint-<step>/` holding
- accelerate's state (`accelerator.save_state`): optimizer, registered LR scheduler, RNG states of every rank
  (under DeepSpeed, the engine's own checkpoint instead); the trainable weights as `trainable_0.safetensors`
  (written by the save hook of `register_trainable_state_hooks`, not the multi-GB frozen base weights),
- `sampler_rank<r>.json`: each rank's data-loader state (exact resume of the sample order),
- `vivid-weights/`: the LoRA + patch embedding as `vivid export` and `VIVIDPipeline.load_vivid_weights` read them,
- `rank_state_rank<r>.json`: each rank's own trainer bookkeeping (e.g. its count of skipped bad samples),
- `trainer_state.json`: step, world size, config, and the run's bookkeeping; written last.

Under DeepSpeed the engine checkpoint is written with `exclude_frozen_parameters=True` (the frozen 5B base is
not copied into every checkpoint; it comes from the pretrained model) and read back with `load_module_strict=False`.

Everything is written into `.tmp-checkpoint-<step>/`, which rank 0 renames into place once all ranks are done,
so a crash at any point leaves either the complete new checkpoint or none (and the previous ones intact).
Folders are deleted by first renaming them to `.trash-*` (a crash half-way through a deletion never leaves a
half-deleted `checkpoint-N` that looks complete); leftover `.tmp-*` and `.trash-*` folders are ignored and
cleaned by the next save. `abandon_checkpoints_after` renames checkpoints newer than a resumed one to
`checkpoint-N.abandoned-<time>`, so that `--resume latest` never picks a checkpoint of the abandoned branch.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from safetensors.torch import load_file, save_file


logger = logging.getLogger(__name__)

CHECKPOINTS_DIR = "checkpoints"
PREFIX = "checkpoint-"
TMP_PREFIX = ".tmp-checkpoint-"
TRASH_PREFIX = ".trash-"
ABANDONED_TAG = ".abandoned-"
STATE_NAME = "trainer_state.json"
WEIGHTS_DIR = "vivid-weights"
TRAINABLE_NAME = "trainable_{}.safetensors"
RANK_STATE_NAME = "rank_state_rank{}.json"
_STEP_RE = re.compile(rf"^{PREFIX}(\d+)$")


def barrier() -> None:
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as f:
        json.dump(data, f, indent=2, default=str)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def is_deepspeed(accelerator: Any) -> bool:
    """Whether `accelerator` runs DeepSpeed (its engine writes and reads the model and optimizer state)."""
    from accelerate.utils import DistributedType

    return getattr(accelerator, "distributed_type", None) == DistributedType.DEEPSPEED


def remove_tree(path: Path) -> None:
    """Delete a folder by renaming it to a `.trash-*` sibling first, then removing that.

    The rename is atomic: a crash half-way leaves a `.trash-*` folder (ignored, cleaned by the next save), never a
    half-deleted folder under its original name.
    """
    trash = path.with_name(f"{TRASH_PREFIX}{path.name}-{uuid.uuid4().hex[:8]}")
    os.replace(path, trash)
    shutil.rmtree(trash, ignore_errors=True)


def checkpoint_step(path: Path) -> int | None:
    """The step of a `checkpoint-N` folder name, None for any other name."""
    match = _STEP_RE.match(Path(path).name)
    return int(match.group(1)) if match else None


def write_text_atomic(path: Path, text: str) -> None:
    """Replace `path` by `text` (temporary file + rename: a crash leaves the old or the new content)."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def list_checkpoints(output_dir: str | os.PathLike) -> list[Path]:
    """Complete checkpoints of a run, oldest first."""
    root = Path(output_dir) / CHECKPOINTS_DIR
    if not root.is_dir():
        return []
    found = []
    for child in root.iterdir():
        match = _STEP_RE.match(child.name)
        if match and (child / STATE_NAME).is_file():
            found.append((int(match.group(1)), child))
    return [path for _, path in sorted(found)]


def latest_checkpoint(output_dir: str | os.PathLike) -> Path | None:
    checkpoints = list_checkpoints(output_dir)
    return checkpoints[-1] if checkpoints else None


def resolve_resume(resume: str, output_dir: str | os.PathLike) -> Path:
    """`latest` -> the newest complete checkpoint of the run; otherwise a checkpoint folder path."""
    if resume == "latest":
        path = latest_checkpoint(output_dir)
        if path is None:
            raise FileNotFoundError(f"--resume latest: no checkpoint in {Path(output_dir) / CHECKPOINTS_DIR}")
        return path
    path = Path(resume)
    if not (path / STATE_NAME).is_file():
        raise FileNotFoundError(f"--resume {resume}: not a checkpoint folder (no {STATE_NAME})")
    return path


def read_trainer_state(checkpoint: str | os.PathLike) -> dict[str, Any]:
    return json.loads((Path(checkpoint) / STATE_NAME).read_text())


# --------------------------------------------------------------------------- trainable weights in save_state


def trainable_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    model = getattr(model, "module", model)
    return {n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad}


def register_trainable_state_hooks(accelerator: Any, is_main: Callable[[], bool]) -> None:
    """Make `accelerator.save_state/load_state` keep only the trainable weights (safetensors) of each model.

    The frozen base weights come from the pretrained model and are not copied into every checkpoint. Not
    used under DeepSpeed, whose engine checkpoint replaces accelerate's model files.
    """

    def save_hook(models: list, weights: list, output_dir: str) -> None:
        if is_main():
            for i, model in enumerate(models):
                save_file(trainable_state_dict(model), os.path.join(output_dir, TRAINABLE_NAME.format(i)))
        weights.clear()  # accelerate writes no model files of its own

    def load_hook(models: list, input_dir: str) -> None:
        for i, model in enumerate(models):
            path = Path(input_dir) / TRAINABLE_NAME.format(i)
            if not path.is_file():
                raise FileNotFoundError(f"{path} not found: incomplete checkpoint")
            state = load_file(path)
            bare = getattr(model, "module", model)
            params = dict(bare.named_parameters())
            expected = {n for n, p in params.items() if p.requires_grad}
            if set(state) != expected:
                missing, extra = sorted(expected - set(state)), sorted(set(state) - expected)
                raise ValueError(f"{path}: trainable weights do not fit the model (missing {missing[:3]}, extra {extra[:3]})")
            with torch.no_grad():
                for name, value in state.items():
                    params[name].copy_(value)
        models.clear()

    accelerator.register_save_state_pre_hook(save_hook)
    accelerator.register_load_state_pre_hook(load_hook)


# --------------------------------------------------------------------------- save / load


def save_checkpoint(
    accelerator: Any,
    output_dir: str | os.PathLike,
    step: int,
    rank: int,
    world_size: int,
    trainer_state: dict[str, Any],
    loader_state: dict[str, Any],
    save_weights: Callable[[Path], Any],
    keep_last: int = 0,
    rank_state: dict[str, Any] | None = None,
) -> Path:
    """Write checkpoint-<step> atomically (collective: all ranks call it).

    `save_weights(folder)` writes the VIVID weights folder; it is called on every rank (under ZeRO-3 the
    weights must be gathered collectively) and must write on rank 0 only. `rank_state`, if given, is this
    rank's own bookkeeping (`rank_state_rank<r>.json`, read back with `read_rank_state`).
    """
    root = Path(output_dir) / CHECKPOINTS_DIR
    final = root / f"{PREFIX}{step}"
    tmp = root / f"{TMP_PREFIX}{step}"
    if rank == 0:
        root.mkdir(parents=True, exist_ok=True)
        for leftover in [*root.glob(f"{TMP_PREFIX}*"), *root.glob(f"{TRASH_PREFIX}*")]:  # an earlier crash's
            shutil.rmtree(leftover, ignore_errors=True)
        tmp.mkdir()
    barrier()
    # under DeepSpeed the engine writes the module too: leave out the frozen base (~11 GB for CogVideoX-5B)
    accelerator.save_state(str(tmp), **({"exclude_frozen_parameters": True} if is_deepspeed(accelerator) else {}))
    write_json_atomic(tmp / f"sampler_rank{rank}.json", loader_state)
    if rank_state is not None:
        write_json_atomic(tmp / RANK_STATE_NAME.format(rank), rank_state)
    save_weights(tmp / WEIGHTS_DIR)
    barrier()
    if rank == 0:
        state = dict(trainer_state, step=step, world_size=world_size)
        write_json_atomic(tmp / STATE_NAME, state)
        _fsync_dir(tmp)
        old = None
        if final.exists():  # the same step saved again (e.g. the final save right after a periodic one)
            old = final.with_name(f"{TRASH_PREFIX}{final.name}-{uuid.uuid4().hex[:8]}")
            os.replace(final, old)  # aside, not deleted, until the new one is in place
        os.replace(tmp, final)
        _fsync_dir(root)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        prune_checkpoints(output_dir, keep_last)
        logger.info("saved checkpoint %s", final)
    barrier()
    return final


def prune_checkpoints(output_dir: str | os.PathLike, keep_last: int) -> list[Path]:
    """Delete all but the newest `keep_last` complete checkpoints (0 keeps all). Returns the deleted ones."""
    if keep_last <= 0:
        return []
    old = list_checkpoints(output_dir)[:-keep_last]
    for path in old:
        remove_tree(path)
    return old


def abandon_checkpoints_after(output_dir: str | os.PathLike, step: int) -> list[Path]:
    """Rename the checkpoints of `output_dir` newer than `step` to `checkpoint-N.abandoned-<time>` (kept, but no
    longer seen by `list_checkpoints` / `--resume latest`). For a run resumed from an older checkpoint, whose
    newer ones belong to the branch it abandons. Returns the new paths."""
    root = Path(output_dir) / CHECKPOINTS_DIR
    if not root.is_dir():
        return []
    stamp = time.strftime("%Y%m%d-%H%M%S")
    moved = []
    for child in sorted(root.iterdir()):
        n = checkpoint_step(child)
        if n is not None and n > step:
            target = child.with_name(f"{child.name}{ABANDONED_TAG}{stamp}")
            if target.exists():
                target = target.with_name(f"{target.name}-{uuid.uuid4().hex[:6]}")
            os.replace(child, target)
            moved.append(target)
            logger.warning("resumed at step %d: moved the newer checkpoint %s aside to %s", step, child, target.name)
    return moved


# --------------------------------------------------------------------------- a previous run in the run folder

# What a run writes into its output folder (besides `tiny-model/`, the base model that its checkpoints name and
# a new run reuses): a fresh run into a folder holding these would mix with, or destroy, the previous run.
RUN_FILES = ("checkpoints", "metrics.jsonl", "config.json", "validation", "wandb")
RUN_FILE_PATTERNS = ("sample_ids_rank*.jsonl",)
PREVIOUS_PREFIX = "previous-"


class PreviousRunError(FileExistsError):
    """A fresh run was asked to write into a folder that holds another run's checkpoints or metrics."""


def previous_run(output_dir: str | os.PathLike) -> list[Path]:
    """The files of an earlier run in `output_dir` that a fresh run would overwrite or mix with; [] if none.

    A run is there once it has a checkpoint (complete, torn or abandoned) or a non-empty `metrics.jsonl`.
    """
    out = Path(output_dir)
    root = out / CHECKPOINTS_DIR
    has_checkpoints = root.is_dir() and any(
        checkpoint_step(Path(c.name.split(ABANDONED_TAG)[0])) is not None or c.name.startswith(TMP_PREFIX)
        for c in root.iterdir()
    )
    metrics = out / "metrics.jsonl"
    has_metrics = metrics.is_file() and metrics.stat().st_size > 0
    if not (has_checkpoints or has_metrics):
        return []
    found = [out / name for name in RUN_FILES if (out / name).exists()]
    for pattern in RUN_FILE_PATTERNS:
        found.extend(sorted(out.glob(pattern)))
    return found


def refuse_previous_run(output_dir: str | os.PathLike) -> None:
    """Raise PreviousRunError (one line, saying what to do) when `output_dir` holds an earlier run."""
    found = previous_run(output_dir)
    if not found:
        return
    newest = latest_checkpoint(output_dir)
    what = f"checkpoints up to {newest.name}" if newest is not None else "an earlier run's files"
    raise PreviousRunError(
        f"{output_dir} already holds a training run ({what}): pass --resume latest to continue it, --overwrite to "
        "move it aside into a previous-<n>/ subfolder and start afresh, or another checkpoint.output_dir"
    )


def move_previous_run_aside(output_dir: str | os.PathLike) -> Path | None:
    """Move the earlier run's files of `output_dir` (`previous_run`) into `output_dir/previous-<n>/` (the first
    unused n), by renames: nothing is deleted or copied. Returns that folder, or None when there was no run."""
    out = Path(output_dir)
    found = previous_run(out)
    if not found:
        return None
    n = 1
    while (out / f"{PREVIOUS_PREFIX}{n}").exists():
        n += 1
    target = out / f"{PREVIOUS_PREFIX}{n}"
    target.mkdir()
    for path in found:
        os.replace(path, target / path.name)
    _fsync_dir(out)
    logger.warning("--overwrite: moved the previous run of %s aside to %s", out, target)
    return target


def read_rank_state(checkpoint: str | os.PathLike, rank: int) -> dict[str, Any]:
    """This rank's bookkeeping saved with the checkpoint (`rank_state=` of save_checkpoint); {} if none."""
    path = Path(checkpoint) / RANK_STATE_NAME.format(rank)
    return json.loads(path.read_text()) if path.is_file() else {}


def load_checkpoint(accelerator: Any, checkpoint: str | os.PathLike, rank: int, world_size: int) -> tuple[dict, dict]:
    """Restore accelerate's state; return (trainer state, this rank's data-loader state)."""
    checkpoint = Path(checkpoint)
    state = read_trainer_state(checkpoint)
    if state.get("world_size") != world_size:
        raise ValueError(
            f"{checkpoint} was written by {state.get('world_size')} processes, this run has {world_size}: "
            "the data order cannot be resumed exactly (resume with the same number of processes)"
        )
    sampler_path = checkpoint / f"sampler_rank{rank}.json"
    if not sampler_path.is_file():
        raise FileNotFoundError(f"{sampler_path} not found: incomplete checkpoint")
    # DeepSpeed checkpoints lack the frozen weights (exclude_frozen_parameters): the module loads non-strictly
    accelerator.load_state(str(checkpoint), **({"load_module_strict": False} if is_deepspeed(accelerator) else {}))
    return state, json.loads(sampler_path.read_text())
