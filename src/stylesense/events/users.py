"""Shoppers' profiles: the ``users`` table beside the events.

Events alone name shoppers well enough for recommending (an id is all a model needs), but a
Gorse client also keeps a profile per shopper (labels, a comment, subscriptions) and reads it
back, so the home stores one: a row per user id, in the home's database, written by
:class:`UserStore`. A profile is optional: a shopper known only from events is recommended for
just the same.

Labels follow Gorse's rule, so whatever a Gorse client stored is accepted and comes back
unchanged: a string, a number, a list of strings or of numbers, or an object whose values are
labels again (see :func:`label_problem`).
"""

from __future__ import annotations

import math
from pathlib import Path
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from sqlalchemy import JSON, DateTime, Integer, String, Text, func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from stylesense.errors import InvalidInput, NotFound
from stylesense.inputs import check_id

if TYPE_CHECKING:
    import pandas as pd

MAX_PAGE = 10_000
"""Most users one page may hold: a page is read into memory whole."""


class UserBase(DeclarativeBase):
    pass


class UserRow(UserBase):
    __tablename__ = "users"

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(String(255), unique=True, index=True)
    labels: Mapped[Any] = mapped_column(JSON, nullable=True)
    comment: Mapped[str] = mapped_column(Text, default="")
    subscribe: Mapped[list] = mapped_column(JSON, default=list)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)  # ix_users_updated_at


@dataclass(frozen=True)
class User:
    """A shopper's profile. ``subscribe``: the categories they follow (older Gorse versions)."""

    user_id: str
    labels: Any = None
    comment: str = ""
    subscribe: list[str] = field(default_factory=list)

    def checked(self) -> "User":
        """This profile when every field can be stored, else InvalidInput saying which."""
        check_id(self.user_id, "user id")
        check_labels(self.labels, f"labels of user {self.user_id!r}")
        if not isinstance(self.comment, str):
            raise InvalidInput(f"comment of user {self.user_id!r} must be text")
        if not isinstance(self.subscribe, list) or not all(isinstance(s, str) for s in self.subscribe):
            raise InvalidInput(f"subscribe of user {self.user_id!r} must be a list of strings")
        return self


def label_problem(labels: Any) -> str | None:
    """Why ``labels`` are not Gorse labels, or None: null, a string, a number, a list of only
    strings or only numbers, or an object mapping names to labels."""
    if labels is None or isinstance(labels, str) or _number(labels):
        return None
    if isinstance(labels, list):
        if all(isinstance(v, str) for v in labels) or all(_number(v) for v in labels):
            return None
        return "a list of labels must hold only strings or only finite numbers"
    if isinstance(labels, dict):
        return next((f"label {name!r}: {p}" for name, v in labels.items() if (p := label_problem(v))), None)
    if isinstance(labels, float):
        return f"a number label must be finite, not {labels}"
    return f"a label must be text, a number, a list or an object, not {type(labels).__name__}"


def check_labels(labels: Any, what: str) -> Any:
    """``labels`` when they pass :func:`label_problem`, else InvalidInput naming ``what``."""
    problem = label_problem(labels)
    if problem:
        raise InvalidInput(f"{what}: {problem}")
    return labels


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _user(row: UserRow) -> User:
    return User(row.user_id, row.labels, row.comment or "", list(row.subscribe or []))


