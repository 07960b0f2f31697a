"""The declared dependency floors (pyproject.toml) against what is installed, and the app's UI building.

.ci/run installs the floors themselves (`uv pip install --resolution lowest-direct`) into a throwaway venv and
runs these with VIVID_EXPECT_FLOORS=1 plus a short subset of the suite (a tiny edit, a few training steps, a
DeepSpeed checkpoint), so a floor that does not really work fails CI.
"""

from __future__ import annotations

import os
import re
from importlib import metadata
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT as REPO
# torch is pinned to the local CPU wheel in every CI venv (older CPU builds are not on PyPI): its floor is reasoned,
# not installed (docs/training.md, "Dependency floors")
NOT_INSTALLED_AT_FLOOR = {"torch"}


def declared_requirements() -> list:
    """Every requirement of pyproject.toml: the dependencies and the train, app, demo and test extras."""
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    from packaging.requirements import Requirement

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    lines = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        lines.extend(extra)
    return [Requirement(line) for line in dict.fromkeys(lines)]


def floor(requirement) -> str | None:
    return next((s.version for s in requirement.specifier if s.operator == ">="), None)


def test_every_dependency_has_a_floor_and_the_installed_versions_meet_it():
    from packaging.version import Version

    expect_floors = os.environ.get("VIVID_EXPECT_FLOORS") == "1"
    for requirement in declared_requirements():
        low = floor(requirement)
        assert low is not None, f"{requirement}: no >= floor"
        try:
            installed = metadata.version(requirement.name)
        except metadata.PackageNotFoundError:
            continue  # an extra this environment does not install
        assert requirement.specifier.contains(installed, prereleases=True), f"{requirement.name} {installed}"
        if expect_floors and requirement.name not in NOT_INSTALLED_AT_FLOOR:
            # the floor's release itself, or its first build (opencv 4.8 is 4.8.0.76); trailing zeros alike
            got, want = Version(re.sub(r"\+.*$", "", installed)).release, Version(low).release
            got = got + (0,) * max(0, len(want) - len(got))
            assert got[:len(want)] == want, f"{requirement.name}: {installed} installed, floor {low}"


def test_app_ui_builds_without_a_model(tmp_path):
    """The Gradio UI (every component and event) builds with the installed Gradio, without a model or a server."""
    import importlib.util

    if importlib.util.find_spec("gradio") is None:  # not installed; installed but broken is a failure
        pytest.skip("gradio is not installed")
    import gradio  # noqa: F401

    from vivid.apps.gradio_app import VividApp, build_app

    demo = build_app(VividApp(pipe=None, workdir=tmp_path))
    assert demo is not None
