"""The catalogue database: items, their metadata and their raw image features.

SQLAlchemy keeps the storage swappable (SQLite in the home by default, or a PostgreSQL URL; the
schema comes from :mod:`stylesense.migrations`).
Raw CNN features are stored per item, not the final search vectors, so that an adapter can be
trained on them and applied later without decoding a single image again.

Index bookkeeping lives here too: ``features_version`` counts feature changes and
``indexed_version`` records what the index file holds. Comparing the two after a crash tells
exactly which items the index still lacks, so the index never silently drifts from the catalogue.
The index holds the *searchable* items: live, not hidden, with features.

Removal leaves a tombstone (the row, ``removed``, without its features): the catalogue has to
remember what it removed, because events keep naming removed products and recommenders learn
them from the events. ``blocked_ids`` (removed, hidden or out of stock) is what no model may
recommend; a product that only ever appeared in events is not blocked.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Integer,
    LargeBinary,
    String,
    bindparam,
    create_engine,
    event,
    func,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.exc import OperationalError, ProgrammingError
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from stylesense.home import damaged


class Base(DeclarativeBase):
    pass


def _now() -> datetime:
    return datetime.now(timezone.utc)


class ItemRow(Base):
    __tablename__ = "items"

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    item_id: Mapped[str] = mapped_column(String(255), unique=True, index=True)
    attrs: Mapped[dict] = mapped_column(JSON, default=dict)
    image_path: Mapped[str | None] = mapped_column(String(4096), nullable=True)
    image_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    features: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    features_version: Mapped[int] = mapped_column(Integer, default=0)
    indexed_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    removed: Mapped[bool] = mapped_column(Boolean, default=False, index=True)
    # Back-office state, not feed data: a re-import keeps it. Hidden items leave the index.
    hidden: Mapped[bool] = mapped_column(Boolean, default=False, index=True)
    # From the home's stock column (see stock_value); out-of-stock items stay searchable.
    in_stock: Mapped[bool] = mapped_column(Boolean, default=True, index=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now, index=True)  # stamp()


@dataclass(frozen=True)
class Item:
    """One product as the rest of the library sees it."""

    pk: int
    item_id: str
    attrs: dict[str, Any]
    image_path: str | None
    hidden: bool = False
    in_stock: bool = True

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape every surface answers with; like ``Hit``, no local path (each surface
        links to the photo its own way)."""
        return {"item_id": self.item_id, "attrs": self.attrs, "hidden": self.hidden, "in_stock": self.in_stock,
                "has_photo": self.image_path is not None}


@dataclass(frozen=True)
class Upsert:
    """New state for one item; ``features`` None keeps the stored features."""

    item_id: str
    attrs: dict[str, Any]
    image_path: str | None
    image_hash: str | None
    features: np.ndarray | None


_OUT_OF_STOCK = {"0", "false", "no", "n", "f", "out", "out of stock", "sold out"}


def stock_value(value: Any) -> bool:
    """Whether a stock cell means "can be sold": a missing cell, a positive count or a
    true-ish word does; 0, a negative count, false / no / sold out do not."""
    if value is None or isinstance(value, bool):
        return value is not False
    if isinstance(value, (int, float)):
        return value > 0
    return str(value).strip().casefold() not in _OUT_OF_STOCK


DATABASE_REPAIR = ("restore it from a backup (nothing else holds the catalogue, its features and the events; "
                   "`sqlite3 {path} .recover` may salvage rows)")


