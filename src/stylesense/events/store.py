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
same event (a retry), stored once however many processes send it at the same moment. A live
event may also carry its sender's own ``event_id`` (unique where given): a retry with it is
stored once even when nothing else identifies it (no time of its own, say).

Every write passes :func:`event_rules`, the one set of rules for what an event may hold: a
live event field by field, a table through :func:`event_problems`. A live event needs no
pandas, so `stylesense events add` does not load it; the bulk paths import it where they run.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, overload

import numpy as np
from sqlalchemy import (JSON, BigInteger, Float, Index, Integer, String, Text, UniqueConstraint, and_, bindparam, func,
                        inspect, or_, select, text, tuple_)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError, ProgrammingError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column
from sqlalchemy.sql.dml import Insert

from stylesense.catalog.store import make_engine
from stylesense.errors import InvalidInput
from stylesense.events.users import label_problem
from stylesense.inputs import id_problem
from stylesense.weights import DEFAULT_WEIGHTS

if TYPE_CHECKING:
    import pandas as pd

_KEY = ("user_id", "item_id", "type", "ts_us", "seq")
_CHUNK = 5000  # rows per INSERT batch and per commit: live writers get the lock between chunks
_COPY_CHUNK = 200_000  # rows per COPY and per commit on PostgreSQL, where writers do not queue on one lock
_IN_CHUNK = 5000  # ids per IN (...) list, well under SQLite's bound-parameter limit
_SHOWN = 10  # bad events named in the message refusing a batch
MAX_PAGE = 1000
"""Most events :meth:`EventStore.latest` returns at once."""
MAX_COMMENT = 4096
"""Most characters of an event's comment (a Gorse feedback's ``Comment``)."""
_CURSOR = re.compile(r"(\d+)_(\d+)")  # next_before of a page: "<ts_us>_<pk>" of its last event
_SECONDS = re.compile(r"-?\d+(\.\d*)?")  # epoch seconds written out
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
    # The key's index starts with user_id, so it also serves ``frame(users=...)``; the others
    # serve a shopper's history by time, time ranges and per-item counts (migration 0002).
    __table_args__ = (UniqueConstraint(*_KEY, name="uq_events_key"),
                      Index("uq_events_event_id", "event_id", unique=True),
                      Index("ix_events_user_ts", "user_id", "ts_us"), Index("ix_events_ts", "ts_us"),
                      Index("ix_events_item_type", "item_id", "type"))

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
    # The sender's own id for a live event (NewEvent.event_id): a retry carrying it is stored
    # once, whatever else changed. NULL for imported events; unique where set.
    event_id: Mapped[str | None] = mapped_column(String(255), nullable=True)
    # A note and labels the sender attached (a Gorse feedback's Comment and Labels); NULL: none.
    comment: Mapped[str | None] = mapped_column(Text, nullable=True)
    labels: Mapped[Any] = mapped_column(JSON(none_as_null=True), nullable=True)
    # The served recommendation this event answers (the impression id an experiment's
    # recommendations carry): what stylesense.experiments.attribution credits first. NULL: none.
    impression_id: Mapped[str | None] = mapped_column(String(255), nullable=True)


_ADDED_COLUMNS = {"event_id": "VARCHAR(255)", "comment": "TEXT", "labels": "JSON", "impression_id": "VARCHAR(255)"}
"""Columns homes made before them lack, with their SQL types (the same on SQLite and Postgres)."""


def _add_missing_columns(engine: Engine) -> None:
    """Bring an older home's events table up to date (ALTER TABLE ADD COLUMN), and give it
    event_id's unique index (SQLite cannot add a UNIQUE column, so the index is separate, as
    on a new table: NULLs never clash). Two processes may race here; the loser's "duplicate
    column" error is harmless."""
    def columns() -> set[str]:
        return {c["name"] for c in inspect(engine).get_columns(EventRow.__tablename__)}

    missing = [name for name in _ADDED_COLUMNS if name not in columns()]
    for name in missing:
        try:
            with engine.begin() as conn:
                conn.execute(text(f"ALTER TABLE {EventRow.__tablename__} ADD COLUMN {name} {_ADDED_COLUMNS[name]}"))
        except (OperationalError, ProgrammingError):
            if name not in columns():
                raise
    if "event_id" in missing:
        with engine.begin() as conn:
            conn.execute(text(f"CREATE UNIQUE INDEX IF NOT EXISTS uq_events_event_id ON {EventRow.__tablename__} (event_id)"))


