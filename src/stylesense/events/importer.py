"""Reading behaviour logs (purchases, ratings, clicks) from CSV into the event store.

Every cell is read as text first, so ids keep their leading zeros (H&M article ids are
10 digits starting with 0) and nothing is guessed from the first rows. Whole-file problems (a
named column missing, unreadable or empty file) raise :class:`CsvError`; a bad row (a cell that
does not parse, such as a time or a price that is not a number, or an event that breaks the
store's rules, :func:`~stylesense.events.store.event_problems`) becomes a :class:`BadRow` with
its line number while the other rows still import.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from stylesense.catalog.csvtable import BadRow, CsvError, parse, read_text, sniff_delimiter
from stylesense.errors import InvalidInput
from stylesense.events.store import EventStore, event_problems
from stylesense.weights import DEFAULT_WEIGHTS

# Column layouts of the public data sets, as keyword arguments of read_events_csv.
PRESETS: dict[str, dict[str, Any]] = {
    # H&M transactions.csv: one row per item bought (identical rows are repeat purchases).
    "hm": {"user_column": "customer_id", "item_column": "article_id", "time_column": "t_dat",
           "type": "purchase", "price_column": "price"},
    # RecBole atomic .inter (MovieLens): tab separated, typed header names, epoch seconds.
    "movielens": {"user_column": "user_id:token", "item_column": "item_id:token",
                  "time_column": "timestamp:float", "type": "rating",
                  "value_column": "rating:float", "delimiter": "\t"},
}

# ASCII digits and spaces only ((?a)): Unicode ones ("１２", a no-break space) match \d and \s
# but pandas cannot parse them, which failed the whole import instead of the one row.
_NUMBER = r"(?a)^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$"


@dataclass(frozen=True)
class EventImportReport:
    """``rows`` data rows were read: ``inserted`` are new, ``duplicates`` were already
    stored, ``bad`` were rejected (rows == inserted + duplicates + len(bad))."""

    rows: int
    inserted: int
    duplicates: int
    bad: list[BadRow]

    def to_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "inserted": self.inserted, "duplicates": self.duplicates,
                "bad": [b.to_dict() for b in self.bad]}


def read_events_csv(
    path: str | Path,
    *,
    user_column: str,
    item_column: str,
    time_column: str,
    type: str | None = None,
    type_column: str | None = None,
    price_column: str | None = None,
    value_column: str | None = None,
    session_column: str | None = None,
    time_unit: str | None = None,
    delimiter: str | None = None,
    encoding: str = "utf-8",
    known_types: Iterable[str] = tuple(DEFAULT_WEIGHTS),
) -> tuple[pd.DataFrame, list[BadRow]]:
    """An events table (user_id, item_id, type, ts, price, value, session_id) in file order,
    and the rejected rows.

    Each event's type is ``type`` for the whole file or the ``type_column`` cell (case and
    spaces ignored). Times are ISO dates or datetimes (naive ones taken as UTC) or, when
    numeric, epoch ``time_unit`` (default seconds). ``delimiter`` None: sniffed from the header.
    """
    if (type is None) == (type_column is None):
        raise InvalidInput("pass exactly one of type (one type for the whole file) or type_column")
    known = set(known_types)
    if type is not None and type not in known:
        raise InvalidInput(f"unknown event type {type!r}; known: {', '.join(sorted(known))}")
    header, lines, records, bad = _read_rows(Path(path), delimiter, encoding)
    wanted = {"user": user_column, "item": item_column, "time": time_column, "type": type_column,
              "price": price_column, "value": value_column, "session": session_column}
    absent = [f"{role} column {name!r}" for role, name in wanted.items()
              if name is not None and name not in header]
    if absent:
        raise CsvError(f"{path}: no {', no '.join(absent)}; columns found: {', '.join(header)}")

    raw = pd.DataFrame(records, columns=header, dtype=object)
    user = raw[user_column].str.strip()
    item = raw[item_column].str.strip()
    kind = raw[type_column].str.strip().str.lower() if type_column else pd.Series(type, index=raw.index)
    when = raw[time_column].str.strip()
    ts = _parse_times(when, time_unit or "s")
    numbers = {name: _parse_numbers(raw[column]) if column else pd.Series(np.nan, index=raw.index)
               for name, column in (("price", price_column), ("value", value_column))}
    session = raw[session_column].str.strip() if session_column else pd.Series("", index=raw.index)

    events = pd.DataFrame({
        "user_id": user, "item_id": item, "type": kind, "ts": ts,
        "price": numbers["price"], "value": numbers["value"], "session_id": session,
    })
    # A cell that does not parse is reported as such; the store's rules judge the rest.
    reasons = event_problems(events, known).to_numpy(copy=True)
    unparsed: list[tuple[pd.Series, str, pd.Series]] = [  # (failed, reason, cell to quote)
        (ts.isna(), f"time in column {time_column!r} is not an ISO date or an epoch number", when)]
    for name, column in (("price", price_column), ("value", value_column)):
        if column:
            cell = raw[column].str.strip()
            unparsed.append(((cell != "") & numbers[name].isna(), f"{name} in column {column!r} is not a number", cell))
    for failed, reason, cell in reversed(unparsed):  # the first failing cell wins
        for i in np.flatnonzero(failed.to_numpy(bool)):
            reasons[i] = f"{reason}: {cell.iat[i]!r}"
    for i in np.flatnonzero(reasons != ""):
        bad.append(BadRow(lines[i], item.iat[i], reasons[i]))
    bad.sort(key=lambda b: b.row)
    return events[reasons == ""].reset_index(drop=True), bad


def import_events(
    store: EventStore, path: str | Path, *, preset: str | None = None, **options: Any
) -> EventImportReport:
    """Read ``path`` (a ``PRESETS`` layout, overridden by ``options``) and store its events.

    Re-running it on the same file adds nothing, so an interrupted import is simply re-run.
    """
    if preset is not None and preset not in PRESETS:
        raise InvalidInput(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
    layout = {**PRESETS.get(preset or "", {}), **options}
    layout.setdefault("known_types", store.known_types)
    if "type_column" in options:
        layout.pop("type", None)  # a preset's fixed type gives way to a named column
    events, bad = read_events_csv(path, **layout)
    counts = store.import_frame(events)
    return EventImportReport(len(events) + len(bad), counts.inserted, counts.duplicates, bad)


def _read_rows(
    path: Path, delimiter: str | None, encoding: str
) -> tuple[list[str], list[int], list[list[str]], list[BadRow]]:
    """Header, then the line number and cells of every well-formed row; ragged rows, and rows
    the csv module cannot parse (a quote left open), are bad.

    Quoting stays on for CSV; for tab-separated files it is off, as RecBole writes them
    (quote characters in titles are data there).
    """
    text = read_text(path, encoding)
    delimiter = delimiter or sniff_delimiter(text)
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    header, parsed = parse(path, text, delimiter, quoting)
    lines: list[int] = []
    records: list[list[str]] = []
    bad: list[BadRow] = []
    for line, values, error in parsed:
        if error:
            bad.append(BadRow(line, "", error))
        elif not any(v.strip() for v in values):
            continue
        elif len(values) != len(header):
            bad.append(BadRow(line, "", f"{len(values)} fields, header has {len(header)}"))
        else:
            lines.append(line)
            records.append(values)
    repeated = sorted({h for h in header if header.count(h) > 1})
    if repeated:
        raise CsvError(f"{path}: repeated column name(s) {', '.join(repeated)}")
    if not records and not bad:
        raise CsvError(f"{path}: no data rows below the header")
    return header, lines, records, bad


def _parse_times(text: pd.Series, unit: str) -> pd.Series:
    """UTC datetimes, NaT where unparseable: numbers are epoch ``unit``, the rest ISO 8601.

    Times are cut to the microsecond, the store's resolution: a finer one ("...00.123456789Z",
    or epoch seconds printed with 7 decimals) parses at nanoseconds, which the microsecond
    column refused with a TypeError that failed the whole import."""
    numeric = text.str.match(_NUMBER)
    out = pd.Series(pd.NaT, index=text.index, dtype="datetime64[us, UTC]")
    if numeric.any():
        parsed = pd.to_datetime(pd.to_numeric(text[numeric]), unit=unit, utc=True, errors="coerce")
        out[numeric] = parsed.dt.floor("us").astype(out.dtype)
    if (~numeric).any():
        parsed = pd.to_datetime(text[~numeric], format="ISO8601", utc=True, errors="coerce")
        out[~numeric] = parsed.dt.floor("us").astype(out.dtype)
    return out


def _parse_numbers(text: pd.Series) -> pd.Series:
    """Finite floats; NaN for empty or non-numeric cells (the caller tells the two apart)."""
    numbers = pd.to_numeric(text.where(text.str.match(_NUMBER)), errors="coerce").astype(float)
    return numbers.where(np.isfinite(numbers))
