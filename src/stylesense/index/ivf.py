"""Inverted-file index: faiss ``IndexIVF*`` with inner product and native ids.

k-means splits the catalogue into ``nlist`` ~ 4*sqrt(n) cells; a query scans the ``nprobe``
nearest cells. ``nprobe`` is tuned at build time on held-out build vectors for recall@10 >=
``target_recall``. Ids are stored natively (``add_with_ids``/``remove_ids``) with a hashtable
direct map so ``vectors()`` can reconstruct by id.

``codec`` trades memory for recall: ``flat`` (float32, exact distances inside the probed
cells), ``fp16``/``sq8`` (scalar quantisation, 2x/4x smaller), ``pq`` (product quantisation,
``pq_m`` bytes a vector; ``vectors()`` then returns the lossy reconstruction).
"""

from __future__ import annotations

import math

import faiss
import numpy as np

from stylesense.errors import InvalidInput

from .exact import empty_results, exact_topk_rows, fill_short_rows, pad_results, row_blocks
from .idmap import IdMap
from .memory import InMemoryIndex
from .tuning import TUNE_K, TUNE_MARGIN, TUNE_MIN_ITEMS, split_for_tuning, tune_knob

CODECS = ("flat", "fp16", "sq8", "pq")
KMEANS_ITERATIONS = 10
"""k-means iterations: recall barely moves past ~10, training time is linear in it."""
TRAIN_POINTS_PER_LIST = 48
"""Training sample per list: faiss asks >= 39; more only slows k-means on 2 cores."""