@dataclass(frozen=True)
class ImportCounts:
    """Rows newly stored, and rows the store already held (a re-import)."""

    inserted: int
    duplicates: int

    def to_dict(self) -> dict[str, int]:
        """The JSON shape every surface answers with."""
        return {"inserted": self.inserted, "duplicates": self.duplicates}


@dataclass(frozen=True)
class NewEvent:
    """A live event to record (:meth:`EventStore.add_many`), as a client sends it: ``ts`` a
    datetime (naive: UTC), ISO 8601 text or epoch seconds (None: now); ``event_id`` the
    sender's own id for it, which makes sending it again harmless (see ``add_many``);
    ``comment`` and ``labels`` what a Gorse feedback carries beside (labels by Gorse's rule,
    :func:`stylesense.events.users.label_problem`); ``impression_id`` the served
    recommendation the event answers, if any (see :mod:`stylesense.experiments.attribution`)."""

    user_id: str
    item_id: str
    type: str = "view"
    ts: datetime | str | float | None = None
    price: float | None = None
    value: float | None = None
    session_id: str | None = None
    event_id: str | None = None
    comment: str | None = None
    labels: Any = None
    impression_id: str | None = None


@dataclass(frozen=True)
class StoredEvent:
    """One stored event, as :meth:`EventStore.events` and :meth:`EventStore.latest` read it back."""

    pk: int  # arrival order: what pages through the log
    user_id: str
    item_id: str
    type: str
    ts: datetime  # UTC
    price: float | None
    value: float | None
    session_id: str | None
    event_id: str | None = None  # the sender's id of a live event (NewEvent.event_id)
    comment: str | None = None  # NewEvent.comment and labels: what a Gorse feedback carries
    labels: Any = None
    impression_id: str | None = None  # NewEvent.impression_id: the recommendation it answers

    @classmethod
    def of(cls, row: EventRow) -> "StoredEvent":
        return cls(row.pk, row.user_id, row.item_id, row.type, _EPOCH + row.ts_us * _MICROSECOND,
                   row.price, row.value, row.session_id, row.event_id, row.comment, row.labels,
                   row.impression_id)

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape every surface answers with: the time in ISO 8601 (UTC); no pk,
        which is this database's bookkeeping. The comment and labels are not in it: only
        Gorse's feedback routes write and show them (``Feedback.to_dict``)."""
        return {"user_id": self.user_id, "item_id": self.item_id, "type": self.type, "ts": self.ts.isoformat(),
                "price": self.price, "value": self.value, "session_id": self.session_id, "event_id": self.event_id,
                "impression_id": self.impression_id}


@dataclass(frozen=True)
class EventPage:
    """A page of a shopper's events, newest first (:meth:`EventStore.latest`)."""

    events: list[StoredEvent]
    next_before: str | None  # ``before`` for the next page; None when this one is the last

    def to_dict(self) -> dict[str, Any]:
        return {"events": [e.to_dict() for e in self.events], "next_before": self.next_before}


