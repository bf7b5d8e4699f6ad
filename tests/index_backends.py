"""Every vector-index backend behind one factory, so the index contract tests run each through
the same cases: the in-memory kinds, pgvector on the session's real Postgres server
(tests/postgres.py), and Milvus on a real Milvus Lite server (one per session); and a whole
home on each database kind (``database_homes``).

``new_index(kind, dim, **params)`` gives an empty index; a database one gets its own table or
collection, so tests never see each other's vectors. Database kinds skip, with the reason,
where their client library or server is absent."""

import shutil
import tempfile
import uuid
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from sqlalchemy import event

from stylesense.index import DATABASE_KINDS, KINDS, make_index
from stylesense.index.base import VectorIndex

BACKENDS = [*KINDS, *DATABASE_KINDS]


@pytest.fixture(scope="session")
def index_database(postgres_server: Any) -> str:
    """One database of the session's Postgres server for the index tests' tables."""
    import psycopg

    name = f"index_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_server.get_uri(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return postgres_server.get_uri(name)


@pytest.fixture(scope="session")
def milvus_lite() -> Iterator[tuple[str, Any]]:
    """(file, client) of one Milvus Lite server for the whole session."""
    pytest.importorskip("milvus_lite", reason="Milvus tests need milvus-lite (pip install 'stylesense[milvus]')")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pymilvus import MilvusClient
    root = Path(tempfile.mkdtemp(prefix="stylesense-milvus-"))
    uri = str(root / "milvus.db")
    client = MilvusClient(uri)
    try:
        yield uri, client
    finally:
        client.close()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def new_index(request: pytest.FixtureRequest) -> Callable[..., VectorIndex]:
    """Factory: an empty index of ``kind``; database servers start on first use only."""

    def make(kind: str, dim: int, **params: Any) -> VectorIndex:
        name = f"t_{uuid.uuid4().hex[:16]}"
        if kind == "pgvector":
            from stylesense.index.pgvector import PgVectorIndex

            return PgVectorIndex(request.getfixturevalue("index_database"), dim, table=name, **params)
        if kind == "milvus":
            from stylesense.index.milvus import MilvusIndex

            uri, client = request.getfixturevalue("milvus_lite")
            return MilvusIndex(uri, dim, collection=name, client=client, **params)
        return make_index(kind, dim, **params)

    return make


@pytest.fixture(scope="module")
def database_homes(tmp_path_factory, model_cache, catalog_dir, postgres_server) -> dict[str, Any]:
    """kind -> a StyleSense home per database kind, conftest's catalogue imported: pgvector in
    the home's own Postgres database, Milvus in a Lite file inside the home (the default
    ``milvus_uri``). Per module: a module's tests may change them, others never see it."""
    import psycopg

    from stylesense.engine import StyleSense

    homes = {}
    for kind in DATABASE_KINDS:
        root = tmp_path_factory.mktemp(f"home-{kind}")
        (root / "models").symlink_to(model_cache, target_is_directory=True)
        url = None
        if kind == "pgvector":
            name = f"home_{uuid.uuid4().hex[:12]}"
            with psycopg.connect(postgres_server.get_uri(), autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{name}"')
            url = postgres_server.get_uri(name).replace("postgresql://", "postgresql+psycopg://", 1)
        ss = StyleSense.init(root, database_url=url, index_kind=kind)
        assert ss.import_catalog(catalog_dir / "styles.csv", "images/{id}.jpg").ok
        homes[kind] = ss
    return homes


class Built(dict):
    """kind -> an index of that kind holding (ids, x), built on first use: a module's cases
    share one index per backend, and selecting some kinds (-k flat) starts no server."""

    def __init__(self, new_index: Callable[..., VectorIndex], dim: int, ids: Any, x: Any):
        super().__init__()
        self.new_index, self.dim, self.items_ = new_index, dim, (ids, x)

    def __missing__(self, kind: str) -> VectorIndex:
        index = self[kind] = self.new_index(kind, self.dim)
        index.build(*self.items_)
        return index


@contextmanager
def statements(engine) -> Iterator[list[str]]:
    """Every SQL statement ``engine`` sends while the block runs."""
    sent: list[str] = []

    def record(_conn, _cursor, statement, *_args) -> None:
        sent.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", record)
