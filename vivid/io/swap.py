"""Replacing a set of files inside a folder that holds other files too (an export into a Hub clone), so that a
kill at any point is completed by the next run and a reader never uses a mixed set.

The new files are written into a temporary folder beside the destination (`vivid.io.atomic.temporary_dir`), with a
manifest (`MANIFEST_NAME`: every file's size and SHA-256). The swap then writes a journal into that folder, sets the
destination's manifest aside first (from then on the destination holds no complete set), the other old files next,
and moves the new files in, the manifest last. Every step is a rename and the state after each is read from which
files are where, so `finish_interrupted_swaps` completes a swap that a kill stopped from any point; an error or
Ctrl-C inside the swap undoes it instead. `check_manifest` refuses a folder whose files are not its manifest's.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from vivid.io.atomic import locked_temporary_dir, stale_temporary_dirs, write_json_atomic

logger = logging.getLogger(__name__)

MANIFEST_NAME = "vivid_manifest.json"
JOURNAL_NAME = ".swap.json"  # in the temporary folder, written when the swap starts
PREVIOUS_DIR = ".previous"  # in the temporary folder: the old files set aside


class IncompleteFolderError(ValueError):
    """A folder whose files are not those its manifest lists (an interrupted write, a file changed by hand)."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(folder: Path, names: Sequence[str]) -> Path:
    """The manifest of `folder`'s files `names`: their sizes and SHA-256, for `check_manifest`."""
    files = {name: {"size": (folder / name).stat().st_size, "sha256": _sha256(folder / name)} for name in names}
    return write_json_atomic(folder / MANIFEST_NAME, {"files": files}, indent=1)


def read_manifest(folder: Path) -> dict[str, dict] | None:
    """{name: {"size", "sha256"}} of `folder`'s manifest, or None when it has none (a folder written before
    manifests, a training checkpoint's weights). IncompleteFolderError if it is not one."""
    path = folder / MANIFEST_NAME
    if not path.is_file():
        return None
    try:
        files = json.loads(path.read_text(encoding="utf-8"))["files"]
        assert isinstance(files, dict) and all(isinstance(v, dict) for v in files.values())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, AssertionError):
        raise IncompleteFolderError(f"{path} is not a vivid manifest: export the folder again") from None
    return files


def check_manifest(folder: Path, names: Sequence[str] | None = None) -> bool:
    """Check that the files `names` (default: all) that `folder`'s manifest lists are there with its sizes and
    hashes; IncompleteFolderError naming the first that is not. False when the folder has no manifest."""
    files = read_manifest(folder)
    if files is None:
        return False
    for name, entry in files.items():
        if names is not None and name not in names:
            continue
        path = folder / name
        if not path.is_file():
            problem = "is missing"
        elif path.stat().st_size != entry.get("size"):
            problem = f"has {path.stat().st_size} bytes, the manifest says {entry.get('size')}"
        elif _sha256(path) != entry.get("sha256"):
            problem = "differs from the file the manifest lists (SHA-256)"
        else:
            continue
        raise IncompleteFolderError(f"{path} {problem}: {folder} is not one complete set of files (an interrupted "
                                    f"write or a file changed by hand); write it again")
    return True


def _new_order(names: Sequence[str], last: Sequence[str]) -> list[str]:
    """`names` with the manifest last and, before it, `last` in that order."""
    tail = [n for n in last if n in names and n != MANIFEST_NAME] + [MANIFEST_NAME]
    return [n for n in sorted(names) if n not in tail] + [n for n in tail if n in names]


def _roll_forward(tmp: Path, out_dir: Path, journal: dict) -> None:
    """Complete a swap from whatever point it reached: idempotent."""
    new, owned = journal["new"], journal["owned"]
    previous = tmp / PREVIOUS_DIR
    previous.mkdir(exist_ok=True)
    for name in [MANIFEST_NAME, *[n for n in owned if n != MANIFEST_NAME]]:  # the manifest first
        still_old = name not in new or (tmp / name).exists()  # a new file moved in is no longer in `tmp`
        if still_old and (out_dir / name).is_file():
            os.replace(out_dir / name, previous / name)
    for name in new:
        if (tmp / name).exists():
            os.replace(tmp / name, out_dir / name)


def _roll_back(tmp: Path, out_dir: Path, journal: dict) -> None:
    """Undo a swap from whatever point it reached: idempotent."""
    previous = tmp / PREVIOUS_DIR
    for name in reversed(journal["new"]):  # the manifest first
        if not (tmp / name).exists() and (out_dir / name).is_file():
            os.replace(out_dir / name, tmp / name)
    if previous.is_dir():
        for name in sorted(p.name for p in previous.iterdir()):
            os.replace(previous / name, out_dir / name)


def swap_in(tmp: Path, out_dir: Path, owned: Sequence[str], last: Sequence[str] = ()) -> None:
    """Replace the files `owned` in `out_dir` by the files of `tmp` (a `temporary_dir` holding a manifest, which
    must be among `owned`): whatever `out_dir` holds besides stays. `last`: names moved in just before the
    manifest. An exception inside (Ctrl-C included) undoes the swap; a kill is completed by
    `finish_interrupted_swaps`."""
    from vivid.io.atomic import TEMPORARY_MARKER

    if not (tmp / MANIFEST_NAME).is_file() or MANIFEST_NAME not in owned:
        raise ValueError(f"swap_in: {tmp} has no manifest or {MANIFEST_NAME} is not owned (internal error)")
    names = [p.name for p in tmp.iterdir() if p.name not in (TEMPORARY_MARKER, JOURNAL_NAME, PREVIOUS_DIR)]
    journal = {"out": out_dir.name, "new": _new_order(names, last), "owned": sorted(set(owned))}
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(tmp / JOURNAL_NAME, journal, indent=1)
    try:
        _roll_forward(tmp, out_dir, journal)
    except BaseException:
        _roll_back(tmp, out_dir, journal)
        raise


def finish_interrupted_swaps(out_dir: Path, kind: str) -> list[Path]:
    """Complete every swap into `out_dir` that a kill stopped (temporaries of `kind` holding a journal), and remove
    the temporaries of `kind` that kills left before their swap began. Waits for a live one to finish. Returns the
    temporaries dealt with."""
    done = []
    for tmp in stale_temporary_dirs(out_dir, kind):
        with locked_temporary_dir(tmp) as still_there:
            if not still_there:
                continue
            journal_path = tmp / JOURNAL_NAME
            if journal_path.is_file():
                journal = json.loads(journal_path.read_text(encoding="utf-8"))
                _roll_forward(tmp, out_dir, journal)
                logger.warning("completed the interrupted replacement of the files in %s", out_dir)
            shutil.rmtree(tmp)
        done.append(tmp)
    return done
