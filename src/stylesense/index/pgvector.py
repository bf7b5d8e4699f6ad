"""Vectors in the home's Postgres database: pgvector's HNSW index, filters as SQL predicates.

One table (``stylesense_vectors`` unless told otherwise) holds ``id`` (the catalogue's pk),
``embedding vector(dim)`` and the scalar fields of :class:`~stylesense.index.filters.ItemScalars`
(``terms``/``numbers`` as ``jsonb``, ``in_stock``). Search is ONE statement per query::

    SELECT id, embedding <#> :q FROM t WHERE <filter predicates> ORDER BY 2 LIMIT k

``<#>`` is the negated inner product, which on unit vectors orders exactly as cosine, and the
HNSW index is built with ``vector_ip_ops`` for it. WHY ``hnsw.iterative_scan =
relaxed_order`` (pgvector 0.8): without it the HNSW scan stops after ``ef_search`` candidates
and the WHERE clause then drops the ones that fail, so a 1%-selective filter returns ~1% of k;
iterative scan keeps walking the graph until k rows pass (bounded by
``hnsw.max_scan_tuples``). "Relaxed" order may swap near-equal neighbours, so rows are
re-sorted by score here.

WHY an exact plan for selective filters, chosen here and not left to the planner: at 1M rows a
1% category filter (10k matches) is too many for the planner's exact plan, so it walks the
graph, and the iterative scan stops at ``hnsw.max_scan_tuples`` before it has seen the true
top 10 (recall@10 0.89-0.93 at any ef_search, docs/scaling.md). So a filter that an index can
enumerate (``terms`` through the GIN index, an id list through the primary key) has its
matches estimated by the planner (``EXPLAIN``: its row estimate from the table's statistics,
~0.3 ms and no rows read; a real count, even one stopped past the limit, read the heap: 20-80 ms
a query at 1M); at most EXACT_MAX_ROWS matches are scored exactly, with the HNSW index scan
switched off for that transaction. Price ranges and the stock flag alone have no index to
enumerate them and are rarely selective: they take the graph walk. Either way the predicates
run inside the database.

Thread safety: SQLAlchemy's connection pool hands each search its own connection (no shared
cursor); writers are serialised by the caller, and ``build`` swaps a new table in under one
transaction, so concurrent searches see the old table or the new one, never half of one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Connection, Engine, make_url

from stylesense.errors import InvalidInput

from .base import DatabaseIndex, as_id
from .filters import Filter, ItemScalars, accepted

DEFAULT_TABLE = "stylesense_vectors"
EF_SEARCH = 200
"""``hnsw.ef_search`` unfiltered: at 100 recall@10 was 0.995 on 100k x 256 embedding-like vectors
but 0.923 on 1M; 200 gives 0.965 there (bench/backends.py --pg-ef, docs/scaling.md)."""
FILTERED_EF_SEARCH = 400
"""``hnsw.ef_search`` under a filter. Measured on 100k x 256 (category filters, 100 queries):
at 10% selectivity ef 100/200/400 gave recall@10 0.951/0.964/0.988 (24/20/32 ms); at 1%,
0.946/0.951/1.0 (87/78/16 ms), because at 400 the planner prices the HNSW walk above a bitmap
scan of the GIN index plus an exact sort of the ~1000 matches, and takes the exact plan."""
BUILD_BYTES_PER_DIM = 4  # a float32 coordinate
BUILD_BYTES_PER_ROW = 700  # HNSW neighbour lists and tuple overhead beside the vector (1.7 KB a row at 1M x 256)
BUILD_MEMORY_MB = (512, 4096)
"""``maintenance_work_mem`` bounds of a build: the graph must fit in it, or the rest of the build
goes to disk (4.4-4.7x slower at 1M x 256 with 512 MB); never above 4 GB of the server's RAM."""
EXACT_MAX_ROWS = 20_000
"""Filters matching at most this many rows are scored exactly (see the module's docstring):
exact cost grows with the matches, the graph walk's recall falls with them."""
MAX_SCAN_TUPLES = 50_000
"""``hnsw.max_scan_tuples`` for iterative scans: enough for k=10 at 0.1% selectivity on 10M rows
is not the aim; 50k tuples covers 1% filters to k=100 on the measured data (default 20k)."""
HNSW_M = 16
HNSW_EF_CONSTRUCTION = 64
COPY_ROWS = 5000
"""Rows per COPY statement in ``add``/``build``: bounds the client's buffer."""
_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_VECTOR_TYPES = "stylesense.pgvector_types"
"""Key in a pooled connection's ``info``: pgvector's types are registered on it."""


