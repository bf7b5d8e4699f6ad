"""The seed paper's KD-tree, made usable: scikit-learn ``KDTree`` over PCA-reduced vectors.

KD-trees degrade to a brute-force scan above ~20-30 dimensions, and CNN embeddings have
hundreds to thousands. So the tree indexes a PCA projection (``pca_dim`` components, where the
variance of embeddings concentrates) and serves only as a candidate generator: it returns a
``pool`` of neighbours in PCA space, which are re-ranked by the exact inner product on the full
vectors. ``pool`` is tuned at build time on held-out build vectors for recall@10 >=
``target_recall``.

Updates avoid rebuilding the tree: removed items become tombstones (masked at re-rank time)
and added items go to a delta buffer that every query scans exactly. When delta + tombstones
exceed ``merge_fraction`` of the live items, PCA and tree are rebuilt from the live vectors.
"""

from __future__ import annotations

import math

import numpy as np
from sklearn.neighbors import KDTree

from .exact import empty_results, exact_topk_rows, fill_short_rows, topk_of
from .idmap import IdMap
from .memory import InMemoryIndex
from .tuning import TUNE_K, TUNE_MARGIN, TUNE_MIN_ITEMS, split_for_tuning, tune_knob

POOL_LADDER = (20, 40, 80, 160, 320, 640, 1280, 2560)
PCA_SAMPLE = 20000
"""Rows used to fit PCA: the covariance is stable well before that, and it bounds build time."""
RERANK_FLOATS = 1 << 24
"""Floats gathered at once when re-ranking candidate pools (64 MB)."""


