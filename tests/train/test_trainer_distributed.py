"""Slow training tests in subprocesses: SIGKILL + --resume latest, and two processes under accelerate launch."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.train.test_trainer import REPO, TINY_YAML, read_metrics, synth_data, tiny_overrides  # noqa: F401 (fixture)

pytestmark = pytest.mark.slow


def _env() -> dict:
    # CUDA_VISIBLE_DEVICES="": these tests are about CPU processes, also on a machine with a GPU
    env = dict(os.environ, PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1", WANDB_MODE="disabled",
               TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    return env


# Run by `accelerate launch` on every rank: records each file this rank writes under the run folder (Python-level
# opens for writing, renames, torch.save and safetensors' save_file, which bypass Python's open), then trains.
_AUDITED_TRAIN = """
import os, sys
import torch, safetensors.torch

root = os.path.abspath(os.environ["VIVID_AUDIT_ROOT"])
log = open(os.path.join(os.environ["VIVID_AUDIT_DIR"], "writes_rank%s.txt" % os.environ["RANK"]), "a", buffering=1)

def record(kind, path):
    try:
        path = os.path.abspath(os.fsdecode(path))
    except TypeError:
        return
    if path.startswith(root + os.sep):
        log.write("%s %s\\n" % (kind, os.path.relpath(path, root)))

WRITE = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC

def hook(event, args):
    if event == "open" and not isinstance(args[0], int):
        mode, flags = args[1], args[2]
        if (any(c in mode for c in "wax+") if isinstance(mode, str) else bool((flags or 0) & WRITE)):
            record("open", args[0])
    elif event == "os.rename":
        record("rename", args[0])
        record("rename-to", args[1])

sys.addaudithook(hook)
_torch_save, _save_file = torch.save, safetensors.torch.save_file

def torch_save(obj, f, *args, **kwargs):
    if isinstance(f, (str, os.PathLike)):
        record("torch.save", f)
    return _torch_save(obj, f, *args, **kwargs)

def save_file(tensors, filename, *args, **kwargs):
    record("save_file", filename)
    return _save_file(tensors, filename, *args, **kwargs)

torch.save, safetensors.torch.save_file = torch_save, save_file  # before anything imports them by name
from train.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _writes(audit_dir: Path, rank: int) -> list[tuple[str, str]]:
    """(kind, path relative to the run folder) of everything rank `rank` wrote there."""
    lines = (audit_dir / f"writes_rank{rank}.txt").read_text().splitlines()
    return [tuple(line.split(" ", 1)) for line in lines]


def _train_cmd(data: Path, run: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "train", "--config", str(TINY_YAML),
            *tiny_overrides(data, run, "optim.max_steps=8", "checkpoint.every_n_steps=3", "checkpoint.keep_last=2",
                            *extra)]


