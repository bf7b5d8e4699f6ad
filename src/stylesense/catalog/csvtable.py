"""Reading a product metadata CSV defensively.

Real catalogue feeds arrive with semicolons instead of commas, Windows encodings, ragged rows
and repeated ids. Whole-file problems (no id column, undecodable bytes) stop the import with a
message that says what to change; row-level problems become per-row reports so that the valid
rows still import.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MAX_FIELD = 1 << 20  # a 1 MiB cell is already absurd for product metadata
_INT = re.compile(r"^[+-]?(0|[1-9][0-9]*)$")  # no leading zeros: "0111565001" stays text
_FLOAT = re.compile(r"^[+-]?((0|[1-9][0-9]*)(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?$")


class CsvError(ValueError):
    """The file as a whole cannot be imported."""


@dataclass(frozen=True)
class BadRow:
    row: int  # 1-based line of the data row in the file (the header is line 1)
    item_id: str
    reason: str


@dataclass
class Table:
    columns: list[str]
    rows: list[tuple[int, dict[str, str]]]  # (line number, raw string values)
    bad: list[BadRow]
    delimiter: str


def read_table(path: Path, id_column: str, encoding: str = "utf-8") -> Table:
    """Parse ``path``: sniff the delimiter, check the id column, split good rows from bad ones."""
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise CsvError(f"{path}: file not found") from None
    except OSError as e:
        raise CsvError(f"{path}: cannot read ({e.strerror})") from None
    if not raw.strip():
        raise CsvError(f"{path}: file is empty")
    if b"\x00" in raw[:65536] and not encoding.lower().replace("_", "-").startswith(("utf-16", "utf-32")):
        raise CsvError(f"{path}: contains NUL bytes: a binary file, not a CSV (or UTF-16: pass --encoding utf-16)")
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise CsvError(
            f"{path}: not valid {encoding} (byte 0x{raw[e.start]:02x} on line {line}); "
            "pass --encoding (e.g. latin-1 or cp1252) to say which encoding the file uses"
        ) from None
    except LookupError:
        raise CsvError(f"unknown encoding {encoding!r}") from None
    text = text.removeprefix("\ufeff")

    delimiter = sniff_delimiter(text)
    csv.field_size_limit(MAX_FIELD)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        raise CsvError(f"{path}: no header row") from None
    if id_column not in header:
        hint = ""
        for d in (";", "\t", "|", ","):
            if d != delimiter and any(d in h for h in header):
                hint = f" (the header contains {d!r}: is the file {d!r}-delimited?)"
        raise CsvError(
            f"{path}: no id column {id_column!r}; columns found: {', '.join(header)}{hint}. "
            "Pass --id-column to name the id column."
        )
    dupes = sorted({h for h in header if header.count(h) > 1})
    if dupes:
        raise CsvError(f"{path}: repeated column name(s) {', '.join(dupes)}")

    rows: list[tuple[int, dict[str, str]]] = []
    bad: list[BadRow] = []
    seen: dict[str, int] = {}
    id_pos = header.index(id_column)
    try:
        for values in reader:
            line = reader.line_num
            if not values or all(not v.strip() for v in values):
                continue
            item_id = values[id_pos].strip() if id_pos < len(values) else ""
            if len(values) != len(header):
                bad.append(BadRow(line, item_id, f"{len(values)} fields, header has {len(header)}"))
                continue
            if not item_id:
                bad.append(BadRow(line, "", f"empty id in column {id_column!r}"))
                continue
            if item_id in seen:
                bad.append(BadRow(line, item_id, f"duplicate id (first seen on line {seen[item_id]})"))
                continue
            seen[item_id] = line
            rows.append((line, dict(zip(header, (v.strip() for v in values)))))
    except csv.Error as e:
        raise CsvError(f"{path}: malformed CSV near line {reader.line_num}: {e}") from None
    return Table(header, rows, bad, delimiter)


def sniff_delimiter(text: str) -> str:
    """The candidate that splits the header most often: headers are plain names, so this is
    more dependable than csv.Sniffer on rows whose quoted text holds commas."""
    header = text.split("\n", 1)[0]
    best = max(",;\t|", key=header.count)
    return best if header.count(best) else ","


def column_types(table: Table) -> dict[str, type]:
    """int / float / str per column: numeric only when every non-empty value is."""
    types: dict[str, type] = {}
    for col in table.columns:
        values = [r[col] for _, r in table.rows if r[col] != ""]
        if values and all(_INT.match(v) for v in values):
            types[col] = int
        elif values and all(_FLOAT.match(v) for v in values):
            types[col] = float
        else:
            types[col] = str
    return types


def typed(values: dict[str, str], types: dict[str, type], skip: set[str]) -> dict[str, Any]:
    """Metadata as stored: typed values, empty cells omitted, ``skip`` columns (the id) left out."""
    out: dict[str, Any] = {}
    for col, v in values.items():
        if col in skip or v == "":
            continue
        out[col] = types.get(col, str)(v)
    return out
