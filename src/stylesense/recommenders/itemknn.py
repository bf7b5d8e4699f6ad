"""Item-kNN: "shoppers who interacted with this also interacted with that".

Fitting computes an item x item similarity over who interacted with what (cosine, or BM25
weighted), keeping the top ``neighbours`` of each item (implicit's ``all_pairs_knn``). A user's
scores are their history row times that matrix, so events added by ``update`` count on the next
``recommend`` without a refit.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from implicit.nearest_neighbours import all_pairs_knn, bm25_weight, normalize
from scipy import sparse
from threadpoolctl import threadpool_limits

from stylesense.errors import InvalidInput
from stylesense.recommenders.als import require_float, require_int
from stylesense.recommenders.base import Recommender
from stylesense.recommenders.data import Interactions

SIMILARITIES = ("cosine", "bm25")


class ItemKNN(Recommender):
    """Item-item nearest neighbours over the interaction matrix.

    Parameters: ``similarity`` ("cosine" or "bm25"), ``neighbours`` (top-K other items kept per
    item), ``K1`` and ``B`` (BM25 saturation and length normalisation; unused for cosine),
    ``threads`` (for the similarity computation; the result does not depend on it).
    """

    name = "itemknn"
    updatable = True
    defaults = {"similarity": "cosine", "neighbours": 100, "K1": 1.2, "B": 0.75, "threads": 2}

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        p = self.params
        if p["similarity"] not in SIMILARITIES:
            raise InvalidInput(f"itemknn: similarity must be one of {', '.join(SIMILARITIES)}, got {p['similarity']!r}")
        require_int(p, "neighbours", 1, self.name)
        require_int(p, "threads", 1, self.name)
        require_float(p, "K1", 0.0, self.name)
        require_float(p, "B", 0.0, self.name, strict=False)
        if p["B"] > 1.0:
            raise InvalidInput(f"itemknn: B must be in [0, 1], got {p['B']}")

    @classmethod
    def search_space(cls, trial: Any) -> dict[str, Any]:
        """Optuna-suggested parameters (K1/B only when BM25 is chosen)."""
        params: dict[str, Any] = {
            "similarity": trial.suggest_categorical("similarity", list(SIMILARITIES)),
            "neighbours": trial.suggest_int("neighbours", 5, 500, log=True),
        }
        if params["similarity"] == "bm25":
            params["K1"] = trial.suggest_float("K1", 0.1, 100.0, log=True)
            params["B"] = trial.suggest_float("B", 0.0, 1.0)
        return params

    def _fit(self, data: Interactions) -> None:
        m = data.matrix
        if m.nnz == 0:
            self.similarity = sparse.csr_matrix((data.n_items, data.n_items), dtype=np.float32)
            return
        if self.params["similarity"] == "bm25":
            weighted = bm25_weight(m.T, self.params["K1"], self.params["B"]).T
        else:
            weighted = normalize(m.T).T
        weighted = sparse.csr_matrix(weighted, dtype=np.float64)
        weighted.eliminate_zeros()
        with threadpool_limits(1, "blas"):
            # K counts the item itself (its own best neighbour); drop it afterwards.
            sim = all_pairs_knn(
                weighted, self.params["neighbours"] + 1, show_progress=False, num_threads=self.params["threads"]
            ).tocsr()
        sim.setdiag(0)
        sim.eliminate_zeros()
        self.similarity = sparse.csr_matrix(sim, dtype=np.float32)
        self.similarity.sort_indices()

    def _scores(self, users: np.ndarray, history: sparse.csr_matrix) -> np.ndarray:
        return (history @ self.similarity).toarray().astype(np.float32, copy=False)

    def _similar(self, item: int) -> np.ndarray:
        return self.similarity[item].toarray().ravel()

    def _reasons(self, user: int, items: np.ndarray, nameable: np.ndarray | None) -> list[str | None]:
        """Per item, the history item that contributes most to its score."""
        row = self.history[user]
        if row.nnz == 0:
            return [None] * len(items)
        contrib = row.data[:, None] * self.similarity[row.indices][:, np.asarray(items)].toarray()
        if nameable is not None:
            contrib[~nameable[row.indices]] = -np.inf
        best = contrib.argmax(axis=0)
        return [
            f"similar to {self.item_ids[row.indices[b]]} you interacted with" if contrib[b, j] > 0 else None
            for j, b in enumerate(best.tolist())
        ]

    def _state(self) -> dict[str, np.ndarray]:
        s = self.similarity
        return {"sim_indptr": s.indptr, "sim_indices": s.indices, "sim_data": s.data}

    def _restore(self, state: dict[str, np.ndarray]) -> None:
        n = self.data.n_items
        self.similarity = sparse.csr_matrix(
            (state["sim_data"], state["sim_indices"], state["sim_indptr"]), shape=(n, n)
        )

