"""Unpack an uploaded zip of catalogue photos without trusting it.

A zip is a hostile input when it comes from a browser: member names may climb out of the
folder (``../../etc/cron.d/x``) or be absolute, headers may lie about sizes (a zip bomb
inflates a few KB to many GB), and members may be links. Each member is therefore checked by
name, written by us as a plain file, and counted by the bytes actually inflated, so neither a
false header nor a bomb gets further than the caps.
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from stylesense.errors import InvalidInput

MAX_MEMBERS = 200_000
MAX_TOTAL_BYTES = 8 * 2**30  # inflated, all members together
CHUNK = 1 << 20
KEPT = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".csv"}


def _member_path(name: str) -> PurePosixPath | None:
    """The member's path inside the target folder; None for one to skip (a hidden file, a
    macOS resource fork). Raises InvalidInput for a name that leads outside the folder
    (absolute, a drive letter, ``..``): no honest zip holds one."""
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or re.match(r"^[A-Za-z]:", name) or ".." in path.parts:
        raise InvalidInput(f"zip member {name!r} points outside the upload folder")
    if not path.parts or any(p.startswith(".") or p == "__MACOSX" for p in path.parts):
        return None
    return path


def extract_photos(source: str | Path | BinaryIO, dest: Path, *, max_members: int = MAX_MEMBERS,
                   max_bytes: int = MAX_TOTAL_BYTES) -> list[Path]:
    """Write the photos (and CSV files) of the zip ``source`` under ``dest``; returns their paths.

    Other members are skipped. Raises InvalidInput, leaving ``dest`` as it was, when the file
    is not a zip, holds a member whose name leads outside ``dest``, has more than
    ``max_members`` members or inflates past ``max_bytes``."""
    try:
        archive = zipfile.ZipFile(source)
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise InvalidInput(f"not a zip file: {e}") from None
    dest.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    with archive:
        members = archive.infolist()
        if len(members) > max_members:
            raise InvalidInput(f"the zip holds {len(members):,} members; at most {max_members:,} are read")
        total = 0
        try:
            for info in members:
                if info.is_dir():
                    continue
                name = _member_path(info.filename)
                if name is None or name.suffix.lower() not in KEPT:
                    continue
                target = dest.joinpath(*name.parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(info) as src, target.open("wb") as out:
                    written.append(target)
                    while block := src.read(CHUNK):
                        total += len(block)
                        if total > max_bytes:
                            raise InvalidInput(f"the zip inflates to more than {max_bytes / 2**30:.0f} GiB")
                        out.write(block)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, NotImplementedError, RuntimeError) as e:
            _remove(written)  # a member that fails its CRC, or a method zipfile cannot read
            raise InvalidInput(f"the zip is damaged or uses an unsupported feature: {e}") from None
        except InvalidInput:
            _remove(written)
            raise
    return written


def _remove(paths: Iterable[Path]) -> None:
    for p in paths:
        p.unlink(missing_ok=True)


def guess_template(files: Iterable[Path], root: Path, ids: Iterable[str]) -> str | None:
    """An image template (``images/{id}.jpg``) under ``root`` that names a photo in ``files``
    for the most of ``ids``; None when no id has a photo named after it."""
    wanted = set(ids)
    votes: dict[str, int] = {}
    for f in files:
        if f.suffix.lower() == ".csv" or f.stem not in wanted:
            continue
        rel = f.relative_to(root).as_posix()
        template = rel[: len(rel) - len(f.name)] + "{id}" + f.suffix
        votes[template] = votes.get(template, 0) + 1
    return max(votes, key=votes.__getitem__) if votes else None
