"""Crash-safe training checkpoints, read back without unpickling anything.

A checkpoint is `<output_dir>/checkpoints/checkpoint-<step>/` holding
- `trainable_0.safetensors`: the trainable weights (not the multi-GB frozen base weights),
- `optimizer.safetensors` + `optimizer.json`: the optimizer state (its tensors, and the rest: step counts,
  parameter groups, hyper-parameters), written by rank 0,
- `scheduler.json`: the LR scheduler's state (rank 0),
- `rng_state_rank<r>.safetensors` + `.json`: each rank's Python, NumPy, torch (and CUDA) random states,
- `scaler.json`: the fp16 gradient scaler's state, when there is one,
- `sampler_rank<r>.json`: each rank's data-loader state (exact resume of the sample order),
- `vivid-weights/`: the LoRA + patch embedding as `vivid export` and `VIVIDPipeline.load_vivid_weights` read them,
  or, for a text-to-video run (`model.objective`), `transformer/`: the base transformer as a diffusers folder,
- `rank_state_rank<r>.json`: each rank's own trainer bookkeeping (e.g. its count of skipped bad samples),
- `trainer_state.json`: step, world size, config, and the run's bookkeeping; written last.

Nothing here is a pickle: tensors are safetensors, everything else JSON (`save_state_tree` / `load_state_tree`).
accelerate's `save_state` / `load_state` are not used, since they pickle the optimizer, RNG states and
registered objects and unpickle them on load (`custom_checkpoint_0.pkl` with `weights_only=False`); a
checkpoint written by an older vivid in that format is refused on resume rather than unpickled.

Under DeepSpeed the engine writes its own checkpoint into `pytorch_model/` in place of the trainable weights
and the optimizer files (`mp_rank_00_model_states.pt`: the trainable module weights, as
`exclude_frozen_parameters=True` leaves out the frozen 5B base; `zero_pp_rank_<r>_mp_rank_00_optim_states.pt`:
each rank's ZeRO partition of the fp32 weights and Adam moments; under ZeRO-3 the module is partitioned too,
`zero_pp_rank_<r>_mp_rank_00_model_states.pt`; `latest`: the tag). Those are DeepSpeed's
torch.save files; they are read back by DeepSpeed's own `load_checkpoint` (`load_module_strict=False`) through a
loader that calls `torch.load(..., weights_only=True)` with only DeepSpeed's few plain state classes allowed
(`deepspeed_safe_globals`), so a crafted file there is an error, not code run. The scheduler, RNG and sampler
states are the files above, under DeepSpeed too.

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
import math
import os
import random
import re
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from accelerate.utils import DistributedType
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from vivid.io.atomic import write_json_atomic


logger = logging.getLogger(__name__)

CHECKPOINTS_DIR = "checkpoints"
PREFIX = "checkpoint-"
TMP_PREFIX = ".tmp-checkpoint-"
TRASH_PREFIX = ".trash-"
ABANDONED_TAG = ".abandoned-"
STATE_NAME = "trainer_state.json"
WEIGHTS_DIR = "vivid-weights"
BASE_DIR = "transformer"  # a text-to-video run's weights: the base transformer as a diffusers model folder
TRAINABLE_NAME = "trainable_{}.safetensors"
RANK_STATE_NAME = "rank_state_rank{}.json"
OPTIMIZER_STEM = "optimizer"
SCHEDULER_STEM = "scheduler"
SCALER_STEM = "scaler"
RNG_STEM = "rng_state_rank{}"
DEEPSPEED_TAG = "pytorch_model"  # the engine checkpoint's sub-folder (the name accelerate's save_state used)
# what accelerate's save_state wrote (older vivid checkpoints): pickles, never read
PICKLED_STATE_FILES = ("optimizer.bin", "scheduler.bin", "scaler.pt", "custom_checkpoint_0.pkl",
                       "random_states_0.pkl")
_STEP_RE = re.compile(rf"^{PREFIX}(\d+)$")


class CheckpointError(ValueError):
    """A checkpoint that cannot be resumed from (a file truncated or corrupt, or another model configuration)."""


class CheckpointSaveError(OSError):
    """A checkpoint could not be written (e.g. a full disk); nothing of it is kept, the earlier ones are intact."""


# what shapes the trainable weights or what they mean: a resumed run must keep these as the checkpoint's run had them
RESUME_FIXED_KEYS = ("model.objective", "model.lora_rank", "model.lora_alpha", "model.lora_targets",
                     "model.train_base", "model.tiny_seed")


@dataclass
class TrainingObjects:
    """What a checkpoint saves and restores besides the weights folder: the model and optimizer as
    `accelerator.prepare` returned them (under DeepSpeed the engine and its optimizer) and the LR scheduler."""

    model: torch.nn.Module
    optimizer: Any
    scheduler: Any


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


def is_deepspeed(accelerator: Any) -> bool:
    """Whether `accelerator` runs DeepSpeed (its engine writes and reads the model and optimizer state)."""
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
            raise FileNotFoundError(f"no checkpoint to resume (latest) in {Path(output_dir) / CHECKPOINTS_DIR}")
        return path
    path = Path(resume)
    if not (path / STATE_NAME).is_file():
        raise FileNotFoundError(f"resume from {resume}: not a checkpoint folder (no {STATE_NAME})")
    return path


def checkpoint_problem(checkpoint: Path) -> str | None:
    """None if every JSON and safetensors file of `checkpoint` reads in full, else the first that does not and
    why (a truncated or corrupt file). DeepSpeed's own engine files are checked by DeepSpeed when it loads them."""
    for path in sorted(checkpoint.rglob("*")):
        if path.suffix not in (".json", ".safetensors") or not path.is_file():
            continue
        try:
            if path.suffix == ".json":
                json.loads(path.read_text())
            else:
                load_file(str(path))
        except Exception as err:  # json, UnicodeDecodeError, safetensors' SafetensorError: all a broken file
            return f"{path.relative_to(checkpoint)}: {str(err).splitlines()[0] if str(err) else type(err).__name__}"
    return None


