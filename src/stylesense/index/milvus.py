"""Vectors in Milvus: a local Milvus Lite file (embedded, for tests and small set-ups) or a
Milvus server / cluster URI; filters as Milvus boolean expressions on scalar fields.

One collection (``stylesense_vectors`` unless told otherwise) with ``id`` (INT64 primary key,
the catalogue's pk), ``embedding`` (FLOAT_VECTOR, inner product on unit vectors = cosine) and
the scalar fields of :class:`~stylesense.index.filters.ItemScalars` (``terms``/``numbers`` as
JSON, ``in_stock`` BOOL). A filter becomes one expression such as::

    json_contains_any(terms["articleType"], ["shirts", "tshirts"])
      and numbers["price"] <= 40 and in_stock == true

which Milvus evaluates inside its search (a bitset over the segment before the graph walk),
so filtered searches return k results whenever k items match. Names and values are written as
escaped JSON string literals (see ``milvus_expression``).

Strong consistency on the collection: a search right after ``add`` sees the added rows, which
the engine's sync-then-search relies on. ``MilvusClient`` is a gRPC client: safe to share
between threads.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from stylesense.errors import InvalidInput

from .base import DatabaseIndex, as_id
from .filters import Filter, ItemScalars, accepted

DEFAULT_COLLECTION = "stylesense_vectors"
EF_SEARCH = 128
"""HNSW ``ef``: recall@10 >= 0.95 on 100k embedding-like vectors (bench/backends.py)."""
WRITE_ROWS = 5000
"""Rows per insert call: bounds the gRPC message (dim 1280 x 5000 floats = 25 MB)."""
QUERY_PAGE = 10_000
"""Ids read per page by ``ids()`` (Milvus caps a query's limit at 16384)."""
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")


def is_lite(uri: str) -> bool:
    """A local file path (Milvus Lite) rather than a server's http(s):// or tcp URI."""
    return "://" not in uri


class MilvusIndex(DatabaseIndex):
    """An index in a Milvus collection; ``dim`` None: read it from the collection."""

    kind = "milvus"

    def __init__(self, uri: str, dim: int | None = None, *, collection: str = DEFAULT_COLLECTION,
                 token: str | None = None, client: Any = None):
        if not _NAME.match(collection):
            raise InvalidInput(f"collection name {collection!r}: letters, digits and _ only")
        self.uri = uri
        self.collection = collection
        self.client = client if client is not None else connect(uri, token)
        self._attach(dim, f"no Milvus index yet in collection {collection!r}: build one (stylesense index build)")

    # --- writes -------------------------------------------------------------------------------
    def build(self, ids: np.ndarray, vectors: np.ndarray, scalars: Sequence[ItemScalars] | None = None) -> None:
        from pymilvus import DataType, MilvusClient

        ids, vectors = self._check_items(ids, vectors, scalars)
        if self.client.has_collection(self.collection):
            self.client.drop_collection(self.collection)
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("embedding", DataType.FLOAT_VECTOR, dim=self.dim)
        schema.add_field("terms", DataType.JSON)
        schema.add_field("numbers", DataType.JSON)
        schema.add_field("in_stock", DataType.BOOL)
        index = self.client.prepare_index_params()
        if is_lite(self.uri):
            # Milvus Lite's HNSW misses under selective filters (recall@10 0.81 at 1%, 5k rows):
            # Lite is for tests and small shops, where an exact scan is fast enough.
            index.add_index("embedding", index_type="FLAT", metric_type="IP")
        else:
            index.add_index("embedding", index_type="HNSW", metric_type="IP", params={"M": 16, "efConstruction": 64})
        self.client.create_collection(self.collection, schema=schema, index_params=index, consistency_level="Strong")
        self._write(ids, vectors, scalars, upsert=False)
        # Sealed segments get their HNSW graph; rows left in the growing segment are scanned
        # one by one (measured on Milvus Lite, 5k rows: 110 ms a query before, 14 ms after).
        self.client.flush(self.collection)

    def add(self, ids: np.ndarray, vectors: np.ndarray, scalars: Sequence[ItemScalars] | None = None) -> None:
        ids, vectors = self._check_items(ids, vectors, scalars)
        self._write(ids, vectors, scalars, upsert=True)

    def _write(self, ids: np.ndarray, vectors: np.ndarray, scalars: Sequence[ItemScalars] | None,
               *, upsert: bool) -> None:
        write = self.client.upsert if upsert else self.client.insert
        for lo in range(0, len(ids), WRITE_ROWS):
            rows = []
            for i in range(lo, min(lo + WRITE_ROWS, len(ids))):
                s = scalars[i] if scalars is not None else ItemScalars({}, {})
                rows.append({"id": int(ids[i]), "embedding": vectors[i].tolist(), "terms": s.terms,
                             "numbers": s.numbers, "in_stock": s.in_stock})
            write(self.collection, rows)

    def remove(self, ids: np.ndarray) -> None:
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        if len(ids):
            self.client.delete(self.collection, ids=ids.tolist())

    # --- reads ------------------------------------------------------------------------------
    def _search_rows(self, queries: np.ndarray, k: int, where: Filter | None) -> Iterator[list[tuple[int, float]]]:
        found = self.client.search(
            self.collection, data=[q.tolist() for q in queries], limit=k, filter=milvus_expression(where),
            search_params={"metric_type": "IP", "params": {"ef": max(EF_SEARCH, k)}}, output_fields=[],
        )
        for hits in found:
            yield sorted(((h["id"], h["distance"]) for h in hits), key=lambda h: -h[1])

    def _fetch(self, ids: list[int]) -> dict[int, object]:
        if not ids:
            return {}
        return {r["id"]: r["embedding"] for r in self.client.get(self.collection, ids=ids, output_fields=["embedding"])}

    def ids(self) -> np.ndarray:
        out: list[int] = []
        last = -1
        while True:  # paged by id: a query's limit is capped
            page = self.client.query(self.collection, filter=f"id > {last}", output_fields=["id"], limit=QUERY_PAGE)
            if not page:
                break
            got = sorted(r["id"] for r in page)
            out.extend(got)
            last = got[-1]
        return np.array(sorted(out), dtype=np.int64)

    def __len__(self) -> int:
        rows = self.client.query(self.collection, filter="", output_fields=["count(*)"])
        return int(rows[0]["count(*)"])

    def __contains__(self, id_: object) -> bool:
        key = as_id(id_)
        return key is not None and bool(self.client.get(self.collection, ids=[key], output_fields=["id"]))

    def _stored_dim(self) -> int | None:
        if not self.client.has_collection(self.collection):
            return None
        for field in self.client.describe_collection(self.collection)["fields"]:
            if field["name"] == "embedding":
                return int(field["params"]["dim"])
        return None


def milvus_expression(where: Filter | None) -> str:
    """The filter as a boolean expression over the scalar fields.

    Column names and values are written as JSON string literals (``_literal``), which Milvus's
    expression grammar reads with the same escapes, so a quote in a value cannot end the string
    (Milvus Lite does not take expression templates); numbers and ids as numbers."""
    if where is None:
        return ""
    clauses: list[str] = []
    f = where.predicates
    if f is not None:
        for col, values in sorted(f.where.items()):
            clauses.append(f"json_contains_any(terms[{_literal(col)}], {_literal(accepted(values))})")
        price = f"numbers[{_literal(f.price_column)}]"
        if f.min_price is not None:
            clauses.append(f"{price} >= {float(f.min_price)!r}")
        if f.max_price is not None:
            clauses.append(f"{price} <= {float(f.max_price)!r}")
        if f.in_stock:
            clauses.append("in_stock == true")
    if where.ids is not None:
        allowed = np.asarray(where.ids, dtype=np.int64).reshape(-1).tolist()
        clauses.append(f"id in {allowed}" if allowed else "id < 0")
    return " and ".join(clauses)


def _literal(value: str | list[str]) -> str:
    return json.dumps(value, ensure_ascii=False)


def connect(uri: str, token: str | None = None) -> Any:
    """A ``MilvusClient``; a Milvus Lite file path starts the embedded server for this process."""
    from pymilvus import MilvusClient

    return MilvusClient(uri, token=token or "")