class KDTreeIndex(InMemoryIndex):
    """PCA + KD-tree candidate generation, exact inner-product re-ranking."""

    kind = "kdtree"

    def __init__(
        self,
        dim: int,
        *,
        pca_dim: int = 64,
        pool: int | None = None,
        leaf_size: int = 40,
        merge_fraction: float = 0.1,
        target_recall: float = 0.95,
        seed: int = 0,
    ):
        self.dim = dim
        self.pca_dim = pca_dim
        self._pool_param = pool
        self.pool = pool or POOL_LADDER[-1]
        self.leaf_size = leaf_size
        self.merge_fraction = merge_fraction
        self.target_recall = target_recall
        self.seed = seed
        self._vecs = np.empty((0, dim), np.float32)  # slot -> vector (capacity-grown)
        self._labels = np.empty(0, np.int64)  # slot -> id, -1 = tombstone
        self._n_slots = 0
        self._ids = IdMap()  # id -> slot
        self._mean = np.zeros(dim, np.float32)
        self._components = np.empty((0, dim), np.float32)
        self._n_base = 0  # slots [0, n_base) are in the tree; the rest is the delta buffer
        self._tree: KDTree | None = None

    # --- content ----------------------------------------------------------------------------
    def _build(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if self._pool_param is not None or len(ids) < TUNE_MIN_ITEMS:
            self.pool = self._pool_param or POOL_LADDER[-1]
            self._rebuild(ids.copy(), vectors.copy())  # the caller's arrays stay the caller's
            return
        rest, held = split_for_tuning(len(ids), self.seed)
        self._rebuild(ids[rest], vectors[rest])
        truth = ids[exact_topk_rows(vectors[held], vectors, rest, TUNE_K)[1]]

        def search_with(pool: int) -> np.ndarray:
            self.pool = pool
            return self.search(vectors[held], TUNE_K)[1]

        self.pool, _ = tune_knob(POOL_LADDER, search_with, truth, min(1.0, self.target_recall + TUNE_MARGIN))
        self.add(ids[held], vectors[held])

    def _rebuild(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Fit PCA and the tree on exactly these items (no delta, no tombstones); keeps the arrays."""
        n = len(ids)
        self._vecs, self._labels, self._n_slots = vectors, ids, n
        self._ids = IdMap(ids, np.arange(n))
        self._fit_pca(vectors)
        self._n_base = n
        self._tree = KDTree(self._project(vectors), leaf_size=self.leaf_size) if n else None

    def _fit_pca(self, vectors: np.ndarray) -> None:
        if len(vectors) > PCA_SAMPLE:
            rng = np.random.default_rng(self.seed)
            vectors = vectors[rng.choice(len(vectors), PCA_SAMPLE, replace=False)]
        self._mean = vectors.mean(axis=0) if len(vectors) else np.zeros(self.dim, np.float32)
        centred = vectors - self._mean
        _, eigvecs = np.linalg.eigh((centred.T @ centred).astype(np.float64))  # ascending
        p = min(self.pca_dim, self.dim)
        self._components = np.ascontiguousarray(eigvecs[:, ::-1][:, :p].T, dtype=np.float32)

    def _project(self, vectors: np.ndarray) -> np.ndarray:
        return vectors @ self._components.T - self._mean @ self._components.T  # no (n, dim) temporary

    def _add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids) == 0:
            return
        self._labels[self._ids.delete(ids)] = -1
        end = self._n_slots + len(ids)
        if end > len(self._vecs):  # grow capacity geometrically: amortised O(1) per item
            capacity = max(end, 2 * len(self._vecs))
            self._vecs = np.resize(self._vecs, (capacity, self.dim))
            self._labels = np.resize(self._labels, capacity)
        self._vecs[self._n_slots:end] = vectors
        self._labels[self._n_slots:end] = ids
        self._ids.insert(ids, np.arange(self._n_slots, end))
        self._n_slots = end
        self._maybe_merge()

    def remove(self, ids: np.ndarray) -> None:
        self._labels[self._ids.delete(np.asarray(ids, dtype=np.int64).reshape(-1))] = -1
        self._maybe_merge()

    def _maybe_merge(self) -> None:
        """Rebuild from live items once delta + tombstones exceed ``merge_fraction``."""
        n_live = len(self._ids)
        stale = (self._n_slots - self._n_base) + (self._n_slots - n_live)
        if stale > self.merge_fraction * n_live:
            live = np.flatnonzero(self._labels[: self._n_slots] >= 0)
            self._rebuild(self._labels[live], self._vecs[live])

    # --- search -------------------------------------------------------------------------------
    def _search(
        self, queries: np.ndarray, k: int, allowed: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        n_live = len(self._ids)
        if k == 0 or n_live == 0:
            return empty_results(len(queries), k)
        if allowed is None:
            n_eligible, eligible = n_live, self._labels[: self._n_slots] >= 0
        else:
            n_eligible, eligible = self._filter(allowed)
        if n_eligible == 0:
            return empty_results(len(queries), k)
        # Inflate the pool by 1/selectivity (filter and tombstones) so it still holds ~pool
        # eligible candidates; below ~4 pools of eligible items an exact scan is cheaper.
        pool = math.ceil(max(self.pool, k) * self._n_base / max(int(eligible[: self._n_base].sum()), 1))
        if self._tree is None or pool >= self._n_base or n_eligible <= 4 * pool:
            scores, slots = self._exact(queries, k, np.flatnonzero(eligible))
        else:
            scores, slots = self._tree_search(queries, k, pool, eligible)
            fill_short_rows(scores, slots, min(k, n_eligible),
                            lambda rows: self._exact(queries[rows], k, np.flatnonzero(eligible)))
        return scores, np.where(slots >= 0, self._labels[slots], -1)

    def _tree_search(
        self, queries: np.ndarray, k: int, pool: int, eligible: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Tree candidates + eligible delta items, re-ranked exactly: (scores, slots)."""
        candidates = self._tree.query(self._project(queries), k=pool, return_distance=False)
        delta = self._n_base + np.flatnonzero(eligible[self._n_base :])
        scores = np.empty(candidates.shape, np.float32)
        step = max(1, RERANK_FLOATS // (pool * self.dim))
        for lo in range(0, len(queries), step):
            block = candidates[lo : lo + step]
            scores[lo : lo + step] = np.einsum("cpd,cd->cp", self._vecs[block], queries[lo : lo + step])
        scores[~eligible[candidates]] = -np.inf
        if len(delta):
            candidates = np.hstack([candidates, np.broadcast_to(delta, (len(queries), len(delta)))])
            scores = np.hstack([scores, queries @ self._vecs[delta].T])
        return topk_of(scores, candidates, k)

    def _exact(self, queries: np.ndarray, k: int, slots: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k over these slots: (scores, slots)."""
        return exact_topk_rows(queries, self._vecs, slots, k)

    def _make_filter(self, slots: np.ndarray) -> np.ndarray:
        eligible = np.zeros(self._n_slots, dtype=bool)
        eligible[slots] = True
        return eligible

    # --- accessors ----------------------------------------------------------------------------
    def vectors(self, ids: np.ndarray) -> np.ndarray:
        _, slots = self._check_known(ids)
        return self._vecs[slots].copy()

    def _id_map(self) -> IdMap:
        return self._ids

    def _state(self) -> tuple[dict, dict[str, np.ndarray]]:
        header = {
            "pca_dim": self.pca_dim, "pool": self.pool, "pool_param": self._pool_param,
            "leaf_size": self.leaf_size, "merge_fraction": self.merge_fraction,
            "target_recall": self.target_recall, "seed": self.seed, "n_base": self._n_base,
        }
        arrays = {
            "vectors": self._vecs[: self._n_slots], "labels": self._labels[: self._n_slots],
            "mean": self._mean, "components": self._components,
        }
        return header, arrays

    @classmethod
    def _restore(cls, header: dict, arrays: dict[str, np.ndarray]) -> KDTreeIndex:
        index = cls(
            header["dim"], pca_dim=header["pca_dim"], pool=header["pool_param"],
            leaf_size=header["leaf_size"], merge_fraction=header["merge_fraction"],
            target_recall=header["target_recall"], seed=header["seed"],
        )
        index.pool = header["pool"]
        index._vecs = np.ascontiguousarray(arrays["vectors"], dtype=np.float32)
        index._labels = arrays["labels"].astype(np.int64)
        index._n_slots = len(index._labels)
        live = np.flatnonzero(index._labels >= 0)
        index._ids = IdMap(index._labels[live], live)
        index._mean, index._components = arrays["mean"], arrays["components"]
        index._n_base = header["n_base"]
        if index._n_base:
            index._tree = KDTree(index._project(index._vecs[: index._n_base]), leaf_size=index.leaf_size)
        return index