def pg_url(url: str) -> str:
    """A Postgres URL as SQLAlchemy's with the psycopg 3 driver (``postgresql://`` accepted)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql":
        raise InvalidInput(f"a pgvector index needs a PostgreSQL database URL, not {parsed.get_backend_name()!r} "
                           "(stylesense init --database-url postgresql://... --index pgvector)")
    return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)


class PgVectorIndex(DatabaseIndex):
    """An index in a Postgres table with pgvector; ``dim`` None: read it from the table;
    ``engine``: the home's, shared where it reaches this database (see ``connect``)."""

    kind = "pgvector"

    def __init__(self, url: str, dim: int | None = None, *, table: str = DEFAULT_TABLE, ef_search: int = EF_SEARCH,
                 filtered_ef_search: int = FILTERED_EF_SEARCH, engine: Engine | None = None):
        if not _NAME.match(table):
            raise InvalidInput(f"table name {table!r}: lower-case letters, digits and _ only")
        self.table = table
        self.ef_search = ef_search
        self.filtered_ef_search = filtered_ef_search
        self.engine = connect(url, engine)
        with self.engine.begin() as conn:  # before a connection looks the vector type up
            if conn.execute(text("SELECT 1 FROM pg_extension WHERE extname = 'vector'")).first() is None:
                conn.execute(text("CREATE EXTENSION IF NOT EXISTS vector"))
        self._attach(dim, f"no pgvector index yet in table {table!r}: build one (stylesense index build)")

    # --- writes -------------------------------------------------------------------------------
    def build(self, ids: np.ndarray, vectors: np.ndarray, scalars: Sequence[ItemScalars] | None = None) -> None:
        ids, vectors = self._check_items(ids, vectors, scalars)
        staging = f"{self.table}_build"
        with self._connection(begin=True) as conn:
            conn.execute(text(f"DROP TABLE IF EXISTS {staging}"))
            conn.execute(text(
                f"CREATE TABLE {staging} (id bigint PRIMARY KEY, embedding vector({self.dim}) NOT NULL, "
                "terms jsonb NOT NULL DEFAULT '{}', numbers jsonb NOT NULL DEFAULT '{}', "
                "in_stock boolean NOT NULL DEFAULT true)"))
            self._copy(conn, staging, ids, vectors, scalars)
            # Built after the load: one pass over the rows instead of an insert per row.
            conn.execute(text(f"SET LOCAL maintenance_work_mem = '{build_memory_mb(len(ids), self.dim)}MB'"))
            conn.execute(text(
                f"CREATE INDEX {staging}_hnsw ON {staging} USING hnsw (embedding vector_ip_ops) "
                f"WITH (m = {HNSW_M}, ef_construction = {HNSW_EF_CONSTRUCTION})"))
            conn.execute(text(f"CREATE INDEX {staging}_terms ON {staging} USING gin (terms jsonb_path_ops)"))
            conn.execute(text(f"DROP TABLE IF EXISTS {self.table}"))
            conn.execute(text(f"ALTER TABLE {staging} RENAME TO {self.table}"))
            for suffix in ("pkey", "hnsw", "terms"):
                conn.execute(text(f"ALTER INDEX {staging}_{suffix} RENAME TO {self.table}_{suffix}"))
            conn.execute(text(f"ANALYZE {self.table}"))

    def add(self, ids: np.ndarray, vectors: np.ndarray, scalars: Sequence[ItemScalars] | None = None) -> None:
        ids, vectors = self._check_items(ids, vectors, scalars)
        if not len(ids):
            return
        with self._connection(begin=True) as conn:  # upsert: the old rows go in the same transaction
            conn.execute(text(f"DELETE FROM {self.table} WHERE id = ANY(:ids)"), {"ids": ids.tolist()})
            self._copy(conn, self.table, ids, vectors, scalars)

    def remove(self, ids: np.ndarray) -> None:
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        if len(ids):
            with self._connection(begin=True) as conn:
                conn.execute(text(f"DELETE FROM {self.table} WHERE id = ANY(:ids)"), {"ids": ids.tolist()})

    def _copy(self, conn: Connection, table: str, ids: np.ndarray, vectors: np.ndarray,
              scalars: Sequence[ItemScalars] | None) -> None:
        """Binary COPY of the rows: ~10x an INSERT per row."""
        from psycopg.types.json import Jsonb

        cursor = conn.connection.driver_connection.cursor()
        for lo in range(0, len(ids), COPY_ROWS):
            with cursor.copy(f"COPY {table} (id, embedding, terms, numbers, in_stock) FROM STDIN WITH (FORMAT BINARY)"
                             ) as copy:
                copy.set_types(["int8", "vector", "jsonb", "jsonb", "bool"])
                for i in range(lo, min(lo + COPY_ROWS, len(ids))):
                    s = scalars[i] if scalars is not None else ItemScalars({}, {})
                    copy.write_row((int(ids[i]), vectors[i], Jsonb(s.terms), Jsonb(s.numbers), s.in_stock))

    # --- reads ------------------------------------------------------------------------------
    def _search_rows(self, queries: np.ndarray, k: int, where: Filter | None) -> Iterator[list[tuple[int, float]]]:
        predicates, params = sql_predicates(where)
        statement = text(f"SELECT id, embedding <#> :q AS d FROM {self.table}{predicates} ORDER BY d LIMIT :k")
        with self._searching(self.ef_search if where is None else self.filtered_ef_search) as conn:
            if where is not None and enumerable(where) and self._matches_at_most(conn, predicates, params):
                conn.execute(text("SET LOCAL enable_indexscan = off"))  # HNSW scans only: GIN and pkey bitmaps stay
            for q in queries:
                found = conn.execute(statement, {**params, "q": q, "k": k}).all()
                found.sort(key=lambda r: r[1])  # relaxed_order: near-equal rows may come swapped
                yield [(r[0], -r[1]) for r in found]

    def _matches_at_most(self, conn: Connection, predicates: str, params: dict[str, Any]) -> bool:
        """Whether the planner expects the filter to keep at most EXACT_MAX_ROWS rows."""
        plan = conn.execute(text(f"EXPLAIN (FORMAT JSON) SELECT 1 FROM {self.table}{predicates}"), params).scalar_one()
        return float(plan[0]["Plan"]["Plan Rows"]) <= EXACT_MAX_ROWS

    @contextmanager
    def _connection(self, *, begin: bool = False) -> Iterator[Connection]:
        """A pooled connection that speaks pgvector's types (numpy arrays as ``vector``), in a
        transaction when ``begin``. WHY registered here, once per database connection (marked
        in its pool record's ``info``), and not on the engine's connect event: the engine may
        be the home's, whose pool already holds connections the catalogue opened first."""
        with (self.engine.begin() if begin else self.engine.connect()) as conn:
            record = conn.connection
            if not record.info.get(_VECTOR_TYPES):
                from pgvector.psycopg import register_vector

                register_vector(record.driver_connection)
                record.info[_VECTOR_TYPES] = True
            yield conn

    @contextmanager
    def _searching(self, ef_search: int) -> Iterator[Connection]:
        """A pooled connection in a transaction with the search settings (SET LOCAL: they end
        with the transaction, so the pooled connection, which the catalogue may use next, goes
        back clean)."""
        with self._connection(begin=True) as conn:
            conn.execute(text(f"SET LOCAL hnsw.ef_search = {int(ef_search)}"))
            conn.execute(text("SET LOCAL hnsw.iterative_scan = relaxed_order"))
            conn.execute(text(f"SET LOCAL hnsw.max_scan_tuples = {MAX_SCAN_TUPLES}"))
            yield conn

    def _fetch(self, ids: list[int]) -> dict[int, object]:
        if not ids:
            return {}
        with self._connection() as conn:
            rows = conn.execute(text(f"SELECT id, embedding FROM {self.table} WHERE id = ANY(:ids)"), {"ids": ids})
            return {r[0]: r[1].to_numpy() for r in rows}  # pgvector's Vector

    def ids(self) -> np.ndarray:
        with self._connection() as conn:
            return np.array(conn.execute(text(f"SELECT id FROM {self.table} ORDER BY id")).scalars().all(),
                            dtype=np.int64)

    def __len__(self) -> int:
        with self._connection() as conn:
            return int(conn.execute(text(f"SELECT count(*) FROM {self.table}")).scalar_one())

    def __contains__(self, id_: object) -> bool:
        key = as_id(id_)
        if key is None:
            return False
        with self._connection() as conn:
            return conn.execute(text(f"SELECT 1 FROM {self.table} WHERE id = :id"), {"id": key}).first() is not None

    def _stored_dim(self) -> int | None:
        """The table's vector dimension (its column's type modifier), None when there is no table."""
        with self._connection() as conn:
            return conn.execute(text(
                "SELECT a.atttypmod FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
                "WHERE c.relname = :t AND c.relkind = 'r' AND a.attname = 'embedding' "
                "AND pg_table_is_visible(c.oid)"), {"t": self.table}).scalar()


