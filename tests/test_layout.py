"""The tests' layout (README "Layout", tests/conftest.py): a test file is named after what it tests and sits at its
place, so that the tests of a module are found without a search."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import REPO_ROOT as ROOT


def names_tested_by(test_file: Path) -> set[str]:
    """What `tests/a/b/test_x_y.py` may test: a module or package `x_y` or `x` in `a/b/` (`test_x_y.py` then holds
    one aspect of `x`), or the package `a/b` itself."""
    parts = test_file.stem.removeprefix("test_").split("_")
    return {"_".join(parts[:k]) for k in range(1, len(parts) + 1)}


def test_every_test_file_names_a_module_or_package_at_its_place():
    """Files directly in tests/ test the repository's own files (pyproject's floors, launch.sh) and are left out."""
    misplaced = []
    for test_file in sorted((ROOT / "tests").rglob("test_*.py")):
        folder = test_file.parent.relative_to(ROOT / "tests")
        if folder == Path("."):
            continue
        place, names = ROOT / folder, names_tested_by(test_file)
        if place.name not in names and not any((place / f"{n}.py").is_file() or (place / n).is_dir() for n in names):
            misplaced.append(str(test_file.relative_to(ROOT)))
    assert not misplaced, f"test files that name no module or package at their place: {misplaced}"
