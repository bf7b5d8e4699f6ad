"""What a long-running, threaded server needs from the library: a readers-writer lock, so that
many requests read an index or a model at once while a live update changes it alone, and file
stamps, so that a file another process replaced (a retrained model, a rebuilt index, a changed
config) is noticed on the next request and read again.

Files of a home are always replaced by an atomic rename (``atomic.atomic_write``), so a new
version is a new inode: the stamp (inode, size, modification time) changes exactly when the
file does, at the cost of one ``stat`` per check.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

Stamp = tuple[int, int, int]


def file_stamp(path: str | os.PathLike[str]) -> Stamp | None:
    """(inode, size, mtime in ns) of ``path``, or None where there is no file."""
    try:
        st = os.stat(Path(path))
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


class ReadWriteLock:
    """Many readers or one writer. A waiting writer holds back new readers, so a stream of
    requests cannot starve a live update. Not re-entrant: a reader must not ask to write."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writing = False
        self._writers_waiting = 0

    @contextmanager
    def reading(self) -> Iterator[None]:
        with self._cond:
            while self._writing or self._writers_waiting:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if not self._readers:
                    self._cond.notify_all()

    @contextmanager
    def writing(self) -> Iterator[None]:
        with self._cond:
            self._writers_waiting += 1
            while self._writing or self._readers:
                self._cond.wait()
            self._writers_waiting -= 1
            self._writing = True
        try:
            yield
        finally:
            with self._cond:
                self._writing = False
                self._cond.notify_all()
