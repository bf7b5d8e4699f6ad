"""The vector-index interface every backend implements: in-memory FAISS / scikit-learn kinds
saved to one file (:mod:`stylesense.index.memory`), and database backends (pgvector, Milvus).

Every index stores L2-normalised float32 vectors under caller-chosen int64 ids (the catalogue's
primary keys) and answers inner-product (= cosine) top-k queries, optionally restricted by a
:class:`~stylesense.index.filters.Filter`. The filter is applied *inside* the search (faiss
``IDSelector``s, SQL predicates, Milvus expressions), so a filtered search returns k results
whenever k allowed items exist: post-filtering a top-k list would silently return fewer.

Where an index lives and when it is rebuilt is :mod:`stylesense.index.store`'s business.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence

import numpy as np

from stylesense.errors import InvalidInput, NotFound, NotReady

from .filters import Filter, ItemScalars


class VectorIndex(ABC):
    """Id-keyed inner-product index over L2-normalised float32 vectors.

    ``scalars`` (one :class:`ItemScalars` per id, or None) are the fields a database backend
    evaluates filters on; the in-memory kinds resolve filters from the catalogue and ignore
    them. Implementations are safe for concurrent searches; writers are serialised by the
    caller (the engine's index lock)."""

    kind: str
    dim: int

    @abstractmethod
    def build(self, ids: np.ndarray, vectors: np.ndarray, scalars: Sequence[ItemScalars] | None = None) -> None:
        """Replace the whole content with these items (trains/tunes where the kind needs it)."""

    @abstractmethod
    def add(self, ids: np.ndarray, vectors: np.ndarray, scalars: Sequence[ItemScalars] | None = None) -> None:
        """Upsert: an id already present is replaced, never duplicated; no full rebuild."""

    @abstractmethod
    def remove(self, ids: np.ndarray) -> None:
        """Delete these ids; unknown ids are ignored; no full rebuild."""

    @abstractmethod
    def search(
        self, queries: np.ndarray, k: int, *, where: Filter | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k by inner product: (scores float32 (m, k) descending, ids int64 (m, k)).

        Rows are padded with id -1 / score -inf only when fewer than k items exist in the
        index (those passing ``where`` when given).
        """

    @abstractmethod
    def vectors(self, ids: np.ndarray) -> np.ndarray:
        """The stored vectors of these ids, (len(ids), dim) float32; NotFound for unknown ids."""

    @abstractmethod
    def lookup(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(held, vectors): which of ``ids`` the index holds (bool; any int64 may be asked,
        -1 too) and their stored vectors, (len(ids), dim) float32, zero rows for the others.

        How a few items' vectors are read (search by item, look-alikes, diversity): one
        lookup of just these ids, never a comparison with every id held (``ids()``), which a
        database backend would have to scan its table for."""

    @abstractmethod
    def ids(self) -> np.ndarray:
        """Every id held, sorted (int64): what a consistency check compares with the catalogue."""

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def __contains__(self, id_: object) -> bool: ...

    # --- shared argument checks -----------------------------------------------------------
    def _check_items(
        self, ids: np.ndarray, vectors: np.ndarray, scalars: Sequence[ItemScalars] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        ids = np.ascontiguousarray(ids, dtype=np.int64).reshape(-1)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise InvalidInput(f"vectors must be (n, {self.dim}), got {vectors.shape}")
        if len(ids) != len(vectors):
            raise InvalidInput(f"{len(ids)} ids for {len(vectors)} vectors")
        if scalars is not None and len(scalars) != len(ids):
            raise InvalidInput(f"{len(scalars)} scalar rows for {len(ids)} ids")
        if len(np.unique(ids)) != len(ids):
            raise InvalidInput("ids must be unique within one call")
        if (ids < 0).any():
            raise InvalidInput("ids must be >= 0 (-1 is the padding id)")
        return ids, vectors

    def _check_queries(self, queries: np.ndarray, k: int) -> np.ndarray:
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if queries.ndim != 2 or queries.shape[1] != self.dim:
            raise InvalidInput(f"queries must be (m, {self.dim}), got {queries.shape}")
        if k < 0:
            raise InvalidInput("k must be >= 0")
        return queries


def as_id(id_: object) -> int | None:
    """``id_`` as an int64 id, or None when it cannot be one (``x in index`` is then False)."""
    try:
        return int(np.asarray([id_], dtype=np.int64)[0])
    except (TypeError, ValueError, OverflowError):
        return None


FETCH_IDS = 10_000
"""Ids per fetch of stored vectors by a database index: bounds a statement's parameters and a
Milvus query's result (capped at 16384 rows)."""


class DatabaseIndex(VectorIndex):
    """An index kept in a database (pgvector's table, Milvus's collection), opened by name:
    its dimension is read back from there, and a new one starts empty."""

    @abstractmethod
    def _stored_dim(self) -> int | None:
        """The stored vectors' dimension; None where nothing is stored under this name yet."""

    def search(
        self, queries: np.ndarray, k: int, *, where: Filter | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        from .exact import empty_results  # here: exact loads faiss, which a database index never needs

        queries = self._check_queries(queries, k)
        scores, ids = empty_results(len(queries), k)
        if k == 0 or not len(queries):
            return scores, ids
        for row, hits in enumerate(self._search_rows(queries, k, where)):
            ids[row, : len(hits)] = [i for i, _ in hits]
            scores[row, : len(hits)] = [s for _, s in hits]
        return scores, ids

    @abstractmethod
    def _search_rows(self, queries: np.ndarray, k: int, where: Filter | None) -> Iterable[list[tuple[int, float]]]:
        """Per query (checked, k >= 1), its up to k (id, inner product) best first, with the
        filter evaluated inside the database's own search."""

    @abstractmethod
    def _fetch(self, ids: list[int]) -> dict[int, object]:
        """id -> stored vector (array-like) of those of ``ids`` (distinct, >= 0) held: one
        query by primary key (pgvector ``WHERE id = ANY``, Milvus ``get``), not a scan."""

    def lookup(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        wanted = np.unique(ids[ids >= 0]).tolist()
        found: dict[int, object] = {}
        for lo in range(0, len(wanted), FETCH_IDS):
            found.update(self._fetch(wanted[lo: lo + FETCH_IDS]))
        held = np.array([i in found for i in ids.tolist()], dtype=bool)
        out = np.zeros((len(ids), self.dim), dtype=np.float32)
        for row in np.flatnonzero(held).tolist():
            out[row] = np.asarray(found[int(ids[row])], dtype=np.float32)
        return held, out

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        held, out = self.lookup(ids)
        if not held.all():
            raise NotFound(f"ids not in the index: {ids[~held][:10].tolist()}")
        return out

    def _attach(self, dim: int | None, missing: str) -> None:
        """Take the stored dimension (or ``dim`` for a new index, built empty); NotReady with
        ``missing`` when neither exists."""
        found = self._stored_dim()
        if dim is None and found is None:
            raise NotReady(missing)
        self.dim = int(dim if dim is not None else found)  # type: ignore[arg-type]
        if found is None:  # a new index starts empty
            self.build(np.empty(0, np.int64), np.empty((0, self.dim), np.float32))

    def exists(self) -> bool:
        """Whether it has been built (with this index's dimension)."""
        return self._stored_dim() == self.dim
