"""The one atomic writer: every file vivid writes goes through a temporary file beside it, renamed into place only
when complete, so a failed or killed run never leaves a partial output (at most a temporary that the next run of
the same write removes, `remove_stale_temporaries`)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def _temporary_affixes(path: Path) -> tuple[str, str]:
    """The prefix and suffix of `atomic_path`'s temporary names for `path`: `.STEM.XXXXXXXX.SUFFIX.part`."""
    return f".{path.stem}.", f"{path.suffix}.part"


def stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """The temporary files a killed `atomic_path(path)` left beside `path`: only names of exactly the form it
    creates (mkstemp's 8 random characters between the prefix and the suffix), so nothing else is matched."""
    path = Path(path)
    prefix, suffix = _temporary_affixes(path)
    pattern = re.compile(re.escape(prefix) + r"[a-z0-9_]{8}" + re.escape(suffix))
    try:
        entries = list(os.scandir(path.parent))
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted(Path(e.path) for e in entries if pattern.fullmatch(e.name) and e.is_file(follow_symlinks=False))


def remove_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Delete `stale_temporaries(path)`: called before a run writes `path` again. Returns what was removed."""
    removed = stale_temporaries(path)
    for tmp in removed:
        tmp.unlink(missing_ok=True)
    return removed


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, fsync: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it to `path` only if the block succeeds. `fsync`: flush the
    file to disk before the rename (checkpoints: the new content or the old survives a power loss)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    prefix, suffix = _temporary_affixes(path)
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files; give the output ordinary permissions
        if fsync:
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: str | os.PathLike, text: str, fsync: bool = False) -> Path:
    """Replace `path` by `text` (UTF-8): a crash leaves the old content or the new, never a mix."""
    with atomic_path(path, fsync=fsync) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json_atomic(path: str | os.PathLike, data: Any, indent: int = 2, fsync: bool = False) -> Path:
    """`data` as JSON (UTF-8, non-JSON values as `str`), written atomically."""
    return write_text_atomic(path, json.dumps(data, indent=indent, default=str, ensure_ascii=False) + "\n", fsync)


TEMPORARY_MARKER = ".vivid-temporary.json"  # inside every temporary folder vivid makes: what it is for


def _temporary_dir_pattern(path: Path, kind: str) -> re.Pattern:
    return re.compile(re.escape(f".{path.name}.") + r"[a-z0-9_]{8}" + re.escape(f".{kind}"))


@contextlib.contextmanager
def temporary_dir(path: str | os.PathLike, kind: str) -> Iterator[Path]:
    """A new folder `.NAME.XXXXXXXX.KIND` beside `path` holding vivid's marker file (what it is for), locked while
    the block runs (so `stale_temporary_dirs` users wait rather than take it over) and removed afterwards. A kill
    leaves it: `stale_temporary_dirs` finds it by its exact name and its marker, nothing else."""
    import fcntl

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=f".{kind}", dir=path.parent))
    fd = -1
    try:
        fd = os.open(folder / TEMPORARY_MARKER, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX)  # before the marker says what the folder is: no one takes it over meanwhile
        os.write(fd, (json.dumps({"vivid": kind, "for": path.name}) + "\n").encode())
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        if fd >= 0:
            os.close(fd)


def stale_temporary_dirs(path: str | os.PathLike, kind: str) -> list[Path]:
    """The temporary folders `temporary_dir(path, kind)` made and a kill left: a name of exactly that form (not a
    link) holding the marker file that names `path` and `kind`. Another process may still be using one
    (`locked_temporary_dir` waits for it)."""
    path = Path(path)
    pattern = _temporary_dir_pattern(path, kind)
    try:
        entries = list(os.scandir(path.parent))
    except (FileNotFoundError, NotADirectoryError):
        return []
    found = []
    for entry in entries:
        if not (pattern.fullmatch(entry.name) and entry.is_dir(follow_symlinks=False)):
            continue
        marker = Path(entry.path) / TEMPORARY_MARKER
        try:
            data = json.loads(marker.read_text()) if marker.is_file() and not marker.is_symlink() else None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            data = None
        if data == {"vivid": kind, "for": path.name}:
            found.append(Path(entry.path))
    return sorted(found)


@contextlib.contextmanager
def locked_temporary_dir(folder: Path) -> Iterator[bool]:
    """Hold the lock of a temporary folder found by `stale_temporary_dirs`, waiting while a live process holds it;
    yields False when the folder is gone by then (its process finished and removed it)."""
    import fcntl

    try:
        fd = os.open(folder / TEMPORARY_MARKER, os.O_RDONLY)
    except FileNotFoundError:
        yield False
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield (folder / TEMPORARY_MARKER).is_file()
    finally:
        os.close(fd)
