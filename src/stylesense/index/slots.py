"""The FAISS kinds' slot machinery: a faiss index addressed by insertion slot, our own
slot <-> id tables, tombstones for removal, bitmap selectors for filters."""

from __future__ import annotations

from abc import abstractmethod

import faiss
import numpy as np

from .exact import bitmap_selector, empty_results, pad_results
from .idmap import IdMap
from .memory import InMemoryIndex


class SlotIndex(InMemoryIndex):
    """A faiss index addressed by insertion slot, plus our own slot <-> id tables.

    WHY not ``IndexIDMap2``: its search translates labels in an OpenMP loop even for one
    query, which on a loaded 2-core machine costs ~12 ms per call (measured: 0.1 ms with one
    thread); and an id map cannot hide an upserted id's old node from HNSW (the selector sees
    external ids). Here labels are translated in numpy, filters are ``IDSelectorBitmap``s over
    slots (built in microseconds), and removed slots are tombstones until ``_compact``.
    """

    compact_fraction: float = 0.0
    """Compact once tombstones exceed this fraction of slots (0: on every removal)."""

    def __init__(self, dim: int):
        self.dim = dim
        self._reset()

    @abstractmethod
    def _new_faiss(self) -> faiss.Index:
        """A new, empty faiss index of this kind."""

    @property
    def _storage(self) -> faiss.Index:
        """The flat storage of the vectors, searched for exact answers."""
        return self._index

    def _reset(self) -> None:
        self._index = self._new_faiss()
        self._labels = np.empty(0, np.int64)  # slot -> id, -1 = tombstone
        self._ids = IdMap()  # id -> slot
        self._live_sel: tuple[faiss.IDSelector, np.ndarray] | None = None

    def _build(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        self._reset()
        self._add(ids, vectors)

    def _add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids) == 0:
            return
        self._bury(self._ids.delete(ids))
        start = self._index.ntotal
        self._index.add(vectors)
        self._labels = np.concatenate([self._labels, ids])
        self._ids.insert(ids, np.arange(start, start + len(ids), dtype=np.int64))
        self._live_sel = None  # the bitmap covers only the old slots
        self._maybe_compact()

    def remove(self, ids: np.ndarray) -> None:
        self._bury(self._ids.delete(np.asarray(ids, dtype=np.int64).reshape(-1)))
        self._maybe_compact()

    def _bury(self, slots: np.ndarray) -> None:
        if len(slots):
            self._labels[slots] = -1
            self._live_sel = None

    def _maybe_compact(self) -> None:
        n_dead = self._index.ntotal - len(self._ids)
        if n_dead and n_dead > self.compact_fraction * self._index.ntotal:
            self._compact()

    def _compact(self) -> None:
        """Rebuild from the live vectors (amortised: runs once per ``compact_fraction``)."""
        live = np.flatnonzero(self._labels >= 0)
        vectors = self._storage.reconstruct_batch(live)
        ids = self._labels[live]
        self._reset()
        self._add(ids, vectors)

    def _search(
        self, queries: np.ndarray, k: int, allowed: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        if k == 0 or len(self._ids) == 0:
            return empty_results(len(queries), k)
        if allowed is None:
            n_eligible, sel_bits = len(self._ids), self._live_selector()
        else:
            n_eligible, sel_bits = self._filter(allowed)
            if n_eligible == 0:
                return empty_results(len(queries), k)
        scores, slots = self._search_slots(queries, k, sel_bits[0] if sel_bits else None, n_eligible)
        return scores, self._to_ids(slots)

    def _search_slots(
        self, queries: np.ndarray, k: int, sel: faiss.IDSelector | None, n_eligible: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """(scores, slots) of the top-k eligible slots; exact unless a subclass knows better."""
        return self._exact(queries, k, sel)

    def _exact(self, queries: np.ndarray, k: int, sel: faiss.IDSelector | None) -> tuple[np.ndarray, np.ndarray]:
        params = None if sel is None else faiss.SearchParameters(sel=sel)
        return pad_results(*self._storage.search(queries, k, params=params))

    def _to_ids(self, slots: np.ndarray) -> np.ndarray:
        return np.where(slots >= 0, self._labels[slots], -1)

    def _live_selector(self) -> tuple[faiss.IDSelector, np.ndarray] | None:
        """Bitmap of live slots, or None when there are no tombstones (no filtering cost)."""
        if len(self._ids) == self._index.ntotal:
            return None
        if self._live_sel is None:
            self._live_sel = bitmap_selector(self._index.ntotal, np.flatnonzero(self._labels >= 0))
        return self._live_sel

    def _make_filter(self, slots: np.ndarray) -> tuple[faiss.IDSelector, np.ndarray]:
        return bitmap_selector(self._index.ntotal, slots)

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        _, slots = self._check_known(ids)
        return self._storage.reconstruct_batch(slots)

    def _id_map(self) -> IdMap:
        return self._ids

    def _slot_arrays(self) -> dict[str, np.ndarray]:
        return {"faiss": faiss.serialize_index(self._index), "labels": self._labels}

    def _load_slots(self, arrays: dict[str, np.ndarray]) -> None:
        self._index = faiss.deserialize_index(arrays["faiss"])
        self._labels = arrays["labels"].astype(np.int64)
        live = np.flatnonzero(self._labels >= 0)
        self._ids = IdMap(self._labels[live], live)
        self._live_sel = None