def driver_url(url: str) -> URL:
    """``url`` with the PostgreSQL driver stylesense ships (psycopg 3) where it names none:
    SQLAlchemy's default for a plain ``postgresql://`` is psycopg2."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def make_engine(url: str) -> Engine:
    """The home database's engine, its schema brought to the newest migration
    (:func:`stylesense.migrations.upgrade`). One per :class:`~stylesense.engine.StyleSense`,
    shared by every store of it: one connection pool per process. On a server database
    (PostgreSQL) the pool checks a connection before handing it out (``pool_pre_ping``), so a
    database restart or a dropped idle connection costs a reconnect, not a failed request."""
    from stylesense.migrations import upgrade

    parsed = driver_url(url)
    engine = create_engine(parsed, pool_pre_ping=parsed.get_backend_name() != "sqlite")
    if engine.dialect.name == "sqlite":
        # WAL lets a search read while an import writes; a busy timeout instead of instant errors.
        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record):  # pragma: no cover - exercised by every sqlite use
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA busy_timeout=30000")  # first: switching to WAL may wait on another connection
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        @event.listens_for(engine, "handle_error")
        def _damaged(context) -> None:
            """A damaged file fails every statement, the first one already: name the file and
            the repair instead of a driver traceback (Damaged)."""
            code = getattr(context.original_exception, "sqlite_errorcode", None)
            if code is not None and code & 0xFF in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
                path = Path(engine.url.database or "")
                raise damaged("database", path, str(context.original_exception), DATABASE_REPAIR.format(path=path))

    upgrade(engine)
    return engine


# Columns added after the first release, with their value for existing rows.
_ADDED_COLUMNS = {"hidden": "BOOLEAN NOT NULL DEFAULT false", "in_stock": "BOOLEAN NOT NULL DEFAULT true"}


def _add_missing_columns(engine: Engine) -> list[str]:
    """Bring an older home's items table up to date (ALTER TABLE ADD COLUMN); returns the
    columns added. Two processes may race here; the loser's "duplicate column" error is
    harmless."""
    have = {c["name"] for c in inspect(engine).get_columns(ItemRow.__tablename__)}
    added = [name for name in _ADDED_COLUMNS if name not in have]
    for name in added:
        try:
            with engine.begin() as conn:
                conn.execute(text(f"ALTER TABLE {ItemRow.__tablename__} ADD COLUMN {name} {_ADDED_COLUMNS[name]}"))
                conn.execute(text(f"CREATE INDEX IF NOT EXISTS ix_items_{name} ON items ({name})"))
        except (OperationalError, ProgrammingError):
            if name not in {c["name"] for c in inspect(engine).get_columns(ItemRow.__tablename__)}:
                raise
    return added


_LIVE = ItemRow.removed.is_(False)
_SEARCHABLE = _LIVE & ItemRow.hidden.is_(False)
_STALE = ItemRow.indexed_version.is_(None) | (ItemRow.indexed_version != ItemRow.features_version)
_IN_INDEX_BUT_UNSEARCHABLE = (ItemRow.removed.is_(True) | ItemRow.hidden.is_(True)) & ItemRow.indexed_version.is_not(None)
_BLOCKED = select(ItemRow.item_id).where(ItemRow.removed.is_(True) | ItemRow.hidden.is_(True) | ItemRow.in_stock.is_(False))


class CatalogStore:
    """Durable catalogue: upsert / hide / remove / read items and features."""

    def __init__(self, url: str, stock_column: str = "in_stock") -> None:
        self.engine = make_engine(url)
        self.stock_column = stock_column  # the metadata column upsert reads in_stock from
        if "in_stock" in _add_missing_columns(self.engine):
            self.set_stock_column(stock_column)

    # -- reads -------------------------------------------------------------------------
    def count(self) -> int:
        """Live items, hidden ones included."""
        with Session(self.engine) as s:
            return len(s.scalars(select(ItemRow.pk).where(_LIVE)).all())

    def stamp(self) -> tuple:
        """A value that changes whenever the catalogue does (every upsert, removal, hide and
        show sets ``updated_at``): one aggregate query, for caches of what is derived from it."""
        with self.engine.connect() as conn:
            return tuple(conn.execute(select(func.count(), func.max(ItemRow.pk), func.max(ItemRow.updated_at))).one())

    def hashes(self, item_ids: Sequence[str] | None = None) -> dict[str, tuple[str | None, dict, str | None]]:
        """item_id -> (image_hash, attrs, image_path) of live items (all, or those of
        ``item_ids``), to decide what changed."""
        with Session(self.engine) as s:
            q = select(ItemRow.item_id, ItemRow.image_hash, ItemRow.attrs, ItemRow.image_path).where(_LIVE)
            if item_ids is not None:
                q = q.where(ItemRow.item_id.in_(list(item_ids)))
            rows = s.execute(q).all()
        return {r[0]: (r[1], r[2], r[3]) for r in rows}

    def items(self, item_ids: Sequence[str] | None = None) -> list[Item]:
        """Live items (hidden ones too: the back office still sees them), in pk order."""
        with self.engine.connect() as conn:
            if item_ids is None:
                return [_item(r) for r in conn.execute(select(*_ITEM_COLUMNS).where(_LIVE).order_by(ItemRow.pk))]
            return [_item(r) for r in conn.execute(_ITEMS_BY_ID, {"ids": list(item_ids)})]

    def items_after(self, pk: int, n: int) -> list[Item]:
        """Up to ``n`` live items with a pk above ``pk``, in pk order: one page of the catalogue,
        read by the primary key's index whatever the catalogue's size."""
        with Session(self.engine) as s:
            q = select(*_ITEM_COLUMNS).where(_LIVE, ItemRow.pk > pk).order_by(ItemRow.pk).limit(n)
            return [_item(r) for r in s.execute(q)]

    def items_by_pk(self, pks: Iterable[int]) -> dict[int, Item]:
        pks = [int(p) for p in pks]
        if not pks:
            return {}
        with self.engine.connect() as conn:
            return {r[0]: _item(r) for r in conn.execute(_ITEMS_BY_PK, {"pks": pks})}

    def missing_columns(self, columns: Iterable[str]) -> list[str]:
        """Those of ``columns`` that no live item has (hidden ones count), sorted. One query per
        column that stops at the first item holding it: a search's filter check reads a row or
        two, and only a column nobody has (the error) scans the catalogue."""
        with self.engine.connect() as conn:
            statement = _HAS_COLUMN[conn.dialect.name]
            return sorted(c for c in set(columns) if conn.execute(statement, {"col": c}).first() is None)

    def columns(self) -> set[str]:
        """Every metadata column some live item has (hidden ones count): one scan, in the database."""
        with self.engine.connect() as conn:
            return set(conn.scalars(_COLUMNS[conn.dialect.name]))

    def features(self, only_unindexed: bool = False, searchable: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(pks, raw features) of live items that have features; ``searchable``: not hidden
        either (what the index holds); ``only_unindexed``: the searchable ones the index does
        not hold yet."""
        with Session(self.engine) as s:
            q = select(ItemRow.pk, ItemRow.features).where(
                _SEARCHABLE if searchable or only_unindexed else _LIVE, ItemRow.features.is_not(None)
            )
            if only_unindexed:
                q = q.where(_STALE)
            rows = s.execute(q.order_by(ItemRow.pk)).all()
        pks = np.array([r[0] for r in rows], dtype=np.int64)
        if not rows:
            return pks, np.zeros((0, 0), dtype=np.float32)
        return pks, np.stack([np.frombuffer(r[1], dtype=np.float32) for r in rows])

    def index_behind(self) -> bool:
        """Whether some change has not reached the index (e.g. a crash between the two writes)."""
        with Session(self.engine) as s:
            q = select(ItemRow.pk).where(
                _IN_INDEX_BUT_UNSEARCHABLE | (_SEARCHABLE & ItemRow.features.is_not(None) & _STALE)
            )
            return s.execute(q.limit(1)).first() is not None

    def unsearchable_pks(self) -> np.ndarray:
        """Items the index holds but must drop: removed or hidden since it was written."""
        with Session(self.engine) as s:
            rows = s.scalars(select(ItemRow.pk).where(_IN_INDEX_BUT_UNSEARCHABLE)).all()
        return np.array(rows, dtype=np.int64)

    def blocked_ids(self) -> list[str]:
        """Ids no recommender may return: removed (tombstones), hidden or out of stock. Read
        on every recommendation: a Core statement built once (an ORM session and a new
        statement each time cost four times the query)."""
        with self.engine.connect() as conn:
            return list(conn.scalars(_BLOCKED))

    def recommendable_ids(self) -> list[str]:
        """Catalogue items that may be recommended: live, shown and in stock."""
        with Session(self.engine) as s:
            return list(s.scalars(select(ItemRow.item_id).where(_SEARCHABLE, ItemRow.in_stock.is_(True))))

    # -- writes ------------------------------------------------------------------------
    def upsert(self, changes: Sequence[Upsert]) -> tuple[int, int]:
        """Apply all changes in one transaction; returns (added, updated)."""
        added = updated = 0
        with Session(self.engine) as s, s.begin():
            existing = {
                r.item_id: r
                for r in s.scalars(
                    select(ItemRow).where(ItemRow.item_id.in_([c.item_id for c in changes]))
                )
            } if changes else {}
            for c in changes:
                row = existing.get(c.item_id)
                if row is None:
                    row = ItemRow(item_id=c.item_id, features_version=0, hidden=False)
                    s.add(row)
                    added += 1
                else:
                    updated += 1
                    if row.removed:  # re-importing a removed item brings it back
                        row.removed = False
                        row.indexed_version = None
                row.attrs = c.attrs
                row.image_path = c.image_path
                row.image_hash = c.image_hash
                row.in_stock = stock_value(c.attrs.get(self.stock_column))
                row.updated_at = _now()
                if c.features is not None:
                    row.features = np.ascontiguousarray(c.features, dtype=np.float32).tobytes()
                    row.features_version = (row.features_version or 0) + 1
        return added, updated

    def mark_removed(self, item_ids: Sequence[str]) -> list[str]:
        """Soft-delete; returns the ids that were live. The index drops them, then ``unindex``
        turns them into tombstones."""
        with Session(self.engine) as s, s.begin():
            live = s.scalars(select(ItemRow.item_id).where(ItemRow.item_id.in_(list(item_ids)), _LIVE)).all()
            s.execute(update(ItemRow).where(ItemRow.item_id.in_(live)).values(removed=True, updated_at=_now()))
        return list(live)

    def set_hidden(self, item_ids: Sequence[str], hidden: bool) -> list[str]:
        """Hide or show live items; returns the ids that exist. Hidden items leave the index
        (``sync_index``) and every recommendation, and keep their features for ``show``."""
        with Session(self.engine) as s, s.begin():
            live = s.scalars(select(ItemRow.item_id).where(ItemRow.item_id.in_(list(item_ids)), _LIVE)).all()
            s.execute(update(ItemRow).where(ItemRow.item_id.in_(live)).values(hidden=hidden, updated_at=_now()))
        return list(live)

    def set_stock_column(self, column: str) -> None:
        """Recompute every item's ``in_stock`` from ``column`` of its metadata (the home's
        stock column changed, or an older home gained the flag)."""
        self.stock_column = column
        with Session(self.engine) as s, s.begin():
            rows = s.execute(select(ItemRow.pk, ItemRow.attrs).where(_LIVE)).all()
            out = [r[0] for r in rows if not stock_value((r[1] or {}).get(column))]
            s.execute(update(ItemRow).where(_LIVE).values(in_stock=True))
            for start in range(0, len(out), 5000):
                s.execute(update(ItemRow).where(ItemRow.pk.in_(out[start:start + 5000])).values(in_stock=False))

    def mark_indexed(self, pks: np.ndarray) -> None:
        with Session(self.engine) as s, s.begin():
            s.execute(
                update(ItemRow)
                .where(ItemRow.pk.in_([int(p) for p in pks]))
                .values(indexed_version=ItemRow.features_version)
            )

    def reset_indexed(self) -> None:
        with Session(self.engine) as s, s.begin():
            s.execute(update(ItemRow).values(indexed_version=None))

    def unindex(self, pks: np.ndarray) -> None:
        """Record that the index dropped ``pks``; removed items become tombstones (no features,
        no photo hash: a re-import embeds them afresh)."""
        with Session(self.engine) as s, s.begin():
            s.execute(update(ItemRow).where(ItemRow.pk.in_([int(p) for p in pks])).values(indexed_version=None))
            s.execute(
                update(ItemRow)
                .where(ItemRow.removed.is_(True), ItemRow.indexed_version.is_(None), ItemRow.features.is_not(None))
                .values(features=None, image_hash=None)
            )