def test_sigkill_then_resume_latest_gives_the_same_losses(synth_data, tmp_path):
    full, killed = tmp_path / "full", tmp_path / "killed"
    subprocess.run(_train_cmd(synth_data, full), env=_env(), check=True, capture_output=True, timeout=600)

    proc = subprocess.Popen(_train_cmd(synth_data, killed), env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 600
    while not (killed / "checkpoints" / "checkpoint-3").is_dir():  # kill right after the first checkpoint
        assert proc.poll() is None and time.time() < deadline, "the run ended before it could be killed"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    done = [r["step"] for r in read_metrics(killed)]
    assert done and max(done) < 8

    subprocess.run(_train_cmd(synth_data, killed) + ["--resume", "latest"], env=_env(), check=True,
                   capture_output=True, timeout=600)
    expected, resumed = read_metrics(full), read_metrics(killed)
    assert [r["step"] for r in resumed] == list(range(1, 9))
    for a, b in zip(expected, resumed):
        assert abs(a["loss"] - b["loss"]) <= 1e-6, (a["step"], a["loss"], b["loss"])
        assert a["lr"] == b["lr"]


def test_two_processes_train_disjoint_samples_rank0_writes(synth_data, tmp_path):
    from train.checkpoint import read_trainer_state
    from vivid.pipeline import VIVIDPipeline

    run, audit = tmp_path / "run", tmp_path / "audit"
    audit.mkdir()
    script = tmp_path / "audited_train.py"
    script.write_text(_AUDITED_TRAIN)
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "29533",
           str(script), "--config", str(TINY_YAML),
           *tiny_overrides(synth_data, run, "optim.max_steps=3", "checkpoint.every_n_steps=3",
                           "logging.log_sample_ids=true")]
    env = dict(_env(), VIVID_AUDIT_ROOT=str(run), VIVID_AUDIT_DIR=str(audit))
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    per_rank = {}
    for rank in (0, 1):
        lines = [json.loads(x) for x in (run / f"sample_ids_rank{rank}.jsonl").read_text().splitlines()]
        assert [x["step"] for x in lines] == [1, 2, 3]
        per_rank[rank] = [set(zip(x["ids"], x["tasks"])) for x in lines]  # a record can serve add and delete
    for step, (a, b) in enumerate(zip(per_rank[0], per_rank[1]), 1):  # (the tiny set wraps over 3 steps)
        assert a and b and not a & b, (step, a, b)
    # one checkpoint, written by rank 0, with both ranks' sampler states, and world size 2
    checkpoint = run / "checkpoints" / "checkpoint-3"
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["checkpoint-3"]
    state = read_trainer_state(checkpoint)
    assert state["world_size"] == 2
    # what each rank wrote, as recorded inside the rank: rank 1 only its own per-rank files
    rank0, rank1 = _writes(audit, 0), _writes(audit, 1)
    names1 = {Path(path).name for _, path in rank1}
    assert {"sampler_rank1.json", "rng_state_rank1.safetensors", "sample_ids_rank1.jsonl"} <= names1, rank1  # hook works
    allowed1 = {"sampler_rank1.json", "rank_state_rank1.json", "rng_state_rank1.safetensors", "rng_state_rank1.json",
                "sample_ids_rank1.jsonl"}
    # the atomic writer's temporaries (.STEM.XXXXXXXX.SUFFIX.part) count as the file they become
    finals1 = {re.sub(r"^\.(.+)\.[a-z0-9_]{8}(\.[^.]+)\.part$", r"\1\2", name) for name in names1}
    assert finals1 <= allowed1, sorted(finals1 - allowed1)
    assert not any(kind.startswith("rename") and path.startswith("checkpoints/checkpoint-") for kind, path in rank1)
    names0 = {Path(path).name for _, path in rank0}
    assert {"optimizer.safetensors", "optimizer.json", "scheduler.json", "trainable_0.safetensors",
            "metrics.jsonl", "pytorch_lora_weights.safetensors", "sampler_rank0.json",
            "rng_state_rank0.safetensors"} <= names0, sorted(names0)
    assert any(re.fullmatch(r"\.trainer_state\.[a-z0-9_]{8}\.json\.part", name) for name in names0), sorted(names0)
    assert ("rename-to", "checkpoints/checkpoint-3") in rank0
    assert {p.name for p in checkpoint.glob("sampler_rank*.json")} == {"sampler_rank0.json", "sampler_rank1.json"}
    assert {p.name for p in checkpoint.glob("rng_state_rank*.safetensors")} == {"rng_state_rank0.safetensors",
                                                                              "rng_state_rank1.safetensors"}
    assert not list(checkpoint.rglob("*.pkl")) and not list(checkpoint.rglob("*.bin"))  # no pickle written
    assert out.stderr.count("saved checkpoint") == 1 and "[rank 1] INFO train.checkpoint" not in out.stderr
    assert "using torch.distributed" not in out.stderr  # accelerate and torch.distributed agree: 2 processes
    assert len(read_metrics(run)) == 3  # metrics from rank 0 only
    VIVIDPipeline.from_vivid(checkpoint / "vivid-weights", base_model=str(run / "tiny-model"))
