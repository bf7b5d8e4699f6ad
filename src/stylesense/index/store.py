"""Where a home's index lives and when it is read again: its life cycle, behind one object.

* :class:`FileIndexStore`: an in-memory kind (flat, kdtree, ivf, hnsw) saved to the home's
  index file. ``current()`` reads the file again when another process replaced it (its stamp
  changed); ``commit`` saves it atomically after a build or sync.
* :class:`DatabaseIndexStore`: pgvector (the home's Postgres database, through the home's own
  engine: one connection pool) or Milvus (``milvus_uri``, a Milvus Lite file in the home by
  default). The database is the index: every process and machine sees each write at once, so
  there is nothing to re-read and ``commit`` writes nothing.

The engine decides *what* goes in (the catalogue's searchable items, their vectors and
scalars) under the home's index lock; the store decides where it goes. ``open_store`` picks
the store from the home's configuration only.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING

from stylesense.atomic import DamagedFile
from stylesense.concurrency import Stamp, file_stamp
from stylesense.errors import NotReady
from stylesense.home import REPAIR, Config, Home, damaged

from . import DATABASE_KINDS, load_index, make_index
from .base import VectorIndex
from .memory import InMemoryIndex, Resolver

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

MILVUS_LITE_NAME = "milvus.db"
"""The Milvus Lite file inside the home's index folder when the config names no ``milvus_uri``."""


class IndexStore(ABC):
    """Opens, creates and persists one home's index."""

    @abstractmethod
    def exists(self) -> bool:
        """Whether an index has been built."""

    @abstractmethod
    def current(self) -> VectorIndex:
        """The index as it is now (read again if another process changed it); NotReady if none."""

    @property
    @abstractmethod
    def fresh(self) -> bool:
        """Whether the last ``current()`` (re)opened the index: the engine then checks that the
        catalogue has not moved on (a crash between a catalogue write and the index's)."""

    @abstractmethod
    def create(self, kind: str, dim: int, n_expected: int) -> VectorIndex:
        """A new, empty index of ``kind`` for this home (``build`` fills it)."""

    @abstractmethod
    def commit(self, index: VectorIndex) -> None:
        """Persist ``index`` after a build or sync and make it the current one."""


class FileIndexStore(IndexStore):
    """An in-memory kind in the home's index file."""

    def __init__(self, path: Path, resolver: Resolver):
        self.path = path
        self.resolver = resolver
        self._index: InMemoryIndex | None = None
        self._stamp: Stamp | None = None
        self._fresh = False

    def exists(self) -> bool:
        return file_stamp(self.path) is not None

    def current(self) -> InMemoryIndex:
        stamp = file_stamp(self.path)
        if stamp is None:
            raise NotReady("no index yet: import a catalogue first (stylesense catalog import)")
        self._fresh = self._index is None or stamp != self._stamp
        if self._fresh:
            self._read(stamp)
        assert self._index is not None
        return self._index

    @property
    def fresh(self) -> bool:
        return self._fresh

    def _read(self, stamp: Stamp) -> None:
        """Swap in the file's content; requests already searching finish on the old one."""
        try:
            index = load_index(self.path)
        except DamagedFile as e:
            raise damaged("index file", self.path, e.reason, f"{REPAIR} (or `stylesense index "
                          "build`) to rebuild it from the database") from None
        index.resolver = self.resolver
        self._index, self._stamp = index, stamp

    def create(self, kind: str, dim: int, n_expected: int) -> InMemoryIndex:
        index = make_index(kind, dim, n_expected)
        index.resolver = self.resolver
        return index

    def commit(self, index: VectorIndex) -> None:
        assert isinstance(index, InMemoryIndex)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        index.save(self.path)
        self._index, self._stamp = index, file_stamp(self.path)


class DatabaseIndexStore(IndexStore):
    """pgvector or Milvus: the index is a table or collection, shared by every process."""

    def __init__(self, kind: str, target: str, engine: Engine | None = None):
        self.kind = kind
        self.target = target  # the database URL (pgvector) or the Milvus URI
        self.engine = engine  # the home's database engine, which a pgvector index in it shares
        self._index: VectorIndex | None = None
        self._fresh = False

    @property
    def location(self) -> str:
        """Where the index lives, as messages name it (no password)."""
        if self.kind == "pgvector":
            from sqlalchemy.engine import make_url

            from .pgvector import DEFAULT_TABLE

            return f"pgvector table {DEFAULT_TABLE} in {make_url(self.target).render_as_string()}"
        from .milvus import DEFAULT_COLLECTION

        return f"Milvus collection {DEFAULT_COLLECTION} at {self.target}"

    @property
    def client_errors(self) -> tuple[type[Exception], ...]:
        """What the backend's client raises when its server cannot be reached or refuses."""
        if self.kind == "pgvector":
            from sqlalchemy.exc import SQLAlchemyError

            return (SQLAlchemyError,)
        from pymilvus.exceptions import MilvusException

        return (MilvusException,)

    def _connect(self, dim: int | None) -> VectorIndex:
        if self.kind == "pgvector":
            from .pgvector import PgVectorIndex

            # the home's pool, or the one the index opened (pgvector.connect): one per home
            engine = getattr(self._index, "engine", None) or self.engine
            return PgVectorIndex(self.target, dim, engine=engine)
        from .milvus import MilvusIndex, is_lite

        if is_lite(self.target):
            Path(self.target).parent.mkdir(parents=True, exist_ok=True)
        return MilvusIndex(self.target, dim, client=getattr(self._index, "client", None))

    def exists(self) -> bool:
        if self._index is not None:
            return True
        try:
            self._index = self._connect(None)
        except NotReady:
            return False
        return True

    def current(self) -> VectorIndex:
        self._fresh = self._index is None
        if not self.exists():
            raise NotReady("no index yet: import a catalogue first (stylesense catalog import)")
        assert self._index is not None
        return self._index

    @property
    def fresh(self) -> bool:
        return self._fresh

    def create(self, kind: str, dim: int, n_expected: int) -> VectorIndex:
        return self._connect(dim)

    def commit(self, index: VectorIndex) -> None:
        self._index = index  # already written: each write went to the database


def open_store(home: Home, config: Config, resolver: Resolver, engine: Engine | None = None) -> IndexStore:
    """The store the home's configuration names: a database one for ``pgvector``/``milvus``
    (``engine``: the home's database engine), the index file otherwise."""
    return database_store(home, config, engine) or FileIndexStore(home.index_path, resolver)


def database_store(home: Home, config: Config, engine: Engine | None = None) -> DatabaseIndexStore | None:
    """The database store of a ``pgvector``/``milvus`` home; None for an index file."""
    if config.index_kind == "pgvector":
        if not (config.database_url or "").startswith("postgresql"):
            raise NotReady("a pgvector index lives in the home's Postgres database: "
                           "stylesense init --database-url postgresql://... --index pgvector")
        return DatabaseIndexStore("pgvector", config.database_url, engine)
    if config.index_kind == "milvus":
        return DatabaseIndexStore("milvus", config.milvus_uri or str(home.index_path.parent / MILVUS_LITE_NAME))
    return None


def store_key(config: Config) -> tuple[str, str | None]:
    """What selects the store: a change of it (another process re-configured the home) opens
    another one."""
    if config.index_kind == "pgvector":
        return ("pgvector", config.database_url)
    if config.index_kind == "milvus":
        return ("milvus", config.milvus_uri)
    return ("file", None)


__all__ = ["DATABASE_KINDS", "DatabaseIndexStore", "FileIndexStore", "IndexStore", "database_store", "open_store",
           "store_key"]
