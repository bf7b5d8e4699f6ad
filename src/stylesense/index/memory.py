"""The in-memory kinds' common half: an id map, a filter resolved to allowed ids, one file.

The FAISS kinds (flat, ivf, hnsw) and the KD-tree keep their vectors in this process and are
saved to ONE ``.npz`` archive (no pickle): a JSON header with ``kind``/``dim``/parameters, the
ids, and either the ``faiss.serialize_index`` bytes or the raw arrays. Writes are atomic
(same-directory temp file, fsync, ``os.replace``) so a crash mid-save leaves the previous file.

They cannot evaluate metadata predicates themselves: a :class:`Filter`'s ``match`` is turned
into allowed ids by ``resolver`` (the catalogue's scan, attached by the index store), and the
kind searches inside that id set.
"""

from __future__ import annotations

import hashlib
from abc import abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from stylesense.atomic import save_npz
from stylesense.catalog.filters import Filters
from stylesense.errors import NotFound, NotReady

from .base import VectorIndex, as_id
from .filters import Filter, ItemScalars
from .idmap import IdMap

FORMAT_VERSION = 1
FILTER_CACHE_SIZE = 8
"""Recent ``allowed`` sets whose selectors are kept: the app repeats a few category filters."""

Resolver = Callable[[Filters], np.ndarray]
"""Metadata predicates -> the ids of the catalogue items that pass them."""


class InMemoryIndex(VectorIndex):
    """An index held in this process, keyed by an :class:`IdMap`, saved to one file."""

    resolver: Resolver | None = None
    """Set by the index store: how this index turns ``Filter.match`` into allowed ids."""

    def build(self, ids: np.ndarray, vectors: np.ndarray, scalars: Sequence[ItemScalars] | None = None) -> None:
        ids, vectors = self._check_items(ids, vectors, scalars)
        self._build(ids, vectors)

    def add(self, ids: np.ndarray, vectors: np.ndarray, scalars: Sequence[ItemScalars] | None = None) -> None:
        ids, vectors = self._check_items(ids, vectors, scalars)
        self._add(ids, vectors)

    def search(
        self, queries: np.ndarray, k: int, *, where: Filter | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        return self._search(self._check_queries(queries, k), k, self._allowed(where))

    def _allowed(self, where: Filter | None) -> np.ndarray | None:
        """The filter as the allowed-id set these kinds search inside (None: no filter)."""
        if where is None:
            return None
        allowed = None if where.ids is None else np.asarray(where.ids, dtype=np.int64).reshape(-1)
        if where.predicates is not None:
            if self.resolver is None:
                raise NotReady(f"a {self.kind} index resolves metadata filters through the catalogue, "
                               "and this one was opened without it")
            matching = np.asarray(self.resolver(where.predicates), dtype=np.int64)
            allowed = matching if allowed is None else np.intersect1d(matching, allowed)
        return allowed

    def __len__(self) -> int:
        return len(self._id_map())

    def __contains__(self, id_: object) -> bool:
        key = as_id(id_)
        return key is not None and bool(self._id_map().lookup(np.array([key], np.int64))[0] >= 0)

    def ids(self) -> np.ndarray:
        return self._id_map().keys.copy()

    def lookup(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ids = np.ascontiguousarray(ids, dtype=np.int64).reshape(-1)
        held = self._id_map().lookup(ids) >= 0
        out = np.zeros((len(ids), self.dim), dtype=np.float32)
        if held.any():
            out[held] = self.vectors(ids[held])
        return held, out

    def save(self, path: Path) -> None:
        """Write the index to ONE file, atomically (a crash leaves the previous file intact)."""
        header, arrays = self._state()
        header = {"format": FORMAT_VERSION, "kind": self.kind, "dim": self.dim, **header}
        save_npz(path, header, arrays)

    # --- implementation hooks -------------------------------------------------------------
    @abstractmethod
    def _build(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """``build`` on checked arguments."""

    @abstractmethod
    def _add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """``add`` on checked arguments."""

    @abstractmethod
    def _search(
        self, queries: np.ndarray, k: int, allowed: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """``search`` on checked queries, the filter resolved to allowed ids (None: all)."""

    @abstractmethod
    def _id_map(self) -> IdMap:
        """The id -> slot map (membership and slot lookup)."""

    @abstractmethod
    def _state(self) -> tuple[dict, dict[str, np.ndarray]]:
        """JSON-able parameters and the arrays that fully describe the index."""

    @classmethod
    @abstractmethod
    def _restore(cls, header: dict, arrays: dict[str, np.ndarray]) -> InMemoryIndex:
        """Inverse of ``_state``."""

    # --- shared helpers ---------------------------------------------------------------------
    def _filter(self, allowed: np.ndarray) -> tuple[int, object]:
        """(number of allowed items in the index, the kind's filter object over them).

        WHY cached: turning 10^4-10^5 allowed ids into a faiss selector costs milliseconds,
        10x a single HNSW query, and the app sends the same category filter again and again.
        The key is the id set's content hash plus the id map's version, so any add/remove
        invalidates it.
        """
        allowed = np.ascontiguousarray(allowed, dtype=np.int64).reshape(-1)
        digest = hashlib.blake2b(allowed.tobytes(), digest_size=16).digest()
        key = (self._id_map().version, digest)
        cache = self.__dict__.setdefault("_filter_cache", {})
        if key not in cache:
            slots = self._present_slots(allowed)
            cache[key] = (len(slots), self._make_filter(slots) if len(slots) else None)
            while len(cache) > FILTER_CACHE_SIZE:
                del cache[next(iter(cache))]
        return cache[key]

    @abstractmethod
    def _make_filter(self, slots: np.ndarray) -> object:
        """The kind's filter object for these (distinct, present) slots."""

    def _present_slots(self, allowed: np.ndarray) -> np.ndarray:
        """Distinct slots of the ``allowed`` ids that are in the index (others are ignored).

        A mask over map positions deduplicates in O(n) instead of sorting ``allowed``.
        """
        id_map = self._id_map()
        if not len(id_map):
            return np.empty(0, np.int64)
        pos = np.minimum(np.searchsorted(id_map.keys, allowed), len(id_map) - 1)
        hit = np.zeros(len(id_map), dtype=bool)
        hit[pos[id_map.keys[pos] == allowed]] = True
        return id_map.values[hit]

    def _check_known(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(ids as int64, their slots); NotFound naming the unknown ones."""
        ids = np.ascontiguousarray(ids, dtype=np.int64).reshape(-1)
        slots = self._id_map().lookup(ids)
        if (slots < 0).any():
            raise NotFound(f"ids not in the index: {ids[slots < 0][:10].tolist()}")
        return ids, slots
