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
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from stylesense.errors import InvalidInput
from stylesense.inputs import FileRefused, read_capped

MAX_FIELD = 1 << 20  # a 1 MiB cell is already absurd for product metadata
MAX_CSV_BYTES = 1 << 30
"""Largest CSV read. A file is parsed in memory (H&M's articles.csv is 36 MB), so a bigger one
is imported in parts: every import adds to what the home holds."""
NUMERIC_SHARE = 0.9
"""A column is numeric when at least this share of its non-empty cells are numbers: feeds
have the odd "N/A" or "$12" in a price column, which must not turn every price into text."""
_INT = re.compile(r"^[+-]?(0|[1-9][0-9]*)$")  # no leading zeros: "0111565001" stays text
_FLOAT = re.compile(r"^[+-]?((0|[1-9][0-9]*)(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?$")
_ZERO_PADDED = re.compile(r"^0[0-9]+$")  # a code such as an article id: its column is text


class CsvError(InvalidInput):
    """The file as a whole cannot be imported."""


@dataclass(frozen=True)
class BadRow:
    row: int  # 1-based line of the data row in the file (the header is line 1)
    item_id: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"row": self.row, "item_id": self.item_id, "reason": self.reason}


@dataclass
class Table:
    columns: list[str]
    rows: list[tuple[int, dict[str, str]]]  # (line number, raw string values)
    bad: list[BadRow]
    delimiter: str


class Record(NamedTuple):
    """One parsed CSV record: its first line, its cells, or (cells empty) why it is not CSV."""

    line: int
    cells: list[str]
    error: str | None = None


def read_text(path: Path, encoding: str) -> str:
    """The decoded text of a CSV file (a regular file of at most MAX_CSV_BYTES), without a BOM.

    Raises CsvError for whole-file problems, saying what to pass instead where there is a fix."""
    try:
        raw = read_capped(path, MAX_CSV_BYTES)
    except FileNotFoundError:
        raise CsvError(f"{path}: file not found") from None
    except FileRefused as e:
        raise CsvError(f"{path}: {e}") from None
    except OSError as e:
        raise CsvError(f"{path}: cannot read ({e.strerror or e})") from None
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
    return text.removeprefix("\ufeff")


def parse(
    path: Path, text: str, delimiter: str, quoting: int = csv.QUOTE_MINIMAL
) -> tuple[list[str], Iterator[Record]]:
    """The header's column names of ``path``'s ``text``, and then its records, each numbered by
    the line it starts on. CsvError when there is no header or it is not CSV.

    Quoting is strict: a quote left open swallows the rest of the file into one field, which
    the csv module would otherwise return as a normal record, so the lost rows would vanish
    without a word. Such a record (and any other the csv module cannot parse) comes back with
    an ``error`` naming its lines, and parsing goes on after it."""
    records = _records(text, delimiter, quoting)
    first = next(records, None)
    if first is None:
        raise CsvError(f"{path}: no header row")
    if first.error:
        raise CsvError(f"{path}: the header is not valid CSV: {first.error}")
    return [h.strip() for h in first.cells], records


def _records(text: str, delimiter: str, quoting: int) -> Iterator[Record]:
    csv.field_size_limit(MAX_FIELD)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, quoting=quoting, strict=True)
    start = 1
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            lines = f"line {start}" if reader.line_num == start else f"lines {start}-{reader.line_num}"
            reason = ("unterminated quote: read to the end of the file as one field" if "end of data" in str(e)
                      else f"malformed CSV ({e})")
            yield Record(start, [], f"{reason}; {lines} not imported")
        else:
            yield Record(start, cells)
        start = reader.line_num + 1


def read_table(path: Path, id_column: str, encoding: str = "utf-8") -> Table:
    """Parse ``path``: sniff the delimiter, check the id column, split good rows from bad ones."""
    text = read_text(path, encoding)
    delimiter = sniff_delimiter(text)
    header, records = parse(path, text, delimiter)
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
    for line, values, error in records:
        if error:
            bad.append(BadRow(line, "", error))
            continue
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
    return Table(header, rows, bad, delimiter)


def sniff_delimiter(text: str) -> str:
    """The candidate that splits the header most often: headers are plain names, so this is
    more dependable than csv.Sniffer on rows whose quoted text holds commas."""
    header = text.split("\n", 1)[0]
    best = max(",;\t|", key=header.count)
    return best if header.count(best) else ","


def column_types(table: Table, numeric: Iterable[str] = ()) -> dict[str, type]:
    """int / float / str per column.

    A column is numeric when at least NUMERIC_SHARE of its non-empty cells are numbers, and
    none of its cells is a zero-padded code (article ids such as "0111565001" stay text), or
    when it is named in ``numeric`` (a price column is numeric whatever its cells hold). It is
    int when all its numbers are, else float. Its other cells are not numbers: see typed."""
    types: dict[str, type] = {}
    forced = set(numeric)
    for col in table.columns:
        values = [r[col] for _, r in table.rows if r[col] != ""]
        ints = sum(1 for v in values if _INT.match(v))
        numbers = sum(1 for v in values if _FLOAT.match(v))  # every int matches too
        coded = any(_ZERO_PADDED.match(v) for v in values)
        if col in forced or (values and numbers >= NUMERIC_SHARE * len(values) and not coded):
            types[col] = int if ints == numbers else float
        else:
            types[col] = str
    return types


def typed(values: dict[str, str], types: dict[str, type], skip: set[str]) -> tuple[dict[str, Any], list[str]]:
    """Metadata as stored: typed values, empty cells omitted, ``skip`` columns (the id) left out;
    and why any cell of a numeric column was left out (it is not a number there)."""
    out: dict[str, Any] = {}
    problems: list[str] = []
    for col, v in values.items():
        if col in skip or v == "":
            continue
        kind = types.get(col, str)
        if kind is not str and not (_INT if kind is int else _FLOAT).match(v):
            problems.append(f"column {col!r}: {v!r} is not a number (the column is numeric); "
                            "stored empty, the rest of the row imported")
            continue
        out[col] = kind(v)
    return out, problems