class EventStore:
    """Append and read events; ``known_types`` (default: the recommenders' weight table) is
    checked on every write so a typo cannot reach a model as an unweighted event type."""

    def __init__(self, engine: Engine, known_types: Iterable[str] | None = None) -> None:
        if engine.dialect.name not in ("sqlite", "postgresql"):
            raise InvalidInput(f"events need SQLite or PostgreSQL, not {engine.dialect.name}")
        self.engine = engine
        self.known_types = frozenset(DEFAULT_WEIGHTS if known_types is None else known_types)
        _add_missing_columns(engine)  # the table itself: make_engine's migrations

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
        impression_id: str | None = None,
    ) -> bool:
        """Record one live event (``ts`` default: now; naive times are taken as UTC); True when
        it was stored. ``impression_id``: the served recommendation it answers.

        An event identical to a stored one (same user, item, type and time, to the microsecond)
        is that event sent again, e.g. a retry after a timeout: nothing is stored and the answer
        is False. That holds however many processes send it at once, because the write is one
        INSERT .. ON CONFLICT DO NOTHING, not a read followed by a write. (Repeats at one instant
        come from logs, where import_frame numbers them.) Raises ValueError for an event that
        breaks :func:`event_rules`.
        """
        event = NewEvent(user_id, item_id, type, ts, price, value, session_id, impression_id=impression_id)
        return self._insert([_record(event, event_rules(self.known_types), datetime.now(timezone.utc))]) == 1

    def add_many(self, events: Sequence[NewEvent]) -> ImportCounts:
        """Record a batch of live events in one transaction: every one of them, or none when
        any breaks :func:`event_rules` (InvalidInput naming each bad event by its position in
        the batch, from 0, and its reason). Returns counts of the new events and of those
        already stored.

        An event is already stored when one with its ``event_id`` is, or one identical to it
        (user, item, type, time: see :meth:`add`): so a batch sent again after a timeout stores
        nothing twice. Events without a time all get the same "now", and identical events
        within one batch are repeats, numbered as import_frame numbers a file's; so a retry of
        events that carry neither a time nor an ``event_id`` cannot be recognised.
        """
        records = self._records(events)
        repeats: dict[tuple[str, str, str, int], int] = {}
        for record in records:
            key = (record["user_id"], record["item_id"], record["type"], record["ts_us"])
            record["seq"] = repeats.get(key, 0)
            repeats[key] = record["seq"] + 1
        inserted = self._insert(records) if records else 0
        return ImportCounts(inserted, len(records) - inserted)

    def replace_many(self, events: Sequence[NewEvent]) -> int:
        """Record live events, each in place of every stored event of its user, item and type
        (of those given twice in the batch, the last): one transaction, all or none, refused
        as :meth:`add_many` refuses. For Gorse's ``PUT /api/feedback``, which overwrites a
        shopper's feedback of a type on an item. Returns how many events were stored. (Two
        overwrites of one key at the same moment both stay on PostgreSQL, whose transactions
        do not see each other's new rows; SQLite runs one writer at a time.)"""
        last = {(r["user_id"], r["item_id"], r["type"]): r for r in self._records(events)}
        if not last:
            return 0
        row = EventRow.__table__.c
        keys = list(last)
        with self.engine.begin() as conn:
            for start in range(0, len(keys), _IN_CHUNK // 3):
                conn.execute(EventRow.__table__.delete().where(
                    tuple_(row.user_id, row.item_id, row.type).in_(keys[start:start + _IN_CHUNK // 3])))
            return len(conn.execute(self._insert_ignoring_duplicates(), list(last.values())).all())

    def _records(self, events: Sequence[NewEvent]) -> list[dict[str, Any]]:
        """The database rows of live events (seq 0), or InvalidInput naming every bad one."""
        rules, now = event_rules(self.known_types), datetime.now(timezone.utc)
        records, problems = [], []
        for i, event in enumerate(events):
            try:
                records.append(_record(event, rules, now))
            except InvalidInput as e:
                problems.append(f"event {i}: {e}")
        if problems:
            more = f"; and {len(problems) - _SHOWN} more" if len(problems) > _SHOWN else ""
            raise InvalidInput(f"{len(problems)} invalid event(s), nothing stored: "
                               f"{'; '.join(problems[:_SHOWN])}{more}")
        return records

    def import_frame(self, frame: pd.DataFrame) -> ImportCounts:
        """Bulk-insert an events table, skipping events already stored.

        Needs user_id, item_id, type, ts (datetimes, or epoch seconds when numeric); price,
        value and session_id are optional. Rows are numbered in frame order, so the frame
        must be in file order for repeats to be recognised on re-import. Each chunk commits
        on its own: an interrupted import is finished by running it again. On PostgreSQL
        (psycopg) the rows travel by ``COPY`` (see :meth:`_copy_insert`), elsewhere as
        batched INSERTs; the same rows are stored either way. A table with any
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
        if self.engine.dialect.name == "postgresql" and self.engine.dialect.driver == "psycopg":
            values = list(zip(*columns.values()))
            inserted = sum(self._copy_insert(list(columns), values[start:start + _COPY_CHUNK])
                           for start in range(0, len(values), _COPY_CHUNK))
            return ImportCounts(inserted, len(values) - inserted)
        records = [dict(zip(columns, values)) for values in zip(*columns.values())]
        inserted = sum(self._insert(records[start:start + _CHUNK]) for start in range(0, len(records), _CHUNK))
        return ImportCounts(inserted, len(records) - inserted)

    def _copy_insert(self, names: list[str], rows: Sequence[tuple[Any, ...]]) -> int:
        """Store rows through PostgreSQL's ``COPY`` (psycopg's ``cursor.copy``) in one
        transaction; how many were new. COPY cannot skip duplicates, so the rows land in a
        temporary table first and move on with INSERT .. SELECT .. ON CONFLICT DO NOTHING, in
        the order given (``ord``), so pks follow the file as on the INSERT path."""
        columns = ", ".join(names)
        types = {"user_id": "text", "item_id": "text", "type": "text", "ts_us": "bigint", "seq": "integer",
                 "price": "double precision", "value": "double precision", "session_id": "text"}
        raw = self.engine.raw_connection()
        try:
            with raw.cursor() as cur:
                cur.execute(f"CREATE TEMPORARY TABLE events_in (ord bigint, "
                            f"{', '.join(f'{n} {types[n]}' for n in names)}) ON COMMIT DROP")
                with cur.copy(f"COPY events_in (ord, {columns}) FROM STDIN") as copy:
                    for i, row in enumerate(rows):
                        copy.write_row((i, *row))
                cur.execute(f"INSERT INTO {EventRow.__tablename__} ({columns}) SELECT {columns} FROM events_in "
                            "ORDER BY ord ON CONFLICT DO NOTHING")
                inserted = cur.rowcount
            raw.commit()
        except BaseException:
            raw.rollback()
            raise
        finally:
            raw.close()
        return int(inserted)

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
        # Plain tuples: pandas builds a frame from SQLAlchemy Row objects ~3x slower.
        raw = pd.DataFrame([tuple(r) for r in fetched], columns=["pk", "user_id", "item_id", "type", "ts_us",
                                                                 "price", "value", "session_id"])
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

    # Built once: every recommendation asks it, and building the statement cost more than running it.
    _MAX_PK = select(func.coalesce(func.max(EventRow.pk), 0))

    def max_pk(self) -> int:
        """The newest event's pk; 0 when empty (pks start at 1), so ``frame(after_pk=...)``
        with the value saved at training time always works."""
        with self.engine.connect() as conn:
            return int(conn.scalar(self._MAX_PK))

    _ITEMS_OF = (select(EventRow.item_id)
                 .where(EventRow.user_id == bindparam("user"), EventRow.type.in_(bindparam("types", expanding=True)))
                 .order_by(EventRow.pk))

    def items_of(self, user_id: str, types: Collection[str]) -> list[str]:
        """The items of ``user_id``'s events of ``types``, in arrival order (repeats kept): one
        indexed query with a statement built once, since every recommendation asks it (for
        the shopper's dislikes)."""
        with self.engine.connect() as conn:
            return list(conn.scalars(self._ITEMS_OF, {"user": user_id, "types": list(types)}))

    def users(self) -> list[str]:
        """Distinct user ids, sorted."""
        with self.engine.connect() as conn:
            return list(conn.scalars(select(EventRow.user_id).distinct().order_by(EventRow.user_id)))

    # -- helpers -----------------------------------------------------------------------
    def _insert(self, records: Sequence[Mapping[str, Any]]) -> int:
        """Insert rows in one transaction, skipping those already stored; how many were new."""
        with self.engine.begin() as conn:
            return len(conn.execute(self._insert_ignoring_duplicates(), records).all())

    def _insert_ignoring_duplicates(self) -> Insert:
        """INSERT .. ON CONFLICT DO NOTHING RETURNING pk: the returned rows count exactly
        what was new, on both dialects, without a racy count before and after. No conflict
        target: a row is a duplicate by the key or by its event_id, whichever clashes."""
        if self.engine.dialect.name == "sqlite":
            from sqlalchemy.dialects.sqlite import insert
        else:
            from sqlalchemy.dialects.postgresql import insert
        table = EventRow.__table__
        return insert(table).on_conflict_do_nothing().returning(table.c.pk)

    # -- deletion ----------------------------------------------------------------------
    def delete(self, user_id: str, item_id: str | None = None, types: Collection[str] | None = None) -> int:
        """Delete a shopper's events (all of them, or those with ``item_id``, or of ``types``
        only) in one transaction; returns how many there were. For a shopper who asks to be
        forgotten, or feedback withdrawn through the Gorse API. A model already trained or
        caught up on them keeps what it learnt until it is trained again."""
        for value, what in ((user_id, "user id"), (item_id, "item id")):
            if value is not None and (problem := id_problem(value, what)):
                raise InvalidInput(problem)
        query = EventRow.__table__.delete().where(EventRow.user_id == user_id)
        if item_id is not None:
            query = query.where(EventRow.item_id == item_id)
        if types is not None:
            query = query.where(EventRow.type.in_(list(types)))
        with self.engine.begin() as conn:
            return int(conn.execute(query).rowcount)

    def events(
        self,
        *,
        user_id: str | None = None,
        item_id: str | None = None,
        types: Collection[str] | None = None,
        after_pk: int = 0,
        limit: int | None = None,
    ) -> list[StoredEvent]:
        """Stored events in arrival order (pk), those of ``user_id`` / ``item_id`` / ``types``
        where given: a page of at most ``limit`` after ``after_pk`` (the next page starts
        after the last pk returned). Unlike :meth:`frame`, one row at a time and no pandas."""
        if limit is not None and limit < 1:
            raise InvalidInput(f"limit must be at least 1, got {limit}")
        query = select(EventRow).where(EventRow.pk > after_pk)
        if user_id is not None:
            query = query.where(EventRow.user_id == user_id)
        if item_id is not None:
            query = query.where(EventRow.item_id == item_id)
        if types is not None:
            query = query.where(EventRow.type.in_(list(types)))
        query = query.order_by(EventRow.pk).limit(limit)
        with Session(self.engine) as s:
            return [StoredEvent.of(r) for r in s.scalars(query)]

    def latest(self, user_id: str, *, limit: int = 50, before: str | datetime | float | None = None) -> EventPage:
        """A shopper's events, newest first (by time, ties newest stored first), at most
        ``limit`` (1 .. MAX_PAGE). ``before``: a time (see :func:`as_time`), for the events
        older than it; or the previous page's ``next_before``, to read on exactly where it
        stopped (a time alone would skip the page's last events' twins at the same instant)."""
        if (problem := id_problem(user_id, "user id")) is not None:
            raise InvalidInput(problem)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
            raise InvalidInput(f"limit must be an integer from 1 to {MAX_PAGE}, got {limit!r}")
        row = EventRow.__table__.c
        query = select(EventRow).where(EventRow.user_id == user_id)
        cursor = _CURSOR.fullmatch(before) if isinstance(before, str) else None
        if cursor is not None:
            ts_us, pk = (int(g) for g in cursor.groups())
            query = query.where(or_(row.ts_us < ts_us, and_(row.ts_us == ts_us, row.pk < pk)))
        elif before is not None:
            query = query.where(row.ts_us < _micros(as_time(before)))
        query = query.order_by(row.ts_us.desc(), row.pk.desc()).limit(limit + 1)
        with Session(self.engine) as s:
            rows = list(s.scalars(query))
        page = rows[:limit]
        more = len(rows) > limit
        return EventPage([StoredEvent.of(r) for r in page], f"{page[-1].ts_us}_{page[-1].pk}" if more else None)

    def pairs_until(self, users: Sequence[str], until_pk: int, types: Collection[str]) -> set[tuple[str, str]]:
        """The distinct (user, item) pairs of ``users`` with an event of one of ``types``
        stored at or before ``until_pk``: which shopper-item pairs of newer events are not new
        (how the popular list is kept up to date, see :mod:`stylesense.events.popularity`)."""
        row = EventRow.__table__.c
        ids, wanted = list(dict.fromkeys(users)), list(types)
        query = select(row.user_id, row.item_id).distinct().where(row.pk <= until_pk, row.type.in_(wanted))
        with self.engine.connect() as conn:
            return {(u, i) for start in range(0, len(ids), _IN_CHUNK)
                    for u, i in conn.execute(query.where(row.user_id.in_(ids[start:start + _IN_CHUNK])))}


def event_rules(known_types: Collection[str]) -> dict[str, Rule]:
    """The rules of every entry point (add, import_frame and the CSV reader), field by field,
    in the order a row's first problem is reported.

    Ids follow :func:`stylesense.inputs.id_problem` (kept exactly as given); the type is one of
    ``known_types``; the time (a UTC datetime) is within EARLIEST .. now + FUTURE_SLACK; a price
    is finite and >= 0, a value finite; a session id and a live event's event id, where given,
    are ids too; a comment is text of at most MAX_COMMENT characters, and labels are Gorse's
    (:func:`~stylesense.events.users.label_problem`). One value at a time, so that recording a
    live event needs no pandas; :func:`event_problems` runs them over a table.
    """
    known = sorted(known_types)
    # Compared in microseconds: a pandas time past the year 9999 (milliseconds read as seconds)
    # cannot be compared with a datetime, but subtracts from one.
    earliest, latest = _micros(EARLIEST), _micros(datetime.now(timezone.utc) + FUTURE_SLACK)

    def event_type(name: object) -> str | None:
        return None if isinstance(name, str) and name in known_types else \
            f"unknown event type {name!r} (known: {', '.join(known)})"

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

    def comment(text: object) -> str | None:
        if text is None:
            return None
        if not isinstance(text, str):
            return f"a comment must be text, got {type(text).__name__}"
        if len(text) > MAX_COMMENT:
            return f"a comment holds at most {MAX_COMMENT} characters, got {len(text)}"
        return None

    return {"user_id": lambda v: id_problem(v, "user id"), "item_id": lambda v: id_problem(v, "item id"),
            "type": event_type, "ts": time, "price": number("price", True), "value": number("value", False),
            "session_id": lambda v: None if not v else id_problem(v, "session id"),  # "": none, as in a CSV
            "event_id": lambda v: None if v is None else id_problem(v, "event id"),
            "comment": comment, "labels": lambda v: None if (p := label_problem(v)) is None else f"labels: {p}",
            "impression_id": lambda v: None if v is None else id_problem(v, "impression id")}


_OPTIONAL = ("price", "value", "session_id", "event_id", "comment", "labels", "impression_id")  # checked where present


def as_time(value: datetime | str | float) -> datetime:
    """An event time in UTC, from a datetime (naive: UTC), ISO 8601 text (a date alone is its
    midnight; no offset: UTC) or epoch seconds (a number, or text that is one, as in a URL's
    query): what the API's clients send. InvalidInput for anything else; whether the time is
    plausible is :func:`event_rules`' question."""
    if isinstance(value, datetime):
        return _as_utc(value)
    if isinstance(value, str) and _SECONDS.fullmatch(value):
        value = float(value)
    if isinstance(value, str):
        try:
            return _as_utc(datetime.fromisoformat(value))
        except ValueError:
            raise InvalidInput(f"time {value!r} is not ISO 8601 (e.g. 2024-03-01T12:00:00Z) "
                               "nor a number of epoch seconds") from None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InvalidInput(f"a time must be ISO 8601 text or epoch seconds, got {type(value).__name__}")
    seconds = float(value)
    try:
        return _EPOCH + timedelta(seconds=seconds)
    except (OverflowError, ValueError):  # nan, inf, or past the year 9999 (milliseconds sent as seconds?)
        raise InvalidInput(f"time {seconds:g} s since 1970 is beyond the dates a timestamp holds") from None


def _record(event: NewEvent, rules: Mapping[str, Rule], now: datetime) -> dict[str, Any]:
    """The database row of a live event (seq 0), or InvalidInput with its first problem."""
    amounts: dict[str, float | None] = {}
    for name in ("price", "value"):
        given = getattr(event, name)
        try:  # plain Python numbers: psycopg2 cannot bind numpy scalars
            amounts[name] = None if given is None else float(given)
        except (TypeError, ValueError):
            raise InvalidInput(f"{name} must be a number, got {given!r}") from None
        if amounts[name] is not None and math.isnan(amounts[name]):
            raise InvalidInput(f"{name} must be a finite number (None: no {name}), got nan")
    when = now if event.ts is None else as_time(event.ts)
    fields = {"user_id": event.user_id, "item_id": event.item_id, "type": event.type, "ts": when, **amounts,
              "session_id": event.session_id or None, "event_id": event.event_id,
              "comment": None if event.comment == "" else event.comment,
              "labels": event.labels, "impression_id": event.impression_id}
    problem = next(filter(None, (rule(fields[name]) for name, rule in rules.items())), None)
    if problem:
        raise InvalidInput(problem)
    return {"user_id": event.user_id, "item_id": event.item_id, "type": event.type, "ts_us": int(_micros(when)),
            "seq": 0, **amounts, "session_id": fields["session_id"], "event_id": event.event_id,
            "comment": fields["comment"], "labels": event.labels, "impression_id": event.impression_id}


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
        if column in _OPTIONAL and column not in events:
            continue
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
