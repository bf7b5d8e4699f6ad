"""The id -> slot map every in-memory kind keys its storage by."""

from __future__ import annotations

import itertools

import numpy as np

_VERSIONS = itertools.count()


class IdMap:
    """Sorted int64 id -> int64 slot map in two numpy arrays.

    WHY not a dict: a Python dict of 1M ints costs ~100 MB and a save/load round trip; sorted
    arrays cost 16 bytes/item, look up vectorised, and update in O(n) memmove per batch.
    """

    def __init__(self, keys: np.ndarray | None = None, values: np.ndarray | None = None):
        keys = np.empty(0, np.int64) if keys is None else np.asarray(keys, np.int64)
        values = keys.copy() if values is None else np.asarray(values, np.int64)
        order = np.argsort(keys, kind="stable")
        self.keys, self.values = keys[order], values[order]
        self.version = next(_VERSIONS)  # changes on every mutation: keys caches

    def __len__(self) -> int:
        return len(self.keys)

    def lookup(self, ids: np.ndarray) -> np.ndarray:
        """Slot of each id, -1 where absent."""
        ids = np.asarray(ids, np.int64)
        if not len(self.keys):
            return np.full(ids.shape, -1, np.int64)
        pos = np.minimum(np.searchsorted(self.keys, ids), len(self.keys) - 1)
        return np.where(self.keys[pos] == ids, self.values[pos], -1)

    def insert(self, ids: np.ndarray, values: np.ndarray | None = None) -> None:
        """Add ids that are not present yet (caller guarantees it)."""
        values = ids if values is None else values
        order = np.argsort(ids, kind="stable")
        pos = np.searchsorted(self.keys, ids[order])
        self.keys = np.insert(self.keys, pos, ids[order])
        self.values = np.insert(self.values, pos, np.asarray(values, np.int64)[order])
        self.version = next(_VERSIONS)

    def shift_values(self, removed: np.ndarray) -> None:
        """Renumber slots after the sorted slots ``removed`` were cut out of the storage."""
        self.values = self.values - np.searchsorted(removed, self.values)
        self.version = next(_VERSIONS)

    def delete(self, ids: np.ndarray) -> np.ndarray:
        """Remove the present ones among ``ids``; returns the removed ids' slots."""
        ids = np.asarray(ids, np.int64)
        if not len(self.keys):
            return np.empty(0, np.int64)
        pos = np.minimum(np.searchsorted(self.keys, ids), len(self.keys) - 1)
        hit = np.unique(pos[self.keys[pos] == ids])
        removed = self.values[hit]
        if len(hit):
            self.keys, self.values = np.delete(self.keys, hit), np.delete(self.values, hit)
            self.version = next(_VERSIONS)
        return removed