def sql_predicates(where: Filter | None) -> tuple[str, dict[str, Any]]:
    """(`` WHERE ...`` or "", bound parameters): the filter as SQL over the scalar columns.

    ``COL=VALUE`` any-of is containment on ``terms`` (``@>``, served by the GIN index); the price
    range reads the number column of the filter's price column; values are bound, never spliced."""
    if where is None:
        return "", {}
    clauses: list[str] = []
    params: dict[str, Any] = {}
    f = where.predicates
    if f is not None:
        for i, (col, values) in enumerate(sorted(f.where.items())):
            terms = []
            for j, value in enumerate(accepted(values)):
                params[f"t{i}_{j}"] = json.dumps({col: [value]})
                terms.append(f"terms @> CAST(:t{i}_{j} AS jsonb)")
            clauses.append("(" + " OR ".join(terms) + ")")
        if f.min_price is not None or f.max_price is not None:
            params["price_col"] = f.price_column
            price = "CAST(numbers ->> :price_col AS double precision)"
            if f.min_price is not None:
                clauses.append(f"{price} >= :min_price")
                params["min_price"] = float(f.min_price)
            if f.max_price is not None:
                clauses.append(f"{price} <= :max_price")
                params["max_price"] = float(f.max_price)
        if f.in_stock:
            clauses.append("in_stock")
    if where.ids is not None:
        clauses.append("id = ANY(:allowed)")
        params["allowed"] = np.asarray(where.ids, dtype=np.int64).reshape(-1).tolist()
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params