_ITEM_COLUMNS = (ItemRow.pk, ItemRow.item_id, ItemRow.attrs, ItemRow.image_path, ItemRow.hidden, ItemRow.in_stock)
# Core statements built once, for the lookups every search and recommendation makes: an ORM
# session and a statement built per call cost more than the query itself.
# Liveness as an expression, not the bare column: without statistics SQLite's planner takes the
# index on ``removed`` (every live row matches) over the one on the id, a scan of the catalogue.
_NOT_REMOVED = func.coalesce(ItemRow.removed, False).is_(False)
_ITEMS_BY_ID = (select(*_ITEM_COLUMNS).where(ItemRow.item_id.in_(bindparam("ids", expanding=True)), _NOT_REMOVED)
                .order_by(ItemRow.pk))
_ITEMS_BY_PK = select(*_ITEM_COLUMNS).where(ItemRow.pk.in_(bindparam("pks", expanding=True)), _LIVE)

# The metadata columns (keys of ``attrs``, a JSON object) of live items, in each dialect's JSON
# functions: SQLite's json_each, PostgreSQL's json_object_keys (``attrs`` is ``json`` there).
_HAS_COLUMN = {
    "sqlite": text("SELECT 1 FROM items, json_each(items.attrs) AS k WHERE NOT items.removed AND k.key = :col LIMIT 1"),
    "postgresql": text("SELECT 1 FROM items, json_object_keys(items.attrs) AS k WHERE NOT items.removed AND k = :col "
                       "LIMIT 1"),
}
_COLUMNS = {
    "sqlite": text("SELECT DISTINCT k.key FROM items, json_each(items.attrs) AS k WHERE NOT items.removed"),
    "postgresql": text("SELECT DISTINCT k FROM items, json_object_keys(items.attrs) AS k WHERE NOT items.removed"),
}


def _item(row: Any) -> Item:
    """An ``_ITEM_COLUMNS`` row as an Item."""
    return Item(row[0], row[1], row[2] or {}, row[3], bool(row[4]), bool(row[5]))
