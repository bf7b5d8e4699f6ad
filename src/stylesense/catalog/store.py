"""The catalogue database: items, their metadata and their raw image features.

SQLAlchemy keeps the storage swappable (SQLite in the home by default, a Postgres URL later).
Raw CNN features are stored per item, not the final search vectors, so that an adapter can be
trained on them and applied later without decoding a single image again.

Index bookkeeping lives here too: ``features_version`` counts feature changes and
``indexed_version`` records what the index file holds. Comparing the two after a crash tells
exactly which items the index still lacks, so the index never silently drifts from the catalogue.
Removal is a soft delete until the index has dropped the item, for the same reason.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import numpy as np
from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Integer,
    LargeBinary,
    String,
    create_engine,
    delete,
    event,
    select,
    update,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column


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
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)


@dataclass(frozen=True)
class Item:
    """One product as the rest of the library sees it."""

    pk: int
    item_id: str
    attrs: dict[str, Any]
    image_path: str | None


@dataclass(frozen=True)
class Upsert:
    """New state for one item; ``features`` None keeps the stored features."""

    item_id: str
    attrs: dict[str, Any]
    image_path: str | None
    image_hash: str | None
    features: np.ndarray | None


def make_engine(url: str) -> Engine:
    engine = create_engine(url)
    if engine.dialect.name == "sqlite":
        # WAL lets a search read while an import writes; a busy timeout instead of instant errors.
        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record):  # pragma: no cover - exercised by every sqlite use
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

    Base.metadata.create_all(engine)
    return engine


class CatalogStore:
    """Durable catalogue: upsert / remove / read items and features."""

    def __init__(self, url: str) -> None:
        self.engine = make_engine(url)

    # -- reads -------------------------------------------------------------------------
    def count(self) -> int:
        with Session(self.engine) as s:
            return len(s.scalars(select(ItemRow.pk).where(ItemRow.removed.is_(False))).all())

    def hashes(self) -> dict[str, tuple[str | None, dict, str | None]]:
        """item_id -> (image_hash, attrs, image_path) of live items, to decide what changed."""
        with Session(self.engine) as s:
            rows = s.execute(
                select(ItemRow.item_id, ItemRow.image_hash, ItemRow.attrs, ItemRow.image_path).where(
                    ItemRow.removed.is_(False)
                )
            ).all()
        return {r[0]: (r[1], r[2], r[3]) for r in rows}

    def items(self, item_ids: Sequence[str] | None = None) -> list[Item]:
        with Session(self.engine) as s:
            q = select(ItemRow.pk, ItemRow.item_id, ItemRow.attrs, ItemRow.image_path).where(
                ItemRow.removed.is_(False)
            )
            if item_ids is not None:
                q = q.where(ItemRow.item_id.in_(list(item_ids)))
            return [Item(r[0], r[1], r[2] or {}, r[3]) for r in s.execute(q.order_by(ItemRow.pk))]

    def items_by_pk(self, pks: Iterable[int]) -> dict[int, Item]:
        pks = [int(p) for p in pks]
        if not pks:
            return {}
        with Session(self.engine) as s:
            q = select(ItemRow.pk, ItemRow.item_id, ItemRow.attrs, ItemRow.image_path).where(
                ItemRow.pk.in_(pks), ItemRow.removed.is_(False)
            )
            return {r[0]: Item(r[0], r[1], r[2] or {}, r[3]) for r in s.execute(q)}

    def features(self, only_unindexed: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(pks, raw features) of live items that have features; optionally only those the
        index does not hold yet."""
        with Session(self.engine) as s:
            q = select(ItemRow.pk, ItemRow.features).where(
                ItemRow.removed.is_(False), ItemRow.features.is_not(None)
            )
            if only_unindexed:
                q = q.where(
                    (ItemRow.indexed_version.is_(None))
                    | (ItemRow.indexed_version != ItemRow.features_version)
                )
            rows = s.execute(q.order_by(ItemRow.pk)).all()
        pks = np.array([r[0] for r in rows], dtype=np.int64)
        if not rows:
            return pks, np.zeros((0, 0), dtype=np.float32)
        return pks, np.stack([np.frombuffer(r[1], dtype=np.float32) for r in rows])

    def index_behind(self) -> bool:
        """Whether some change has not reached the index (e.g. a crash between the two writes)."""
        with Session(self.engine) as s:
            q = select(ItemRow.pk).where(
                ItemRow.removed.is_(True)
                | (
                    ItemRow.features.is_not(None)
                    & (
                        ItemRow.indexed_version.is_(None)
                        | (ItemRow.indexed_version != ItemRow.features_version)
                    )
                )
            )
            return s.execute(q.limit(1)).first() is not None

    def removed_pks(self) -> np.ndarray:
        with Session(self.engine) as s:
            rows = s.scalars(select(ItemRow.pk).where(ItemRow.removed.is_(True))).all()
        return np.array(rows, dtype=np.int64)

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
                    row = ItemRow(item_id=c.item_id, features_version=0)
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
                row.updated_at = _now()
                if c.features is not None:
                    row.features = np.ascontiguousarray(c.features, dtype=np.float32).tobytes()
                    row.features_version = (row.features_version or 0) + 1
        return added, updated

    def mark_removed(self, item_ids: Sequence[str]) -> list[str]:
        """Soft-delete; returns the ids that were live. The index drops them, then ``purge``."""
        with Session(self.engine) as s, s.begin():
            live = s.scalars(
                select(ItemRow.item_id).where(
                    ItemRow.item_id.in_(list(item_ids)), ItemRow.removed.is_(False)
                )
            ).all()
            s.execute(update(ItemRow).where(ItemRow.item_id.in_(live)).values(removed=True))
        return list(live)

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

    def purge(self, pks: np.ndarray) -> None:
        with Session(self.engine) as s, s.begin():
            s.execute(delete(ItemRow).where(ItemRow.pk.in_([int(p) for p in pks])))
