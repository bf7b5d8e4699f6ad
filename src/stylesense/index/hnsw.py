"""Graph index: faiss ``IndexHNSWFlat`` (inner product), with tombstones for removal.

faiss HNSW cannot delete nodes. A removed or replaced item's node becomes a tombstone (see
``SlotIndex``), hidden from every search by an ``IDSelectorBitmap`` over live slots, and the
graph is rebuilt from the live vectors once tombstones exceed ``compact_fraction`` of the
nodes (amortised; until then tombstoned nodes still route searches well).

``ef_search`` is tuned at build time on held-out build vectors for recall@10 >=
``target_recall``. Filtered searches raise efSearch by 1/selectivity (the walk keeps only
allowed nodes, so it must visit proportionally more), and scan the allowed vectors exactly
when that costs fewer distance computations than the walk (~efSearch * M).
"""

from __future__ import annotations

import math

import faiss
import numpy as np

from .exact import exact_topk_rows, fill_short_rows, pad_results, row_blocks
from .slots import SlotIndex
from .tuning import TUNE_K, TUNE_MARGIN, TUNE_MIN_ITEMS, split_for_tuning, tune_knob

EF_LADDER = (16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512)
SMALL_INDEX_EF = 128
"""efSearch below TUNE_MIN_ITEMS items: recall ~1 there and the walk is cheap anyway."""


class HNSWIndex(SlotIndex):
    """Approximate inner-product index over a navigable small-world graph."""

    kind = "hnsw"

    def __init__(
        self,
        dim: int,
        *,
        m: int = 32,
        ef_construction: int = 80,
        ef_search: int | None = None,
        target_recall: float = 0.95,
        compact_fraction: float = 0.2,
        seed: int = 0,
    ):
        self.m = m
        self.ef_construction = ef_construction
        self._ef_param = ef_search
        self.ef_search = ef_search or SMALL_INDEX_EF
        self.target_recall = target_recall
        self.compact_fraction = compact_fraction
        self.seed = seed
        super().__init__(dim)

    def _new_faiss(self) -> faiss.Index:
        index = faiss.IndexHNSWFlat(self.dim, self.m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = self.ef_construction
        return index

    @property
    def _storage(self) -> faiss.Index:
        return self._index.storage

    def _build(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        self._reset()
        if self._ef_param is not None or len(ids) < TUNE_MIN_ITEMS:
            self.ef_search = self._ef_param or SMALL_INDEX_EF
            self.add(ids, vectors)
            return
        rest, held = split_for_tuning(len(ids), self.seed)
        for block in row_blocks(rest):
            self.add(ids[block], vectors[block])
        truth = ids[exact_topk_rows(vectors[held], vectors, rest, TUNE_K)[1]]
        self.ef_search, _ = tune_knob(
            EF_LADDER,
            lambda ef: self._to_ids(self._index.search(
                vectors[held], TUNE_K, params=faiss.SearchParametersHNSW(efSearch=ef))[1]),
            truth,
            min(1.0, self.target_recall + TUNE_MARGIN),
        )
        self.add(ids[held], vectors[held])

    def _search_slots(
        self, queries: np.ndarray, k: int, sel: faiss.IDSelector | None, n_eligible: int
    ) -> tuple[np.ndarray, np.ndarray]:
        ef = max(self.ef_search, k)
        if n_eligible < len(self):  # filtered: the walk must visit 1/selectivity more nodes
            ef = max(k, math.ceil(ef * len(self) / n_eligible))
        if n_eligible <= ef * self.m:  # a walk computes ~ef*M distances, a scan n_eligible
            return self._exact(queries, k, sel)
        params = faiss.SearchParametersHNSW(sel=sel, efSearch=ef)
        scores, slots = pad_results(*self._index.search(queries, k, params=params))
        fill_short_rows(scores, slots, min(k, n_eligible), lambda rows: self._exact(queries[rows], k, sel))
        return scores, slots

    def _state(self) -> tuple[dict, dict[str, np.ndarray]]:
        header = {
            "m": self.m, "ef_construction": self.ef_construction, "ef_search": self.ef_search,
            "ef_param": self._ef_param, "target_recall": self.target_recall,
            "compact_fraction": self.compact_fraction, "seed": self.seed,
        }
        return header, self._slot_arrays()

    @classmethod
    def _restore(cls, header: dict, arrays: dict[str, np.ndarray]) -> HNSWIndex:
        index = cls(
            header["dim"], m=header["m"], ef_construction=header["ef_construction"],
            ef_search=header["ef_param"], target_recall=header["target_recall"],
            compact_fraction=header["compact_fraction"], seed=header["seed"],
        )
        index.ef_search = header["ef_search"]
        index._load_slots(arrays)
        return index
