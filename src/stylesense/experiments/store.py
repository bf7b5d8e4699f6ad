"""The tables of A/B experiments, in the home's database beside the events.

Three tables, created on first use (older homes gain them then, as they gained the users table):

* ``experiments``: one row per experiment: its arms (model names), their traffic split, the
  primary metric, the attribution window and whether it is running. An experiment's arms and
  split never change once created, which is what keeps assignment sticky by construction.
* ``experiment_assignments``: who was put in which arm, recorded with their first served
  answer (``experiment report`` counts shoppers from it; sample-ratio mismatch is read off it);
  a shopper's recorded arm is the one served from then on.
* ``impressions``: every recommendation served in an experiment: its id (what the API answers
  with, and what an event may carry back), experiment, arm, model, shopper, the items shown in
  order, and when (server time, integer microseconds as the events have).

Writes are INSERT .. ON CONFLICT DO NOTHING (an assignment, an experiment) and plain inserts
(an impression, whose id is random), so any number of API workers write at once without a
read-modify-write: two first answers to one shopper at once carry the same hashed arm, and the
second assignment is ignored.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import JSON, BigInteger, Float, Index, Integer, String, Table, UniqueConstraint, select, text, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.sql.dml import Insert

from stylesense.errors import Conflict, InvalidInput, NotFound

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_IN_CHUNK = 5000  # ids per IN (...) list, under SQLite's bound-parameter limit
METRICS = ("click", "cart", "purchase", "revenue")
"""What an experiment may be decided on: click-through, add-to-cart or conversion rate (per
impression), or revenue per shopper."""
RUNNING, STOPPED = "running", "stopped"


class ExperimentBase(DeclarativeBase):
    pass


class ExperimentRow(ExperimentBase):
    __tablename__ = "experiments"
    # At most one running experiment: a partial unique index (SQLite and PostgreSQL both have them).
    __table_args__ = (Index("uq_experiments_running", "status", unique=True, sqlite_where=text("status = 'running'"),
                            postgresql_where=text("status = 'running'")),)

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    arms: Mapped[list] = mapped_column(JSON)
    split: Mapped[list] = mapped_column(JSON)  # shares of traffic per arm, summing to 1
    metric: Mapped[str] = mapped_column(String(16))
    window_hours: Mapped[float] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(16))
    started_us: Mapped[int] = mapped_column(BigInteger)
    stopped_us: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class AssignmentRow(ExperimentBase):
    __tablename__ = "experiment_assignments"
    __table_args__ = (UniqueConstraint("experiment", "user_id", name="uq_assignment"),)

    pk: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    experiment: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[str] = mapped_column(String(255))
    arm: Mapped[str] = mapped_column(String(64))
    ts_us: Mapped[int] = mapped_column(BigInteger)


class ImpressionRow(ExperimentBase):
    __tablename__ = "impressions"
    __table_args__ = (Index("ix_impressions_experiment", "experiment", "ts_us"),
                      Index("ix_impressions_user", "user_id", "ts_us"),
                      Index("ix_impressions_ts", "ts_us"))

    pk: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    impression_id: Mapped[str] = mapped_column(String(64), unique=True)
    experiment: Mapped[str] = mapped_column(String(64))
    arm: Mapped[str] = mapped_column(String(64))
    model: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[str] = mapped_column(String(255))
    items: Mapped[list] = mapped_column(JSON)
    ts_us: Mapped[int] = mapped_column(BigInteger)


def micros(ts: datetime) -> int:
    """Microseconds since the epoch of a datetime (naive: UTC), as the event log stores time."""
    ts = ts.replace(tzinfo=timezone.utc) if ts.tzinfo is None else ts
    return (ts - _EPOCH) // timedelta(microseconds=1)


def from_micros(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


@dataclass(frozen=True)
class Experiment:
    """An experiment as stored: arms are model names of the home, ``split`` their traffic
    shares (summing to 1), ``metric`` the one it is decided on, ``window_hours`` how long after
    an impression an event is still credited to it."""

    name: str
    arms: tuple[str, ...]
    split: tuple[float, ...]
    metric: str
    window_hours: float
    status: str
    started: datetime
    stopped: datetime | None = None

    @property
    def running(self) -> bool:
        return self.status == RUNNING

    @property
    def window(self) -> timedelta:
        return timedelta(hours=self.window_hours)

    @classmethod
    def of(cls, row: ExperimentRow) -> "Experiment":
        return cls(row.name, tuple(row.arms), tuple(float(s) for s in row.split), row.metric, float(row.window_hours),
                   row.status, from_micros(row.started_us),
                   None if row.stopped_us is None else from_micros(row.stopped_us))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "arms": list(self.arms), "split": [round(s, 6) for s in self.split],
                "metric": self.metric, "window_hours": self.window_hours, "status": self.status,
                "started": self.started.isoformat(), "stopped": None if self.stopped is None else self.stopped.isoformat()}


@dataclass(frozen=True)
class Impression:
    """One served recommendation of an experiment (time in microseconds since the epoch, UTC)."""

    impression_id: str
    experiment: str
    arm: str
    model: str
    user_id: str
    items: tuple[str, ...]
    ts_us: int

    @classmethod
    def of(cls, row: ImpressionRow) -> "Impression":
        return cls(row.impression_id, row.experiment, row.arm, row.model, row.user_id, tuple(row.items), row.ts_us)


def check_name(name: str) -> str:
    """An experiment name: 1-64 letters, digits, '.', '_' or '-' (it goes into URLs and file names)."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidInput(f"experiment name {name!r} must be 1-64 letters, digits, '.', '_' or '-', "
                           "starting with a letter or digit")
    return name


