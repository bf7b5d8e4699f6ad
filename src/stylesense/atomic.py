"""Crash-safe file writes: a reader sees the old file or the new one, never half of either.

Index files, adapters and the home's config go through :func:`atomic_write`, so that a process
killed mid-write (SIGKILL, OOM, power cut) leaves the previous version loadable.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import numpy as np

from stylesense.errors import Damaged


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> None:
    """Call ``write(file)`` on a temp file beside ``path``, then rename it over ``path``.

    Temp file in the same directory (so ``os.replace`` is a same-filesystem rename), flush +
    fsync before the rename (so the renamed file has its data), fsync of the directory after
    (so the rename itself survives a power cut). Temp names carry the writer's pid; leftovers
    of writers that died (SIGKILL, OOM) are removed here, since nobody else will.
    """
    path = Path(path)
    directory = path.parent
    directory.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(path)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def save_npz(path: str | os.PathLike, header: dict, arrays: dict[str, np.ndarray]) -> None:
    """A JSON header plus arrays as one .npz, written atomically: the one file format of
    indexes and models, readable without pickle."""
    atomic_write(path, lambda f: np.savez(f, header=np.array(json.dumps(header)), **arrays))


class DamagedFile(Damaged):
    """A saved file (index, model, adapter) that cannot be read back: truncated, overwritten,
    or of a format this version does not know. Callers turn it into a message saying how to
    rebuild that file, which is why the path and the reason travel separately."""

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = Path(path)
        self.reason = reason


def load_npz(path: str | os.PathLike, version: int, what: str) -> tuple[dict, dict[str, np.ndarray]]:
    """(header, arrays) of a ``save_npz`` file whose header has ``format == version``; never
    unpickles, so a tampered file cannot run code. A missing file raises FileNotFoundError,
    an unreadable one DamagedFile (the zip's CRCs catch torn or flipped bytes)."""
    try:
        with np.load(Path(path), allow_pickle=False) as data:
            header = json.loads(str(data["header"]))
            arrays = {name: data[name] for name in data.files if name != "header"}
    except FileNotFoundError:
        raise
    except (zipfile.BadZipFile, EOFError, OSError, KeyError, ValueError) as e:
        raise DamagedFile(path, _unreadable(Path(path), e)) from e
    if not isinstance(header, dict) or header.get("format") != version:
        found = header.get("format") if isinstance(header, dict) else None
        raise DamagedFile(path, f"unsupported {what} format {found!r}")
    return header, arrays


def _unreadable(path: Path, error: Exception) -> str:
    """Why ``np.load`` failed, in words: its own messages mislead (a file that is not a zip
    at all is reported as "pickled data", a truncated one as "not a zip file")."""
    try:
        with path.open("rb") as f:
            head = f.read(4)
    except OSError as e:
        return f"cannot read it: {e.strerror or e}"
    if not head:
        return "empty file"
    if head != b"PK\x03\x04":
        return "not a zip archive"
    if not zipfile.is_zipfile(path):
        return "truncated zip"
    return f"corrupt zip: {error}" if isinstance(error, (zipfile.BadZipFile, EOFError)) else str(error)


def _remove_stale_temps(path: Path) -> None:
    """Delete ``.<name>.<pid>.*.tmp`` siblings whose writer process no longer exists."""
    for tmp in path.parent.glob(f".{path.name}.*.tmp"):
        pid_part = tmp.name[len(path.name) + 2 :].split(".", 1)[0]
        if not pid_part.isdigit() or _pid_alive(int(pid_part)):
            continue
        tmp.unlink(missing_ok=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
