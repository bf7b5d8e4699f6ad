"""The vector-index interface and the pieces every implementation shares.

Every index stores L2-normalised float32 vectors under caller-chosen int64 ids and answers
inner-product (= cosine) top-k queries, optionally restricted to an ``allowed`` id set. The
filter is applied *inside* the search (faiss ``IDSelector``s, or an exact scan of the allowed
vectors when the filter is too restrictive for the approximate structure), so a filtered search
returns k results whenever k allowed items exist: post-filtering a top-k list would silently
return fewer.

Files are one ``.npz`` archive (no pickle): a JSON header with ``kind``/``dim``/parameters, the
ids, and either the ``faiss.serialize_index`` bytes or the raw arrays. Writes are atomic
(same-directory temp file, fsync, ``os.replace``) so a crash mid-save leaves the previous file.
"""

from __future__ import annotations

import hashlib
import itertools
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path

import faiss
import numpy as np

from stylesense.atomic import save_npz
from stylesense.errors import InvalidInput, NotFound

FORMAT_VERSION = 1
TUNE_K = 10
"""Recall knobs are tuned for recall@10, the depth the app shows."""
TUNE_QUERIES = 512
"""Held-out build vectors used to tune a recall knob: ~+-0.01 on the recall estimate."""
TUNE_MIN_ITEMS = 2000
"""Below this many items tuning is noise; implementations use an exhaustive setting instead."""
TUNE_MARGIN = 0.01
"""Tune to target + margin so the estimate's sampling error does not land below the target."""
EXACT_BLOCK = 32768
"""Rows gathered at once by blocked scans and adds: bounds temporaries (160 MB at dim 1280)."""
FILTER_CACHE_SIZE = 8
"""Recent ``allowed`` sets whose selectors are kept: the app repeats a few category filters."""
_VERSIONS = itertools.count()


