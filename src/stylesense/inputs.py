"""What the library accepts from outside: the files it reads and the ids it stores.

Every surface (the CLI now, a REST API and web app later) hands the library paths and ids that
people typed or that came in a feed, so the rules live here, once:

* Files are read only when they are regular files, under a byte cap checked both before and
  while reading. A path in a catalogue row or on a command line can name ``/dev/zero`` (endless,
  and its size says 0), a FIFO (opening it waits forever for a writer) or a file that grows,
  and none of them must hang an import or exhaust memory.
* Ids are stored exactly as given, so an id with spaces around it is refused instead of being
  quietly changed: ``'  padded  '`` stored as ``padded`` could never be found again by the
  string its owner knows. (CSV cells are the exception by convention: a reader strips the
  whitespace around every cell, so a padded id cell becomes the plain id.) An id holds no
  control characters (a newline or NUL in an id breaks logs, CSV exports and URLs) and at most
  ``MAX_ID_CHARS`` characters.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from typing import BinaryIO

from stylesense.errors import InvalidInput

_CHUNK = 1 << 20
MAX_ID_CHARS = 255
"""Longest id: what the database's id columns hold, and more than any SKU or user id needs."""
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")  # Unicode's control characters (category Cc)
_SURROGATE = re.compile("[\ud800-\udfff]")  # only in broken text (e.g. JSON's "\\ud800"): no UTF-8 for it

# The non-regular kinds of file, for the message (S_ISLNK cannot occur: open follows links).
_KINDS = ((stat.S_ISDIR, "directory"), (stat.S_ISFIFO, "pipe (FIFO)"), (stat.S_ISCHR, "character device"),
          (stat.S_ISBLK, "block device"), (stat.S_ISSOCK, "socket"))


class FileRefused(OSError):
    """A path that names something other than a regular file, or a file above its byte cap.

    An OSError, so that code reporting unreadable files reports these too; ``str(err)`` is a
    short reason for people."""


@contextmanager
def open_regular(path: str | os.PathLike[str], max_bytes: int) -> Iterator[BinaryIO]:
    """``path`` open for binary reading, once it is known to be a regular file of at most
    ``max_bytes`` bytes.

    The file is opened non-blocking, so a FIFO returns at once instead of waiting for a writer,
    and its type is checked on the open descriptor, so the path cannot be swapped for something
    else between the check and the read. Raises FileNotFoundError or PermissionError as
    ``open`` does, FileRefused for anything else."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            kind = next((name for test, name in _KINDS if test(info.st_mode)), "special file")
            raise FileRefused(f"not a regular file ({kind})")
        if info.st_size > max_bytes:
            raise FileRefused(f"file too large: {info.st_size} bytes > cap {max_bytes}")
        fp = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    with fp:
        yield fp


def read_chunks(fp: BinaryIO, max_bytes: int) -> Iterator[bytes]:
    """The rest of ``fp`` in chunks, raising FileRefused once more than ``max_bytes`` came: the
    size seen at open can be out of date (a growing file) or meaningless (``/proc`` files say 0)."""
    total = 0
    while chunk := fp.read(_CHUNK):
        total += len(chunk)
        if total > max_bytes:
            raise FileRefused(f"file too large: more than {max_bytes} bytes")
        yield chunk


def read_capped(path: str | os.PathLike[str], max_bytes: int) -> bytes:
    """All bytes of a regular file of at most ``max_bytes`` (see :func:`open_regular`)."""
    with open_regular(path, max_bytes) as fp:
        return b"".join(read_chunks(fp, max_bytes))


def id_problem(value: object, what: str) -> str | None:
    """Why ``value`` cannot be stored or looked up as a ``what`` (e.g. "user id"), or None."""
    if not isinstance(value, str):
        return f"{what} must be text, got {type(value).__name__}"
    if not value.strip():
        return f"empty {what}"
    if value != value.strip():
        return f"{what} {value!r} has leading or trailing whitespace (ids are kept exactly as given)"
    if len(value) > MAX_ID_CHARS:
        return f"{what} is {len(value)} characters long; the most is {MAX_ID_CHARS}"
    if _CONTROL.search(value):
        return f"{what} {value!r} contains a control character"
    return text_problem(value, what)


def text_problem(value: str, what: str) -> str | None:
    """Why ``value`` cannot be stored as text (a lone surrogate, which has no UTF-8), or None."""
    if _SURROGATE.search(value):
        return f"{what} {value!r} is not valid Unicode text (it holds a lone surrogate)"
    return None


def check_id(value: str, what: str) -> str:
    """``value`` when it is a usable id (see :func:`id_problem`), else ValueError."""
    problem = id_problem(value, what)
    if problem is not None:
        raise InvalidInput(problem)
    return value