def default_nlist(n: int) -> int:
    """4*sqrt(n) lists, but at least ~8 items a list so small catalogues still cluster."""
    return max(1, min(round(4 * math.sqrt(n)), n // 8))


class IVFIndex(InMemoryIndex):
    """Approximate inner-product index over k-means cells."""

    kind = "ivf"

    def __init__(
        self,
        dim: int,
        *,
        nlist: int | None = None,
        nprobe: int | None = None,
        codec: str = "flat",
        pq_m: int | None = None,
        target_recall: float = 0.95,
        seed: int = 0,
    ):
        if codec not in CODECS:
            raise InvalidInput(f"codec must be one of {CODECS}, got {codec!r}")
        self.dim = dim
        self.codec = codec
        self.pq_m = pq_m or max(1, dim // 8)
        if codec == "pq" and dim % self.pq_m:
            raise InvalidInput(f"pq_m={self.pq_m} must divide dim={dim}")
        self.target_recall = target_recall
        self.seed = seed
        self._nlist_param, self._nprobe_param = nlist, nprobe
        self.nprobe = nprobe or 1
        self._index: faiss.IndexIVF | None = None
        self._ids = IdMap()

    @property
    def nlist(self) -> int:
        return self._index.nlist if self._index is not None else 0

    def _build(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        self._index, self._ids = None, IdMap()
        if len(ids) == 0:
            return
        self._train(vectors)
        if self._nprobe_param is not None or len(ids) < TUNE_MIN_ITEMS:
            self.nprobe = min(self._nprobe_param or self.nlist, self.nlist)
            self.add(ids, vectors)
            return
        rest, held = split_for_tuning(len(ids), self.seed)
        for block in row_blocks(rest):
            self.add(ids[block], vectors[block])
        truth = ids[exact_topk_rows(vectors[held], vectors, rest, TUNE_K)[1]]
        ladder = sorted({p for p in (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256)
                         if p < self.nlist} | {self.nlist})
        self.nprobe, _ = tune_knob(
            ladder,
            lambda p: self._index.search(vectors[held], TUNE_K, params=faiss.SearchParametersIVF(nprobe=p))[1],
            truth,
            min(1.0, self.target_recall + TUNE_MARGIN),
        )
        self.add(ids[held], vectors[held])

    def _train(self, vectors: np.ndarray) -> None:
        nlist = min(self._nlist_param or default_nlist(len(vectors)), len(vectors))
        quantizer = faiss.IndexFlatIP(self.dim)
        ip = faiss.METRIC_INNER_PRODUCT
        if self.codec == "flat":
            index = faiss.IndexIVFFlat(quantizer, self.dim, nlist, ip)
        elif self.codec == "pq":
            index = faiss.IndexIVFPQ(quantizer, self.dim, nlist, self.pq_m, 8, ip)
        else:
            qtype = faiss.ScalarQuantizer.QT_fp16 if self.codec == "fp16" else faiss.ScalarQuantizer.QT_8bit
            index = faiss.IndexIVFScalarQuantizer(quantizer, self.dim, nlist, qtype, ip)
        index.cp.niter = KMEANS_ITERATIONS
        index.cp.seed = self.seed
        index.cp.min_points_per_centroid = 1  # small catalogues: no faiss warning spam
        index.cp.max_points_per_centroid = TRAIN_POINTS_PER_LIST
        if self.codec == "pq":
            index.pq.cp.max_points_per_centroid = TRAIN_POINTS_PER_LIST * 4
        index.train(vectors)
        index.set_direct_map_type(faiss.DirectMap.Hashtable)
        self._index = index

    def _add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids) == 0:
            return
        if self._index is None:  # built empty: the first batch trains the cells
            self._train(vectors)
            self.nprobe = min(self._nprobe_param or self.nlist, self.nlist)
        present = self._ids.lookup(ids) >= 0
        if present.any():
            self._index.remove_ids(faiss.IDSelectorArray(ids[present]))
        self._index.add_with_ids(vectors, ids)
        self._ids.insert(ids[~present])

    def remove(self, ids: np.ndarray) -> None:
        gone = self._ids.delete(np.asarray(ids, dtype=np.int64).reshape(-1))
        if len(gone):
            # IDSelectorArray: the hashtable direct map only supports removal by id list.
            self._index.remove_ids(faiss.IDSelectorArray(gone))

    def _search(
        self, queries: np.ndarray, k: int, allowed: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        if k == 0 or len(self) == 0:
            return empty_results(len(queries), k)
        sel, n_eligible, nprobe = None, len(self), self.nprobe
        if allowed is not None:
            n_eligible, sel = self._filter(allowed)
            if n_eligible == 0:
                return empty_results(len(queries), k)
            # Scan 1/selectivity times more cells so the probed cells hold as many allowed
            # items as an unfiltered search sees; at nprobe == nlist this is exact.
            nprobe = min(self.nlist, math.ceil(nprobe * len(self) / n_eligible))
        scores, ids = pad_results(*self._index.search(
            queries, k, params=faiss.SearchParametersIVF(sel=sel, nprobe=nprobe)))

        def exhaustive(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            params = faiss.SearchParametersIVF(sel=sel, nprobe=self.nlist)
            return pad_results(*self._index.search(queries[rows], k, params=params))

        fill_short_rows(scores, ids, min(k, n_eligible), exhaustive)
        return scores, ids

    def _make_filter(self, slots: np.ndarray) -> faiss.IDSelector:
        return faiss.IDSelectorBatch(slots)  # slots are the ids themselves here

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        ids, _ = self._check_known(ids)
        return self._index.reconstruct_batch(ids)

    def _id_map(self) -> IdMap:
        return self._ids

    def _state(self) -> tuple[dict, dict[str, np.ndarray]]:
        header = {
            "nlist": self._nlist_param, "nprobe": self.nprobe, "nprobe_param": self._nprobe_param,
            "codec": self.codec, "pq_m": self.pq_m, "target_recall": self.target_recall,
            "seed": self.seed,
        }
        arrays = {"ids": self._ids.keys}
        if self._index is not None:
            arrays["faiss"] = faiss.serialize_index(self._index)
        return header, arrays

    @classmethod
    def _restore(cls, header: dict, arrays: dict[str, np.ndarray]) -> IVFIndex:
        index = cls(
            header["dim"], nlist=header["nlist"], nprobe=header["nprobe_param"],
            codec=header["codec"], pq_m=header["pq_m"], target_recall=header["target_recall"],
            seed=header["seed"],
        )
        index.nprobe = header["nprobe"]
        if "faiss" in arrays:
            index._index = faiss.deserialize_index(arrays["faiss"])
        index._ids = IdMap(arrays["ids"])
        return index
