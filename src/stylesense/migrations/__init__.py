"""The home database's schema, versioned with Alembic: ``stylesense db upgrade`` / ``db current``.

Every database a home opens (SQLite in the home, or PostgreSQL) is brought to :data:`HEAD` by
:func:`upgrade` when :func:`stylesense.catalog.store.make_engine` opens it, so each store can
assume its tables; a new table, column or index is a new revision under ``versions/``, never a
``create_all``. The first revision creates only the tables a database lacks: a home made before
migrations keeps its rows and is stamped, not recreated.

Alembic runs from this package (``script_location`` is its folder) on the caller's
connection, not from an ``alembic.ini``: paths in an ini break once the package is installed, and
the URL is the home's, which only the caller knows.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

HEAD = "0004"
"""The newest revision (tests/test_postgres_migrations.py checks it against ``versions/``):
a constant, so that opening an up-to-date database costs one query, not a scan of the scripts."""

_LOCK_KEY = 0x57594C45  # pg_advisory_xact_lock key: one migrating process per database at a time


def home_engine(home: str | os.PathLike[str] | None) -> Engine:
    """An engine on a home's database without the upgrade that
    :func:`~stylesense.catalog.store.make_engine` runs on opening: for ``stylesense db``, which
    reports the revision the database was at. NotReady where the folder is no home yet."""
    from sqlalchemy import create_engine

    from stylesense.catalog.store import driver_url
    from stylesense.errors import NotReady
    from stylesense.home import Home

    h = Home.resolve(home)
    if not h.exists():
        raise NotReady(f"no home at {h.root}: run `stylesense init` first")
    return create_engine(driver_url(h.database_url(h.load_config())))


def current(engine: Engine) -> str | None:
    """The revision the database is at; None before any (an empty or pre-migration database).
    Read without Alembic, whose import costs every process opening a home ~0.3 s; Alembic
    loads only to upgrade."""
    with engine.connect() as conn:
        if not conn.dialect.has_table(conn, "alembic_version"):
            return None
        return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


def upgrade(engine: Engine) -> tuple[str | None, str]:
    """Bring the database to :data:`HEAD`; returns (revision before, revision after). Safe to
    run from several processes at once (API workers starting together): on PostgreSQL they queue
    on an advisory lock inside the migration's transaction (DDL is transactional there, so a
    failed upgrade leaves nothing half done); on SQLite on a lock file beside the database,
    taken before the first connection too, since that connection switches a new file to WAL
    while another opener's migration may be writing (one CI run saw "database is locked" there)."""
    with _exclusive(engine):
        before = current(engine)
        if before == HEAD:
            return before, HEAD
        with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_LOCK_KEY})")
            _run(conn, "head")
    return before, HEAD


def _run(conn: Connection, target: str) -> None:
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent))
    config.attributes["connection"] = conn
    command.upgrade(config, target)


@contextmanager
def _exclusive(engine: Engine) -> Iterator[None]:
    """For a SQLite file, a ``flock`` on ``<database>.migrate.lock``: SQLite's DDL outside a
    transaction would let two processes both see a table missing and both create it."""
    path = engine.url.database if engine.dialect.name == "sqlite" else None
    if not path or path == ":memory:":
        yield
        return
    with open(f"{path}.migrate.lock", "a+b") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