def normalise_split(arms: Sequence[str], split: Sequence[float] | None) -> tuple[float, ...]:
    """Traffic shares per arm summing to 1, from any positive weights (50,50 or 0.9,0.1);
    equal shares when none are given."""
    if split is None:
        return tuple(1.0 / len(arms) for _ in arms)
    if len(split) != len(arms):
        raise InvalidInput(f"the split has {len(split)} values for {len(arms)} arms")
    values = []
    for s in split:
        try:
            value = float(s)
        except (TypeError, ValueError):
            raise InvalidInput(f"a split value must be a number, got {s!r}") from None
        if not 0 < value < float("inf"):
            raise InvalidInput(f"every arm needs a share above 0, got {s!r}")
        values.append(value)
    total = sum(values)
    return tuple(v / total for v in values)


def _insert(engine: Engine, table: Table) -> Insert:
    """An INSERT of the engine's dialect, which has ON CONFLICT DO NOTHING on both."""
    if engine.dialect.name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:
        from sqlalchemy.dialects.postgresql import insert
    return insert(table)


class ExperimentStore:
    """Experiments, assignments and impressions in the database behind ``engine``."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        # its tables: make_engine's migrations (stylesense.migrations)

    # -- experiments ---------------------------------------------------------------------
    def create(self, name: str, arms: Sequence[str], split: Sequence[float] | None, metric: str,
               window_hours: float, now: datetime) -> Experiment:
        """Store a new running experiment. Conflict when the name is taken or another one is
        running: a shopper is in one experiment at a time, so that each answer has one arm."""
        check_name(name)
        arms = list(arms)
        if len(arms) < 2 or len(set(arms)) != len(arms):
            raise InvalidInput(f"an experiment needs two or more distinct arms, got {', '.join(arms) or 'none'}")
        shares = normalise_split(arms, split)
        if metric not in METRICS:
            raise InvalidInput(f"unknown metric {metric!r}; choose from {', '.join(METRICS)}")
        if not 0 < float(window_hours) <= 24 * 90:
            raise InvalidInput(f"the attribution window must be above 0 and at most 90 days, got {window_hours} h")
        row = {"name": name, "arms": arms, "split": list(shares), "metric": metric,
               "window_hours": float(window_hours), "status": RUNNING, "started_us": micros(now), "stopped_us": None}
        table = ExperimentRow.__table__
        # One statement, so two processes creating at once cannot both start one: the name's
        # unique index and the one-running index (see ExperimentRow) refuse the second.
        with self.engine.begin() as conn:
            created = conn.execute(_insert(self.engine, table).on_conflict_do_nothing().returning(table.c.pk),
                                   row).first()
        if created is None:
            if any(e.name == name for e in self.list()):
                raise Conflict(f"experiment {name!r} exists already: choose another name")
            running = self.running()
            held = running.name if running is not None else "NAME"  # stopped meanwhile: try again
            raise Conflict(f"experiment {held!r} is running: stop it first (`stylesense experiment stop {held}`); "
                           "one runs at a time")
        return self.get(name)

    def get(self, name: str) -> Experiment:
        check_name(name)
        with self.engine.connect() as conn:
            row = conn.execute(select(ExperimentRow.__table__).where(ExperimentRow.name == name)).first()
        if row is None:
            raise NotFound(f"experiment {name!r} not found (`stylesense experiment list` names them)")
        return Experiment.of(row)  # type: ignore[arg-type]

    def list(self) -> list[Experiment]:
        """Every experiment, newest first."""
        table = ExperimentRow.__table__
        with self.engine.connect() as conn:
            return [Experiment.of(r) for r in conn.execute(select(table).order_by(table.c.pk.desc()))]  # type: ignore[arg-type]

    # Built once: every recommendation asks it.
    _RUNNING = select(ExperimentRow.__table__).where(ExperimentRow.__table__.c.status == RUNNING).limit(1)

    def running(self) -> Experiment | None:
        """The running experiment, if any (one query: every recommendation served asks it)."""
        with self.engine.connect() as conn:
            row = conn.execute(self._RUNNING).first()
        return None if row is None else Experiment.of(row)  # type: ignore[arg-type]

    def stop(self, name: str, now: datetime) -> Experiment:
        """Stop a running experiment (its shoppers get the served model again); stopping a
        stopped one is a no-op."""
        self.get(name)
        table = ExperimentRow.__table__
        with self.engine.begin() as conn:
            conn.execute(update(table).where(table.c.name == name, table.c.status == RUNNING)
                         .values(status=STOPPED, stopped_us=micros(now)))
        return self.get(name)

    # -- assignments and impressions ------------------------------------------------------------
    def arm_of(self, experiment: str, user_id: str) -> str | None:
        """The arm recorded for ``user_id`` when the experiment first served them; None before."""
        table = AssignmentRow.__table__
        with self.engine.connect() as conn:
            return conn.scalar(select(table.c.arm).where(table.c.experiment == experiment, table.c.user_id == user_id))

    def assignments(self, experiment: str) -> dict[str, str]:
        """user id -> arm of every shopper the experiment has served."""
        table = AssignmentRow.__table__
        with self.engine.connect() as conn:
            return {u: a for u, a in conn.execute(select(table.c.user_id, table.c.arm)
                                                  .where(table.c.experiment == experiment))}

    def record_impression(self, experiment: str, arm: str, model: str, user_id: str, items: Sequence[str],
                          now: datetime) -> Impression:
        """Store one served recommendation (its id new and random: uuid4, hex) and, on the
        shopper's first, their assignment to ``arm``, in one transaction. Recorded only once an
        answer was served: an arm that fails to answer loses shoppers, which the sample-ratio
        check then reports."""
        impression = Impression(uuid.uuid4().hex, experiment, arm, model, user_id, tuple(items), micros(now))
        assignment = _insert(self.engine, AssignmentRow.__table__).on_conflict_do_nothing(
            index_elements=["experiment", "user_id"])
        with self.engine.begin() as conn:
            conn.execute(assignment, {"experiment": experiment, "user_id": user_id, "arm": arm, "ts_us": impression.ts_us})
            conn.execute(ImpressionRow.__table__.insert(), {
                "impression_id": impression.impression_id, "experiment": experiment, "arm": arm, "model": model,
                "user_id": user_id, "items": list(items), "ts_us": impression.ts_us})
        return impression

    def impressions(self, *, experiment: str | None = None, since_us: int | None = None,
                    until_us: int | None = None) -> list[Impression]:
        """Impressions of ``experiment`` (None: of every experiment) served in [since, until], oldest first."""
        table = ImpressionRow.__table__
        query = select(table)
        if experiment is not None:
            query = query.where(table.c.experiment == experiment)
        if since_us is not None:
            query = query.where(table.c.ts_us >= since_us)
        if until_us is not None:
            query = query.where(table.c.ts_us <= until_us)
        with self.engine.connect() as conn:
            return [Impression.of(r) for r in conn.execute(query.order_by(table.c.ts_us, table.c.pk))]  # type: ignore[arg-type]

    def events_of(self, users: Sequence[str], since_us: int, until_us: int) -> list[dict[str, Any]]:
        """The events of ``users`` timed in [since, until], oldest first, as attribution reads them."""
        from stylesense.events.store import EventRow

        row = EventRow.__table__.c
        query = (select(row.pk, row.user_id, row.item_id, row.type, row.ts_us, row.price, row.impression_id)
                 .where(row.ts_us >= since_us, row.ts_us <= until_us))
        ids = sorted(set(users))
        found: list[Any] = []
        with self.engine.connect() as conn:
            for start in range(0, len(ids), _IN_CHUNK):
                found.extend(conn.execute(query.where(row.user_id.in_(ids[start:start + _IN_CHUNK]))))
        found.sort(key=lambda r: (r.ts_us, r.pk))
        return [r._asdict() for r in found]