def choose_resume(resume: str, output_dir: str | os.PathLike, config: dict[str, Any]) -> Path:
    """The checkpoint to resume from: `resume` = "latest" -> the newest one whose files all read (a newer, broken
    one is reported and passed over: it is moved aside as abandoned when the run resumes); a folder -> that one,
    or CheckpointError naming its broken file. CheckpointError, naming the key, if the checkpoint's run had
    another value for one of RESUME_FIXED_KEYS than `config` (a TrainConfig's dict)."""
    if resume == "latest":
        candidates = list_checkpoints(output_dir)[::-1]
        if not candidates:
            resolve_resume(resume, output_dir)  # raises: no checkpoint
    else:
        candidates = [resolve_resume(resume, output_dir)]
    broken = []
    for path in candidates:
        problem = checkpoint_problem(path)
        if problem is None:
            if broken:
                logger.warning("resuming from %s: the newer %s", path.name, "; ".join(broken))
            check_same_model(path, config)
            return path
        broken.append(f"{path.name} is unusable ({problem})")
    raise CheckpointError(f"cannot resume: {'; '.join(broken)}")


def check_same_model(checkpoint: Path, config: dict[str, Any]) -> None:
    """CheckpointError naming the first of RESUME_FIXED_KEYS whose value differs between `config` and the config
    saved with `checkpoint`."""
    saved = read_trainer_state(checkpoint).get("config")
    if not isinstance(saved, dict):
        return  # an older checkpoint without its config: nothing to compare
    for key in RESUME_FIXED_KEYS:
        section, name = key.split(".")
        before, now = saved.get(section, {}).get(name), config.get(section, {}).get(name)
        if before is not None and before != now:
            raise CheckpointError(
                f"{key} is {now!r} but {checkpoint} was trained with {key}={before!r}: a resumed run must keep it "
                f"(set {key}={before!r}, or start a new run)"
            )


def read_trainer_state(checkpoint: str | os.PathLike) -> dict[str, Any]:
    return json.loads((Path(checkpoint) / STATE_NAME).read_text())


# --------------------------------------------------------------------------- state without pickles

_TENSOR, _TUPLE, _ITEMS, _NDARRAY, _FLOAT = "__tensor__", "__tuple__", "__items__", "__ndarray__", "__float__"
_TAGS = {_TENSOR, _TUPLE, _ITEMS, _NDARRAY, _FLOAT}