class UserStore:
    """Create, read, page through and delete profiles in the database behind ``engine``."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        # its tables: make_engine's migrations (stylesense.migrations)

    def upsert(self, users: Sequence[User]) -> int:
        """Insert the profiles, replacing those stored under the same ids, in one transaction
        (all are checked first: one bad profile stores none); returns how many were given."""
        checked = {u.user_id: u.checked() for u in users}  # the last one given for an id wins
        now = datetime.now(timezone.utc)
        with Session(self.engine) as s, s.begin():
            rows = {r.user_id: r for r in s.scalars(select(UserRow).where(UserRow.user_id.in_(list(checked))))}
            for user_id, user in checked.items():
                row = rows.get(user_id) or UserRow(user_id=user_id)
                row.labels, row.comment, row.subscribe, row.updated_at = user.labels, user.comment, user.subscribe, now
                s.add(row)
        return len(users)

    def ensure(self, user_ids: Iterable[str]) -> int:
        """Give each of ``user_ids`` an empty profile unless it has one (a shopper first seen in
        an event, as Gorse does); returns how many were new."""
        wanted = {check_id(u, "user id") for u in user_ids}
        if not wanted:
            return 0
        # INSERT .. ON CONFLICT DO NOTHING: two requests naming the same new shopper at once
        # must not both insert (a check first, then an insert, raced into UNIQUE errors).
        if self.engine.dialect.name == "sqlite":
            from sqlalchemy.dialects.sqlite import insert
        else:
            from sqlalchemy.dialects.postgresql import insert
        table = UserRow.__table__
        now = datetime.now(timezone.utc)
        rows = [{"user_id": u, "labels": None, "comment": "", "subscribe": [], "updated_at": now} for u in sorted(wanted)]
        statement = insert(table).on_conflict_do_nothing(index_elements=["user_id"]).returning(table.c.user_id)
        with self.engine.begin() as conn:
            return len(conn.execute(statement, rows).all())

    def patch(self, user_id: str, *, labels: Any = None, comment: str | None = None,
              subscribe: list[str] | None = None) -> User:
        """Change the given fields of a stored profile (None: unchanged); NotFound when the
        user has none."""
        with Session(self.engine) as s, s.begin():
            row = s.scalar(select(UserRow).where(UserRow.user_id == check_id(user_id, "user id")))
            if row is None:
                raise NotFound(f"user {user_id} not found")
            old = _user(row)
            new = User(user_id, old.labels if labels is None else labels,
                       old.comment if comment is None else comment,
                       old.subscribe if subscribe is None else subscribe).checked()
            row.labels, row.comment, row.subscribe = new.labels, new.comment, new.subscribe
            row.updated_at = datetime.now(timezone.utc)
            return new

    def get(self, user_id: str) -> User:
        """The stored profile; NotFound when there is none."""
        with Session(self.engine) as s:
            row = s.scalar(select(UserRow).where(UserRow.user_id == check_id(user_id, "user id")))
            if row is None:
                raise NotFound(f"user {user_id} not found")
            return _user(row)

    def page(self, after: str | None, n: int) -> tuple[list[User], str | None]:
        """Up to ``n`` profiles in user id order, after the id ``after`` (None: from the
        first), and the id to pass as ``after`` for the next page (None: this was the last)."""
        if not 1 <= n <= MAX_PAGE:
            raise InvalidInput(f"a page holds 1 to {MAX_PAGE} users, not {n}")
        query = select(UserRow).order_by(UserRow.user_id).limit(n + 1)
        if after is not None:
            query = query.where(UserRow.user_id > after)
        with Session(self.engine) as s:
            users = [_user(r) for r in s.scalars(query)]
        return users[:n], users[n - 1].user_id if len(users) > n else None

    def delete(self, user_id: str) -> bool:
        """Delete the profile; whether there was one. Events are the caller's to delete."""
        with Session(self.engine) as s, s.begin():
            row = s.scalar(select(UserRow).where(UserRow.user_id == check_id(user_id, "user id")))
            if row is not None:
                s.delete(row)
            return row is not None

    _LAST_CHANGE = select(func.max(UserRow.updated_at))  # built once: a served ranker asks it per request

    def last_change(self) -> datetime | None:
        """When a profile was last written (None: none is stored): one query on an index."""
        with self.engine.connect() as c:
            return _aware(c.scalar(self._LAST_CHANGE))

    def attributes(self, since: datetime | None = None) -> pd.DataFrame:
        """The profiles' attributes, indexed by user id: one column per name of the labels
        objects (``{"age": 34, "club": "ACTIVE"}``), for profiles written at or after
        ``since`` (None: all). Labels that are no object (a Gorse tag list) name no attribute."""
        import pandas as pd  # here: the CLI's per-request commands must not load it

        query = select(UserRow.user_id, UserRow.labels)
        if since is not None:
            query = query.where(UserRow.updated_at >= since)
        with self.engine.connect() as c:
            rows = [(u, labels) for u, labels in c.execute(query) if isinstance(labels, dict)]
        table = pd.DataFrame([{k: v for k, v in labels.items() if not isinstance(v, (list, dict))}
                              for _, labels in rows], index=pd.Index([u for u, _ in rows], dtype=object))
        return table

    def import_csv(self, path: str | Path, id_column: str = "user_id", encoding: str = "utf-8") -> "ProfileImportReport":
        """Shoppers' attributes from a CSV (one row per shopper, e.g. H&M's customers.csv):
        each row's non-empty cells join the labels object of that shopper's profile (numbers
        as numbers), keeping labels the file does not name; a profile whose labels are no
        object (a Gorse tag list) has them replaced. Bad rows are reported, the rest stored."""
        from stylesense.catalog.csvtable import BadRow, column_types, read_table, typed

        table = read_table(Path(path), id_column, encoding)
        types = column_types(table)
        bad: list[BadRow] = list(table.bad)
        given: dict[str, dict[str, Any]] = {}
        for line, values in table.rows:
            user_id = values[id_column]
            labels, _ = typed(values, types, {id_column})  # a cell that is no number stays out
            try:
                given[check_id(user_id, "user id")] = check_labels(labels, f"row of user {user_id!r}")
            except InvalidInput as e:
                bad.append(BadRow(line, user_id, str(e)))
        new = 0
        ids = list(given)
        now = datetime.now(timezone.utc)
        for start in range(0, len(ids), IMPORT_CHUNK):
            part = ids[start : start + IMPORT_CHUNK]
            # read and write in one transaction, rows locked where the database can: labels
            # another writer changes meanwhile are not lost
            with Session(self.engine) as s, s.begin():
                rows = {r.user_id: r for r in s.scalars(
                    select(UserRow).where(UserRow.user_id.in_(part)).with_for_update())}
                new += len(part) - len(rows)
                for user_id in part:
                    row = rows.get(user_id) or UserRow(user_id=user_id, comment="", subscribe=[])
                    row.labels = {**(row.labels if isinstance(row.labels, dict) else {}), **given[user_id]}
                    row.updated_at = now
                    s.add(row)
        return ProfileImportReport(len(table.rows) + len(table.bad), len(ids), new, sorted(bad, key=lambda b: b.row))


IMPORT_CHUNK = 5_000  # profiles read and written per transaction of an import
PROFILE_PRESETS = {"hm": "customer_id"}  # data set -> its shopper id column


@dataclass(frozen=True)
class ProfileImportReport:
    """What ``import_csv`` did: data rows read, profiles stored (``new`` of them new), bad rows."""

    rows: int
    stored: int
    new: int
    bad: list[Any]

    def to_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "stored": self.stored, "new": self.new, "bad": [b.to_dict() for b in self.bad]}


def _aware(t: datetime | None) -> datetime | None:
    """SQLite gives back naive times: they were written in UTC."""
    return t.replace(tzinfo=timezone.utc) if t is not None and t.tzinfo is None else t