class VectorIndex(ABC):
    """Id-keyed inner-product index over L2-normalised float32 vectors."""

    kind: str
    dim: int

    @abstractmethod
    def build(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Replace the whole content with these items (trains/tunes where the kind needs it)."""

    @abstractmethod
    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Upsert: an id already present is replaced, never duplicated; no full rebuild."""

    @abstractmethod
    def remove(self, ids: np.ndarray) -> None:
        """Delete these ids; unknown ids are ignored; no full rebuild."""

    @abstractmethod
    def search(
        self, queries: np.ndarray, k: int, *, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k by inner product: (scores float32 (m, k) descending, ids int64 (m, k)).

        Rows are padded with id -1 / score -inf only when fewer than k items exist in the
        index (intersected with ``allowed`` when given).
        """

    @abstractmethod
    def vectors(self, ids: np.ndarray) -> np.ndarray:
        """The stored vectors of these ids, (len(ids), dim) float32; KeyError for unknown ids."""

    def __len__(self) -> int:
        return len(self._id_map())

    def __contains__(self, id_: object) -> bool:
        try:
            key = np.asarray([id_], dtype=np.int64)
        except (TypeError, ValueError, OverflowError):
            return False
        return bool(self._id_map().lookup(key)[0] >= 0)

    def ids(self) -> np.ndarray:
        """Every id held, sorted (int64): what a consistency check compares with the catalogue."""
        return self._id_map().keys.copy()

    def save(self, path: Path) -> None:
        """Write the index to ONE file, atomically (a crash leaves the previous file intact)."""
        header, arrays = self._state()
        header = {"format": FORMAT_VERSION, "kind": self.kind, "dim": self.dim, **header}
        save_npz(path, header, arrays)

    # --- implementation hooks -------------------------------------------------------------
    @abstractmethod
    def _id_map(self) -> IdMap:
        """The id -> slot map (membership and slot lookup)."""

    @abstractmethod
    def _state(self) -> tuple[dict, dict[str, np.ndarray]]:
        """JSON-able parameters and the arrays that fully describe the index."""

    @classmethod
    @abstractmethod
    def _restore(cls, header: dict, arrays: dict[str, np.ndarray]) -> VectorIndex:
        """Inverse of ``_state``."""

    # --- shared helpers ---------------------------------------------------------------------
    def _check_items(self, ids: np.ndarray, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ids = np.ascontiguousarray(ids, dtype=np.int64).reshape(-1)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise InvalidInput(f"vectors must be (n, {self.dim}), got {vectors.shape}")
        if len(ids) != len(vectors):
            raise InvalidInput(f"{len(ids)} ids for {len(vectors)} vectors")
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
        """(ids as int64, their slots); KeyError naming the unknown ones."""
        ids = np.ascontiguousarray(ids, dtype=np.int64).reshape(-1)
        slots = self._id_map().lookup(ids)
        if (slots < 0).any():
            raise NotFound(f"ids not in the index: {ids[slots < 0][:10].tolist()}")
        return ids, slots


class SlotIndex(VectorIndex):
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

    def build(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        ids, vectors = self._check_items(ids, vectors)
        self._reset()
        self.add(ids, vectors)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        ids, vectors = self._check_items(ids, vectors)
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
        self.add(ids, vectors)

    def search(
        self, queries: np.ndarray, k: int, *, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        queries = self._check_queries(queries, k)
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


def pad_results(scores: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Normalise faiss output: float32/int64, score -inf wherever the id is -1 (faiss uses -FLT_MAX)."""
    scores = np.asarray(scores, dtype=np.float32)
    ids = np.asarray(ids, dtype=np.int64)
    scores[ids < 0] = -np.inf
    return scores, ids


def fill_short_rows(
    scores: np.ndarray,
    ids: np.ndarray,
    want: int,
    exact: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
) -> None:
    """Redo exactly, in place, the rows that found fewer than ``want`` results.

    An approximate search can come back short (few items in the probed IVF lists, an HNSW
    walk that met few allowed nodes); ``want`` = min(k, eligible items) so a short row is
    always a search miss, never a lack of items. ``exact(rows)`` searches those query rows.
    """
    short = np.flatnonzero((ids >= 0).sum(axis=1) < want)
    if len(short):
        scores[short], ids[short] = exact(short)


def empty_results(m: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    return np.full((m, k), -np.inf, np.float32), np.full((m, k), -1, np.int64)


def exact_topk(queries: np.ndarray, base: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact inner-product top-k of each query over ``base`` rows: (scores, row indices)."""
    if len(base) == 0 or k == 0:
        return empty_results(len(queries), k)
    scores, rows = faiss.knn(queries, base, min(k, len(base)), metric=faiss.METRIC_INNER_PRODUCT)
    if rows.shape[1] < k:
        pad = k - rows.shape[1]
        scores = np.pad(scores, ((0, 0), (0, pad)), constant_values=-np.inf)
        rows = np.pad(rows, ((0, 0), (0, pad)), constant_values=-1)
    return pad_results(scores, rows)


def topk_of(scores: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the k best (score, id) candidates, descending, padded with (-inf, -1).

    Pure numpy: faiss's ResultHeap costs ~15 ms for one query (an OpenMP region per call).
    """
    m, c = scores.shape
    out_scores, out_ids = empty_results(m, k)
    k_eff = min(k, c)
    if k_eff == 0:
        return out_scores, out_ids
    top = np.argpartition(-scores, k_eff - 1, axis=1)[:, :k_eff]
    order = np.argsort(-np.take_along_axis(scores, top, 1), axis=1, kind="stable")
    top = np.take_along_axis(top, order, 1)
    out_scores[:, :k_eff] = np.take_along_axis(scores, top, 1)
    out_ids[:, :k_eff] = np.take_along_axis(ids, top, 1)
    out_ids[~np.isfinite(out_scores)] = -1
    return pad_results(out_scores, out_ids)


def exact_topk_rows(
    queries: np.ndarray, vectors: np.ndarray, rows: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k over ``vectors[rows]``: (scores, row numbers into ``vectors``, -1 padded).

    Gathers ``EXACT_BLOCK`` rows at a time, so the temporary copy stays bounded however many
    rows there are.
    """
    found = []
    for block in row_blocks(rows):
        scores, hits = exact_topk(queries, vectors[block], k)
        found.append((scores, np.where(hits >= 0, block[hits], -1)))
    if len(found) == 1:
        return found[0]
    if not found:
        return empty_results(len(queries), k)
    return topk_of(np.hstack([f[0] for f in found]), np.hstack([f[1] for f in found]), k)


def row_blocks(rows: np.ndarray) -> list[np.ndarray]:
    """``rows`` cut into blocks of at most ``EXACT_BLOCK`` (bounds gathered copies)."""
    return [rows[lo : lo + EXACT_BLOCK] for lo in range(0, len(rows), EXACT_BLOCK)]


def bitmap_selector(n_slots: int, slots: np.ndarray) -> tuple[faiss.IDSelector, np.ndarray]:
    """An ``IDSelectorBitmap`` over slots [0, n_slots) with ``slots`` set.

    Returns the bitmap too: faiss keeps a raw pointer to it, so the caller must hold it alive
    for as long as the selector is used.
    """
    mask = np.zeros(max(n_slots, 1), dtype=bool)
    mask[slots] = True
    bits = np.packbits(mask, bitorder="little")
    return faiss.IDSelectorBitmap(bits), bits


def tune_knob(
    ladder: Sequence[int],
    search: Callable[[int], np.ndarray],
    truth: np.ndarray,
    target: float,
) -> tuple[int, float]:
    """Smallest ladder value whose held-out recall@k reaches ``target``: (value, recall).

    ``search(value)`` returns the ids (m, k) found with the knob at ``value``; ``truth`` the
    exact ids. WHY tune at build time: the right efSearch/nprobe/pool depends on the data
    (cluster structure, intrinsic dimension), and a fixed default is either slow or misses.
    When no value reaches the target (lossy codes such as PQ cap the recall), take the smallest
    value within 0.01 of the best recall seen rather than the slowest setting for nothing.
    """
    recalls: list[float] = []
    for value in ladder:
        recalls.append(recall_at_k(search(value), truth))
        if recalls[-1] >= target:
            return value, recalls[-1]
    best = max(recalls)
    pick = next(i for i, r in enumerate(recalls) if r >= best - 0.01)
    return ladder[pick], recalls[pick]


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean fraction of the true top-k ids present in the found top-k (ids -1 ignored)."""
    hits = sum(len(np.intersect1d(f[f >= 0], t[t >= 0])) for f, t in zip(found, truth, strict=True))
    return hits / max(int((truth >= 0).sum()), 1)


def split_for_tuning(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(rest, held_out) row indices: the held-out rows serve as tuning queries.

    WHY held out rather than leave-one-out: a query that is itself in an HNSW graph lands on
    its own node whose links are its neighbours, which flatters recall; a held-out query is
    what the app sends. The held-out rows are added back after tuning.
    """
    rng = np.random.default_rng(seed)
    held = np.sort(rng.choice(n, size=min(TUNE_QUERIES, n // 10), replace=False))
    rest = np.setdiff1d(np.arange(n), held, assume_unique=True)
    return rest, held


def clustered_unit_vectors(
    n: int,
    dim: int,
    *,
    n_clusters: int = 1000,
    latent: int = 256,
    power: float = 0.5,
    spread: float = 0.7,
    noise: float = 0.7,
    seed: int = 0,
) -> np.ndarray:
    """Synthetic embedding-like data: (n, dim) float32, L2-normalised, for tests and benchmarks.

    Gaussian clusters in a ``latent``-dim subspace with a power-law spectrum (image embeddings
    concentrate their variance in few directions, which is what ANN structures and PCA exploit),
    embedded in ``dim`` dims, plus isotropic noise (``noise`` ~ its norm relative to the signal).
    Uniform random vectors would be the wrong test: in high dimension all their neighbours are
    equidistant, so no index beats brute force and recall is meaningless.
    """
    rng = np.random.default_rng(seed)
    latent = min(latent, dim)
    scale = (np.arange(1, latent + 1) ** -power).astype(np.float32)
    centres = rng.standard_normal((n_clusters, latent), dtype=np.float32) * scale
    basis, _ = np.linalg.qr(rng.standard_normal((dim, latent)).astype(np.float32))
    z = centres[rng.integers(0, n_clusters, n)]
    z += spread * rng.standard_normal((n, latent), dtype=np.float32) * scale
    x = z @ basis.T
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    x += noise / np.sqrt(dim) * rng.standard_normal((n, dim), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x
