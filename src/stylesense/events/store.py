"""The durable event log: who did what with which item, and when.

Events live in the home's database beside the catalogue (SQLite with WAL by default, any
Postgres URL unchanged), so recommenders can be refitted from scratch at any time and a saved
model can fetch just the events newer than its training (``frame(after_pk=...)``). Items are
plain strings here: shops log behaviour on products the catalogue has never seen.

Re-importing a file must not double its events, yet identical rows within one file are real
repeats (H&M logs one row per item bought). So each row's key is (user, item, type, time,
seq), where seq numbers the rows sharing that (user, item, type, time) in the order they came.
Price, rating and session stay out of the key, so a re-export with a corrected price is still
recognised as the same events. A live event is seq 0: sent again with the same time, it is the
same event (a retry), stored once however many processes send it at the same moment.

Every write passes :func:`event_rules`, the one set of rules for what an event may hold: a
live event field by field, a table through :func:`event_problems`. A live event needs no
pandas, so `stylesense events add` does not load it; the bulk paths import it where they run.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, overload

import numpy as np
from sqlalchemy import BigInteger, Float, Integer, String, UniqueConstraint, func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.sql.dml import Insert

from stylesense.catalog.store import make_engine
from stylesense.errors import InvalidInput
from stylesense.inputs import id_problem
from stylesense.weights import DEFAULT_WEIGHTS

if TYPE_CHECKING:
    import pandas as pd

_KEY = ("user_id", "item_id", "type", "ts_us", "seq")
_CHUNK = 5000  # rows per INSERT batch and per commit: live writers get the lock between chunks
_IN_CHUNK = 5000  # ids per IN (...) list, well under SQLite's bound-parameter limit
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICROSECOND = timedelta(microseconds=1)
EARLIEST = _EPOCH
FUTURE_SLACK = timedelta(days=1)
"""Event times run from EARLIEST to now + FUTURE_SLACK (clocks disagree a little). Anything
outside is a mix-up, e.g. milliseconds read as seconds, that would rank the event first or last."""

Rule = Callable[[Any], "str | None"]
"""Why one value of a field cannot be stored, or None; a missing value reaches it as None."""


class EventBase(DeclarativeBase):
    pass


class EventRow(EventBase):
    """One event. Time is integer microseconds since the epoch (UTC): exact to compare in the
    dedupe key and the same on every database, where SQLite has no time zone type."""

    __tablename__ = "events"
    # The key's index starts with user_id, so it also serves ``frame(users=...)``.
    __table_args__ = (UniqueConstraint(*_KEY, name="uq_events_key"),)

    # 64-bit on Postgres (an event log outgrows 2**31 rows); SQLite's rowid needs INTEGER.
    pk: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
                                    autoincrement=True)
    user_id: Mapped[str] = mapped_column(String(255))
    item_id: Mapped[str] = mapped_column(String(255))
    type: Mapped[str] = mapped_column(String(32))
    ts_us: Mapped[int] = mapped_column(BigInteger)
    seq: Mapped[int] = mapped_column(Integer, default=0)
    price: Mapped[float | None] = mapped_column(Float, nullable=True)
    value: Mapped[float | None] = mapped_column(Float, nullable=True)
    session_id: Mapped[str | None] = mapped_column(String(255), nullable=True)


@dataclass(frozen=True)
class ImportCounts:
    """Rows newly stored, and rows the store already held (a re-import)."""

    inserted: int
    duplicates: int


class EventStore:
    """Append and read events; ``known_types`` (default: the recommenders' weight table) is
    checked on every write so a typo cannot reach a model as an unweighted event type."""

    def __init__(self, engine: Engine, known_types: Iterable[str] | None = None) -> None:
        if engine.dialect.name not in ("sqlite", "postgresql"):
            raise InvalidInput(f"events need SQLite or PostgreSQL, not {engine.dialect.name}")
        self.engine = engine
        self.known_types = frozenset(DEFAULT_WEIGHTS if known_types is None else known_types)
        EventBase.metadata.create_all(engine)

    @classmethod
    def open(cls, url: str, known_types: Iterable[str] | None = None) -> "EventStore":
        """A store on its own engine (WAL pragmas for SQLite, as the catalogue has)."""
        return cls(make_engine(url), known_types)

    # -- writes ------------------------------------------------------------------------
    def add(
        self,
        user_id: str,
        item_id: str,
        type: str = "view",
        ts: datetime | None = None,
        price: float | None = None,
        value: float | None = None,
        session_id: str | None = None,
    ) -> bool:
        """Record one live event (``ts`` default: now; naive times are taken as UTC); True when
        it was stored.

        An event identical to a stored one (same user, item, type and time, to the microsecond)
        is that event sent again, e.g. a retry after a timeout: nothing is stored and the answer
        is False. That holds however many processes send it at once, because the write is one
        INSERT .. ON CONFLICT DO NOTHING, not a read followed by a write. (Repeats at one instant
        come from logs, where import_frame numbers them.) Raises ValueError for an event that
        breaks :func:`event_rules`.
        """
        for name, number in (("price", price), ("value", value)):
            if number is not None and math.isnan(number):
                raise InvalidInput(f"{name} must be a finite number (None: no {name}), got nan")
        # Plain Python numbers: psycopg2 cannot bind numpy scalars.
        price, value = (None if n is None else float(n) for n in (price, value))
        when = datetime.now(timezone.utc) if ts is None else _as_utc(ts)
        event = {"user_id": user_id, "item_id": item_id, "type": type, "ts": when, "price": price, "value": value}
        rules = event_rules(self.known_types)
        problem = next(filter(None, (rule(event[field]) for field, rule in rules.items())), None)
        if problem:
            raise InvalidInput(problem)
        record = {"user_id": user_id, "item_id": item_id, "type": type, "ts_us": int(_micros(when)),
                  "seq": 0, "price": price, "value": value, "session_id": session_id or None}
        with self.engine.begin() as conn:
            return bool(conn.execute(self._insert_ignoring_duplicates(), record).all())

    def import_frame(self, frame: pd.DataFrame) -> ImportCounts:
        """Bulk-insert an events table, skipping events already stored.

        Needs user_id, item_id, type, ts (datetimes, or epoch seconds when numeric); price,
        value and session_id are optional. Rows are numbered in frame order, so the frame
        must be in file order for repeats to be recognised on re-import. Each chunk commits
        on its own: an interrupted import is finished by running it again. A table with any
        event that breaks :func:`event_problems`' rules is refused whole (ValueError), before
        anything is stored; the CSV reader reports such rows one by one instead.
        """
        import pandas as pd

        missing = [c for c in ("user_id", "item_id", "type", "ts") if c not in frame.columns]
        if missing:
            raise InvalidInput(f"events table lacks column(s) {', '.join(missing)}")
        frame = frame.reset_index(drop=True)
        rows = pd.DataFrame({
            "user_id": _text(frame["user_id"]),
            "item_id": _text(frame["item_id"]),
            "type": _text(frame["type"]),
            "ts": _utc(frame["ts"]),
        })
        for name in ("price", "value"):
            rows[name] = pd.to_numeric(frame[name]).astype(float) if name in frame else np.nan
        problems = event_problems(rows, self.known_types)
        invalid = np.flatnonzero(problems.to_numpy() != "")
        if len(invalid):
            raise InvalidInput(f"{len(invalid)} invalid event(s), nothing stored; the first, row {invalid[0]}: "
                             f"{problems.iat[invalid[0]]}")
        rows.insert(3, "ts_us", _micros(rows.pop("ts")).to_numpy(np.int64))
        rows["seq"] = rows.groupby(["user_id", "item_id", "type", "ts_us"], sort=False).cumcount()
        session = frame["session_id"] if "session_id" in frame else pd.Series("", index=rows.index)
        rows["session_id"] = session.fillna("").astype(str)

        # Python scalars with None for missing values: what every DBAPI accepts.
        rows["session_id"] = rows["session_id"].replace("", None)
        columns = {name: rows[name].astype(object).where(rows[name].notna(), None).tolist() for name in rows}
        records = [dict(zip(columns, values)) for values in zip(*columns.values())]
        inserted = 0
        insert = self._insert_ignoring_duplicates()
        for start in range(0, len(records), _CHUNK):
            with self.engine.begin() as conn:
                result = conn.execute(insert, records[start:start + _CHUNK])
                inserted += len(result.all())
        return ImportCounts(inserted, len(records) - inserted)

    # -- reads -------------------------------------------------------------------------
    def frame(self, users: Sequence[str] | None = None, after_pk: int | None = None) -> pd.DataFrame:
        """Events as Interactions.from_frame wants them, oldest first (ties in arrival order).

        ``after_pk`` keeps only events stored after that pk (see :meth:`max_pk`): how a saved
        model catches up on what happened since its training.
        """
        import pandas as pd

        row = EventRow.__table__.c
        query = select(row.pk, row.user_id, row.item_id, row.type, row.ts_us, row.price,
                       row.value, row.session_id)
        if after_pk is not None:
            query = query.where(row.pk > after_pk)
        with self.engine.connect() as conn:
            if users is None:
                fetched = conn.execute(query).all()
            else:
                ids = list(dict.fromkeys(str(u) for u in users))
                fetched = [r for start in range(0, len(ids), _IN_CHUNK)
                           for r in conn.execute(query.where(row.user_id.in_(ids[start:start + _IN_CHUNK])))]
        raw = pd.DataFrame(fetched, columns=["pk", "user_id", "item_id", "type", "ts_us", "price",
                                             "value", "session_id"])
        raw = raw.sort_values(["ts_us", "pk"], kind="stable", ignore_index=True)
        return pd.DataFrame({
            "user_id": raw["user_id"].astype(object),
            "item_id": raw["item_id"].astype(object),
            "type": raw["type"].astype(object),
            "ts": pd.to_datetime(raw["ts_us"].astype(np.int64), unit="us", utc=True),
            "price": pd.to_numeric(raw["price"]).astype(float),
            "value": pd.to_numeric(raw["value"]).astype(float),
            "session_id": raw["session_id"].fillna("").astype(object),
            "pk": raw["pk"].astype(np.int64),
        })

    def count(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.scalar(select(func.count()).select_from(EventRow.__table__)))

    def max_pk(self) -> int:
        """The newest event's pk; 0 when empty (pks start at 1), so ``frame(after_pk=...)``
        with the value saved at training time always works."""
        with self.engine.connect() as conn:
            return int(conn.scalar(select(func.coalesce(func.max(EventRow.pk), 0))))

    def users(self) -> list[str]:
        """Distinct user ids, sorted."""
        with self.engine.connect() as conn:
            return list(conn.scalars(select(EventRow.user_id).distinct().order_by(EventRow.user_id)))

    # -- helpers -----------------------------------------------------------------------
    def _insert_ignoring_duplicates(self) -> Insert:
        """INSERT .. ON CONFLICT DO NOTHING RETURNING pk: the returned rows count exactly
        what was new, on both dialects, without a racy count before and after."""
        if self.engine.dialect.name == "sqlite":
            from sqlalchemy.dialects.sqlite import insert
        else:
            from sqlalchemy.dialects.postgresql import insert
        table = EventRow.__table__
        return insert(table).on_conflict_do_nothing(index_elements=list(_KEY)).returning(table.c.pk)


def event_rules(known_types: Collection[str]) -> dict[str, Rule]:
    """The rules of every entry point (add, import_frame and the CSV reader), field by field,
    in the order a row's first problem is reported.

    Ids follow :func:`stylesense.inputs.id_problem` (kept exactly as given); the type is one of
    ``known_types``; the time (a UTC datetime) is within EARLIEST .. now + FUTURE_SLACK; a price
    is finite and >= 0, a value finite. One value at a time, so that recording a live event
    needs no pandas; :func:`event_problems` runs them over a table.
    """
    known = sorted(known_types)
    # Compared in microseconds: a pandas time past the year 9999 (milliseconds read as seconds)
    # cannot be compared with a datetime, but subtracts from one.
    earliest, latest = _micros(EARLIEST), _micros(datetime.now(timezone.utc) + FUTURE_SLACK)

    def event_type(name: object) -> str | None:
        return None if name in known_types else f"unknown event type {name!r} (known: {', '.join(known)})"

    def time(ts: datetime | None) -> str | None:
        if ts is None:
            return "no time (missing, or beyond the dates a timestamp holds)"
        if not earliest <= _micros(ts) <= latest:
            return f"time {ts} is outside {EARLIEST:%Y-%m-%d} .. now + {FUTURE_SLACK.days} day"
        return None

    def number(name: str, at_least_zero: bool) -> Rule:
        rule = "a finite number >= 0" if at_least_zero else "a finite number"

        def check(x: float | None) -> str | None:
            if x is None:
                return None
            x = float(x)
            return None if math.isfinite(x) and (x >= 0 or not at_least_zero) else f"{name} must be {rule}, got {x}"

        return check

    return {"user_id": lambda v: id_problem(v, "user id"), "item_id": lambda v: id_problem(v, "item id"),
            "type": event_type, "ts": time, "price": number("price", True), "value": number("value", False)}


def event_problems(events: pd.DataFrame, known_types: Collection[str]) -> pd.Series:
    """Why each event of a table cannot be stored, "" where it can: :func:`event_rules` over
    every row, for import_frame and the CSV reader (which reports the failing rows and imports
    the rest).

    ``events`` has user_id, item_id and type (text), ts (UTC datetimes, NaT where missing) and
    optionally price and value (NaN where none). Each rule runs once per distinct value of its
    column, not per row: ids, types, days and prices repeat all through a log.
    """
    import pandas as pd

    problems = np.full(len(events), "", dtype=object)
    for column, rule in event_rules(known_types).items():
        if column in ("price", "value") and column not in events:
            continue  # optional columns
        codes, distinct = pd.factorize(events[column])
        # A missing cell's code is -1, which picks the last reason: the rule's answer for None.
        reasons = np.array([rule(v) or "" for v in [*distinct, None]], dtype=object)
        problems = np.where(problems == "", reasons[codes], problems)
    return pd.Series(problems, index=events.index, dtype=object)


def _text(values: pd.Series) -> pd.Series:
    """Cells as str, "" where missing (so a missing id is reported as empty, not stored as "nan")."""
    return values.astype(str).where(values.notna(), "")


def _utc(ts: pd.Series) -> pd.Series:
    """UTC datetimes from datetimes (naive = UTC) or epoch seconds; NaT where missing or beyond
    what a timestamp holds (event_problems reports those)."""
    import pandas as pd

    if pd.api.types.is_numeric_dtype(ts):
        return pd.to_datetime(ts, unit="s", utc=True, errors="coerce")
    return pd.to_datetime(ts, utc=True)


def _as_utc(ts: datetime) -> datetime:
    """``ts`` in UTC; a naive time is taken as UTC already (``astimezone`` would read it as local)."""
    return ts.replace(tzinfo=timezone.utc) if ts.tzinfo is None else ts.astimezone(timezone.utc)


@overload
def _micros(ts: datetime) -> int: ...
@overload
def _micros(ts: pd.Series) -> pd.Series: ...
def _micros(ts: datetime | pd.Series) -> int | pd.Series:
    """Microseconds since the epoch of a UTC datetime, or of a Series of them (none missing).

    Through a timedelta, not astype(int64): pandas 3 stores datetimes in s, ms, us or ns.
    """
    return (ts - _EPOCH) // _MICROSECOND