def enumerable(where: Filter) -> bool:
    """Whether an index can list the filter's matches: a ``COL=VALUE`` term (GIN) or ids (pkey)."""
    return where.ids is not None or (where.predicates is not None and bool(where.predicates.where))


def connect(url: str, shared: Engine | None = None) -> Engine:
    """The engine for the index's database: ``shared`` (the home's) when it is connected to this
    same database with psycopg 3, so the catalogue, the events and the vectors share one
    connection pool per process; otherwise a pool of its own. WHY not always shared: a home on
    another driver (``postgresql+psycopg2://``) cannot serve the index, whose binary COPY is
    psycopg 3's API; an index opened on its own (a benchmark, a test) has no home's engine.

    The index creates the vector extension when absent (the embedded server and a superuser
    home can; a managed database needs ``CREATE EXTENSION vector`` once by its owner)."""
    wanted = make_url(pg_url(url))
    if shared is not None and shared.url == wanted:
        return shared
    return create_engine(wanted, pool_pre_ping=True)


def build_memory_mb(rows: int, dim: int) -> int:
    """``maintenance_work_mem`` for building the HNSW graph of ``rows`` vectors of ``dim``: the
    graph's size with a quarter to spare, within BUILD_MEMORY_MB."""
    need = 1.25 * rows * (BUILD_BYTES_PER_DIM * dim + BUILD_BYTES_PER_ROW) / 2**20
    low, high = BUILD_MEMORY_MB
    return int(min(high, max(low, need)))
