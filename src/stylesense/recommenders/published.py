"""Trained models in the home's database, for homes on a server database (PostgreSQL) that
several machines share: a model trained on one machine is served by all.

Each machine keeps its own home folder (config, index files, a local copy of each model); the
``models`` table holds the saved file of each model with a version that every training bumps.
A serving process compares the table's version with the copy it last wrote (one indexed query
per request, as ``max_pk`` is) and fetches the file when it is behind; the file then loads
like any other, so fold-in of live events works as on one machine. A SQLite home is one
machine's: its models stay files only.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import DateTime, Integer, LargeBinary, String, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from stylesense.atomic import atomic_write


class ModelBase(DeclarativeBase):
    pass


class ModelRow(ModelBase):
    """The saved file of one trained model (migration 0003)."""

    __tablename__ = "models"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    version: Mapped[int] = mapped_column(Integer)
    trained_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    data: Mapped[bytes] = mapped_column(LargeBinary)


class PublishedModels:
    """The ``models`` table of one home's database. ``synced`` remembers, per model, the
    version this process last wrote to or read from the local file; it belongs to one
    :class:`~stylesense.behaviour.Behaviour`, whose loading lock guards it."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine  # its table: make_engine's migrations
        self.synced: dict[str, int] = {}

    def publish(self, name: str, path: Path) -> int:
        """Store the model file at ``path`` as ``name``'s newest version; returns the version.
        One upsert: two trainings of one model on two machines get two versions, the later wins."""
        from sqlalchemy.dialects.postgresql import insert

        data, now = path.read_bytes(), datetime.now(timezone.utc)
        table = ModelRow.__table__
        statement = (insert(table).values(name=name, version=1, data=data, trained_at=now)
                     .on_conflict_do_update(index_elements=[table.c.name],
                                            set_={"version": table.c.version + 1, "data": data, "trained_at": now})
                     .returning(table.c.version))
        with self.engine.begin() as conn:
            version = int(conn.execute(statement).scalar_one())
        self.synced[name] = version
        return version

    def sync(self, name: str, path: Path) -> None:
        """Write the table's newest file of ``name`` to ``path`` when the local copy is not it
        (missing, or older than the table's version); nothing when the table has no such model."""
        table = ModelRow.__table__
        with self.engine.connect() as conn:
            version = conn.execute(select(table.c.version).where(table.c.name == name)).scalar()
            if version is None or (self.synced.get(name) == version and path.is_file()):
                return
            row = conn.execute(select(table.c.version, table.c.data).where(table.c.name == name)).one()
        atomic_write(path, lambda f: f.write(row.data))
        self.synced[name] = int(row.version)

    def names(self) -> list[str]:
        """The models stored, newest training first."""
        table = ModelRow.__table__
        with self.engine.connect() as conn:
            return list(conn.scalars(select(table.c.name).order_by(table.c.trained_at.desc())))