def _encode(value: Any, tensors: dict[str, torch.Tensor], where: str) -> Any:
    if isinstance(value, torch.Tensor):
        key = str(len(tensors))
        tensors[key] = value.detach().to("cpu").clone().contiguous()  # own storage: safetensors refuses sharing
        return {_TENSOR: key}
    if isinstance(value, np.ndarray):
        return {_NDARRAY: value.tolist(), "dtype": str(value.dtype)}
    if isinstance(value, (bool, int, str)) or value is None:
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {_FLOAT: repr(value)}
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return _encode(value.item(), tensors, where)
    if isinstance(value, tuple):
        return {_TUPLE: [_encode(v, tensors, f"{where}[{i}]") for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [_encode(v, tensors, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        if all(isinstance(k, str) for k in value) and not _TAGS & set(value):
            return {k: _encode(v, tensors, f"{where}.{k}") for k, v in value.items()}
        return {_ITEMS: [[_encode(k, tensors, where), _encode(v, tensors, f"{where}[{k!r}]")] for k, v in value.items()]}
    raise TypeError(f"{where}: cannot store a {type(value).__name__} in a checkpoint without pickling it")


def _decode(value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(value, list):
        return [_decode(v, tensors) for v in value]
    if not isinstance(value, dict):
        return value
    if _TENSOR in value:
        return tensors[value[_TENSOR]]
    if _TUPLE in value:
        return tuple(_decode(v, tensors) for v in value[_TUPLE])
    if _ITEMS in value:
        return {_decode(k, tensors): _decode(v, tensors) for k, v in value[_ITEMS]}
    if _NDARRAY in value:
        return np.array(value[_NDARRAY], dtype=np.dtype(value["dtype"]))
    if _FLOAT in value:
        return float(value[_FLOAT])
    return {k: _decode(v, tensors) for k, v in value.items()}


def save_state_tree(state: Any, folder: Path, stem: str) -> None:
    """Write a state dict of plain values, tuples, NumPy arrays and tensors as `<stem>.json` (the structure and
    every non-tensor value) + `<stem>.safetensors` (the tensors, when there are any). No pickle."""
    tensors: dict[str, torch.Tensor] = {}
    encoded = _encode(state, tensors, stem)
    if tensors:
        save_file(tensors, str(folder / f"{stem}.safetensors"))
    write_json_atomic(folder / f"{stem}.json", {"format": "vivid-state-1", "state": encoded}, fsync=True)


def load_state_tree(folder: Path, stem: str) -> Any:
    """What `save_state_tree` wrote (tensors on the CPU)."""
    path = folder / f"{stem}.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: incomplete checkpoint")
    data = json.loads(path.read_text())
    tensor_path = folder / f"{stem}.safetensors"
    tensors = load_file(str(tensor_path)) if tensor_path.is_file() else {}
    return _decode(data["state"], tensors)


def rng_state() -> dict[str, Any]:
    """This process's random states: Python, NumPy, torch's CPU generator and every CUDA device's."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def trainable_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    model = getattr(model, "module", model)
    return {n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad}


def load_trainable(model: torch.nn.Module, path: Path) -> None:
    """Copy the trainable weights saved at `path` into `model` (a DDP wrapper or the bare model)."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: incomplete checkpoint")
    state = load_file(str(path))
    params = dict(getattr(model, "module", model).named_parameters())
    expected = {n for n, p in params.items() if p.requires_grad}
    if set(state) != expected:
        missing, extra = sorted(expected - set(state)), sorted(set(state) - expected)
        raise ValueError(f"{path}: trainable weights do not fit the model (missing {missing[:3]}, extra {extra[:3]})")
    with torch.no_grad():
        for name, value in state.items():
            params[name].copy_(value)


def deepspeed_safe_globals() -> list[Any]:
    """The classes DeepSpeed's engine checkpoint pickles besides tensors and containers (its loss scaler, the ZeRO
    stage enum, the fragment addresses of ZeRO's parameter mapping): `torch.load(weights_only=True)` rebuilds
    only these, never calls anything else."""
    from deepspeed.runtime.fp16.loss_scaler import DynamicLossScaler, LossScaler
    from deepspeed.runtime.zero.config import ZeroStageEnum
    from deepspeed.utils.tensor_fragment import fragment_address

    return [LossScaler, DynamicLossScaler, ZeroStageEnum, fragment_address]


def use_safe_deepspeed_loader(engine: Any) -> None:
    """Make `engine.load_checkpoint` read its files with `torch.load(weights_only=True)` (`deepspeed_safe_globals`
    only) instead of DeepSpeed's `weights_only=False`."""
    allowed = deepspeed_safe_globals()

    def load(path: str, map_location: Any = None) -> Any:
        with torch.serialization.safe_globals(allowed):
            return torch.load(path, map_location=map_location, weights_only=True)

    engine.checkpoint_engine.load = load


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
    *,
    objects: TrainingObjects,
    weights_dir: str = WEIGHTS_DIR,
) -> Path:
    """Write checkpoint-<step> atomically (collective: all ranks call it).

    `objects`: the model, optimizer and LR scheduler whose states are saved. `save_weights(folder)` writes the
    weights folder (`weights_dir`: the
    VIVID weights, or a text-to-video run's BASE_DIR); it is called
    on every rank (under ZeRO-3 the weights must be gathered collectively) and must write on rank 0 only.
    `rank_state`, if given, is this rank's own bookkeeping (`rank_state_rank<r>.json`, read back with
    `read_rank_state`).
    """
    try:
        return _save_checkpoint(accelerator, output_dir, step, rank, world_size, trainer_state, loader_state,
                                save_weights, keep_last, rank_state, objects=objects, weights_dir=weights_dir)
    except (OSError, SafetensorError) as err:
        tmp = Path(output_dir) / CHECKPOINTS_DIR / f"{TMP_PREFIX}{step}"
        shutil.rmtree(tmp, ignore_errors=True)  # what was written of it: frees the space it took
        latest = latest_checkpoint(output_dir)
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise CheckpointSaveError(
            f"could not write checkpoint-{step} in {Path(output_dir) / CHECKPOINTS_DIR} ({reason}); nothing of it "
            f"was kept and the run stopped. The latest complete checkpoint is {latest.name if latest else 'none'}: "
            "free space, then resume the run from it"
        ) from err


def _save_checkpoint(accelerator: Any, output_dir: str | os.PathLike, step: int, rank: int, world_size: int,
                     trainer_state: dict[str, Any], loader_state: dict[str, Any], save_weights: Callable[[Path], Any],
                     keep_last: int, rank_state: dict[str, Any] | None, *, objects: TrainingObjects,
                     weights_dir: str) -> Path:
    root = Path(output_dir) / CHECKPOINTS_DIR
    final = root / f"{PREFIX}{step}"
    tmp = root / f"{TMP_PREFIX}{step}"
    if rank == 0:
        root.mkdir(parents=True, exist_ok=True)
        for leftover in [*root.glob(f"{TMP_PREFIX}*"), *root.glob(f"{TRASH_PREFIX}*")]:  # an earlier crash's
            shutil.rmtree(leftover, ignore_errors=True)
        tmp.mkdir()
    barrier()
    save_training_state(accelerator, tmp, rank, objects.model, objects.optimizer, objects.scheduler)
    write_json_atomic(tmp / f"sampler_rank{rank}.json", loader_state, fsync=True)
    if rank_state is not None:
        write_json_atomic(tmp / RANK_STATE_NAME.format(rank), rank_state, fsync=True)
    save_weights(tmp / weights_dir)
    barrier()
    if rank == 0:
        state = dict(trainer_state, step=step, world_size=world_size, accelerator_step=int(accelerator.step))
        write_json_atomic(tmp / STATE_NAME, state, fsync=True)
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


def save_training_state(accelerator: Any, folder: Path, rank: int, model: Any, optimizer: Any, scheduler: Any) -> None:
    """Write the optimizer, scheduler, scaler and RNG states into `folder` (collective under DeepSpeed)."""
    if is_deepspeed(accelerator):
        # the engine writes the trainable module weights and its ZeRO optimizer partitions; the frozen base
        # (~11 GB for CogVideoX-5B) is left out
        model.save_checkpoint(str(folder), tag=DEEPSPEED_TAG, exclude_frozen_parameters=True)
    elif rank == 0:
        save_file(trainable_state_dict(model), str(folder / TRAINABLE_NAME.format(0)))
        save_state_tree(optimizer.state_dict(), folder, OPTIMIZER_STEM)
    if rank == 0:
        save_state_tree(scheduler.state_dict(), folder, SCHEDULER_STEM)
        scaler = getattr(accelerator, "scaler", None)
        if scaler is not None:
            save_state_tree(scaler.state_dict(), folder, SCALER_STEM)
    save_state_tree(rng_state(), folder, RNG_STEM.format(rank))


def load_training_state(accelerator: Any, folder: Path, rank: int, model: Any, optimizer: Any, scheduler: Any) -> None:
    """Restore what `save_training_state` wrote (collective under DeepSpeed); nothing is unpickled."""
    pickled = [name for name in PICKLED_STATE_FILES if (folder / name).exists()]
    if pickled and not (folder / f"{SCHEDULER_STEM}.json").is_file():
        raise ValueError(
            f"{folder} was written by an older vivid as pickles ({', '.join(pickled)}), which are never loaded "
            "(unpickling can run code): start a new run; its vivid-weights/ still export"
        )
    if is_deepspeed(accelerator):
        use_safe_deepspeed_loader(model)
        path, _ = model.load_checkpoint(str(folder), tag=DEEPSPEED_TAG, load_module_strict=False,
                                        load_optimizer_states=True, load_lr_scheduler_states=False)
        if path is None:
            raise FileNotFoundError(f"{folder / DEEPSPEED_TAG}: no DeepSpeed checkpoint there")
    else:
        load_trainable(model, folder / TRAINABLE_NAME.format(0))
        optimizer.load_state_dict(load_state_tree(folder, OPTIMIZER_STEM))
    scheduler.load_state_dict(load_state_tree(folder, SCHEDULER_STEM))
    scaler = getattr(accelerator, "scaler", None)
    if scaler is not None:
        scaler.load_state_dict(load_state_tree(folder, SCALER_STEM))
    set_rng_state(load_state_tree(folder, RNG_STEM.format(rank)))


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


class RunFolderError(Exception):
    """The run folder cannot be used as asked (see `check_run_folder`)."""


class PreviousRunError(RunFolderError, FileExistsError):
    """A fresh run was asked to write into a folder that holds another run's checkpoints or metrics."""


def check_run_folder(output_dir: str | os.PathLike, resume: str | None, overwrite: bool) -> None:
    """The rule of a run folder, checked on every rank before any rank moves anything: `resume` continues the run
    in `output_dir`; a fresh run (no `resume`) into a folder that holds an earlier run is refused
    (`PreviousRunError`) unless `overwrite`, which moves the earlier run's files aside into `previous-<n>/`
    (`move_previous_run_aside`, on rank 0: renames only, nothing deleted); both at once are refused."""
    if resume and overwrite:
        raise RunFolderError("resume continues the run in the output folder and overwrite moves it aside: pass one")
    if not resume and not overwrite:
        refuse_previous_run(output_dir)


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
        f"{output_dir} already holds a training run ({what}): resume it from its latest checkpoint, overwrite it "
        "(moved aside into a previous-<n>/ subfolder) and start afresh, or set another checkpoint.output_dir"
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
    logger.warning("overwrite: moved the previous run of %s aside to %s", out, target)
    return target


def read_rank_state(checkpoint: str | os.PathLike, rank: int) -> dict[str, Any]:
    """This rank's bookkeeping saved with the checkpoint (`rank_state=` of save_checkpoint); {} if none."""
    path = Path(checkpoint) / RANK_STATE_NAME.format(rank)
    return json.loads(path.read_text()) if path.is_file() else {}


def load_checkpoint(
    accelerator: Any,
    checkpoint: str | os.PathLike,
    rank: int,
    world_size: int,
    *,
    objects: TrainingObjects,
) -> tuple[dict, dict]:
    """Restore the weights, optimizer, scheduler and RNG states (as `save_checkpoint` takes them); return
    (trainer state, this rank's data-loader state). Nothing is unpickled."""
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
    load_training_state(accelerator, checkpoint, rank, objects.model, objects.optimizer, objects.scheduler)
    if "accelerator_step" in state:  # accelerate's micro-batch count (its accumulation boundary)
        accelerator.step = int(state["accelerator_step"])
    return state, json.loads(sampler_path.read_text())


def resume_run(accelerator: Any, path: Path, output_dir: Path, rank: int, world_size: int, loader: Any, *,
               objects: TrainingObjects) -> tuple[int, dict[str, Any], int]:
    """Resume a run from the checkpoint at `path` (`choose_resume`), the data `loader` included (collective).

    Returns (step, trainer state, skipped-sample offset): the offset is added to the loader's own count of bad
    samples, which restarts from its load-time rejections, to give the run's count so far. Checkpoints past the
    resumed one belong to the abandoned branch and are renamed, so that `--resume latest` never picks them.
    """
    state, loader_state = load_checkpoint(accelerator, path, rank, world_size, objects=objects)
    loader.load_state_dict(loader_state)
    step = int(state["step"])
    rank_state = read_rank_state(path, rank)
    offset = 0
    if "skipped_samples" in rank_state:
        offset = int(rank_state["skipped_samples"]) - sum(loader.bad_sample_counts().values())
    if rank == 0:
        logger.info("resumed from %s at step %d", path, step)
        abandon_checkpoints_after(output_dir, step)
    barrier()
    return step, state, offset
