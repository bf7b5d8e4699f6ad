"""BPR: matrix factorisation trained to rank a user's items above the rest (Rendle et al. 2009),
via implicit's CPU implementation.

implicit learns ``factors + 1`` columns: the last item column is an item bias and the last user
column is fixed at 1, so ``user_factors @ item_factors.T`` already includes the bias. Only
which items a user touched matters (event weights are ignored by the sampler).

Real time: BPR has no closed-form fold-in, so ``update`` does not change the scores of users
seen at fit time (``updatable`` is False). Shoppers first seen in ``update`` get, instead of the
popularity list, a user vector built from their history: the weighted mean of their items'
factors, scaled to the typical length of a trained user vector, with the bias column at 1.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from implicit.cpu.bpr import BayesianPersonalizedRanking
from scipy import sparse
from threadpoolctl import threadpool_limits

from stylesense.recommenders.als import factor_cosine, require_float, require_int
from stylesense.recommenders.base import Recommender
from stylesense.recommenders.data import Interactions


class BPR(Recommender):
    """Bayesian Personalized Ranking matrix factorisation.

    Parameters: ``factors``, ``learning_rate``, ``regularization``, ``iterations`` (epochs over
    the interactions), ``seed``, ``threads``. implicit's SGD runs lock-free over threads, so only
    ``threads=1`` (the default) gives the same model for the same seed; more threads fit faster.
    """

    name = "bpr"
    updatable = False
    defaults = {
        "factors": 64,
        "learning_rate": 0.01,
        "regularization": 0.01,
        "iterations": 100,
        "seed": 0,
        "threads": 1,
    }

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        p = self.params
        require_int(p, "factors", 1, self.name)
        require_int(p, "iterations", 1, self.name)
        require_int(p, "seed", 0, self.name)
        require_int(p, "threads", 1, self.name)
        require_float(p, "learning_rate", 0.0, self.name)
        require_float(p, "regularization", 0.0, self.name, strict=False)

    @classmethod
    def search_space(cls, trial: Any) -> dict[str, Any]:
        return {
            "factors": trial.suggest_int("factors", 16, 256, log=True),
            "learning_rate": trial.suggest_float("learning_rate", 1e-3, 0.2, log=True),
            "regularization": trial.suggest_float("regularization", 1e-5, 0.1, log=True),
            "iterations": trial.suggest_int("iterations", 20, 400, log=True),
        }

    def _fit(self, data: Interactions) -> None:
        p = self.params
        with threadpool_limits(1, "blas"):
            model = BayesianPersonalizedRanking(
                factors=p["factors"],
                learning_rate=p["learning_rate"],
                regularization=p["regularization"],
                dtype=np.float32,
                iterations=p["iterations"],
                num_threads=p["threads"],
                verify_negative_samples=True,
                random_state=p["seed"],
            )
            matrix = data.matrix.copy()
            matrix.sort_indices()
            model.fit(matrix, show_progress=False)
        self.user_factors = np.ascontiguousarray(model.user_factors, dtype=np.float32)
        self.item_factors = np.ascontiguousarray(model.item_factors, dtype=np.float32)
        self._derive()

    def _derive(self) -> None:
        """Caches computed from the factors (after fit and after load)."""
        y = self.item_factors[:, :-1]  # without the bias column
        self._item_norms = np.linalg.norm(y, axis=1)
        trained = self.user_factors[:, :-1]
        active = np.linalg.norm(trained, axis=1)
        self._user_norm = float(np.median(active[active > 0])) if (active > 0).any() else 1.0

    def fold_in(self, rows: sparse.csr_matrix) -> np.ndarray:
        """User vectors (with the bias column) for users not trained: the weight-averaged
        factors of their items, rescaled to the median length of a trained user vector."""
        rows = sparse.csr_matrix(rows, dtype=np.float32)
        x = np.asarray(rows @ self.item_factors[:, :-1], dtype=np.float32)
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        x = x * (self._user_norm / np.maximum(norms, 1e-12))
        return np.hstack([x, np.ones((len(x), 1), np.float32)])

    def _scores(self, users: np.ndarray, history: sparse.csr_matrix) -> np.ndarray:
        trained = users < self.user_factors.shape[0]
        x = np.empty((len(users), self.user_factors.shape[1]), np.float32)
        x[trained] = self.user_factors[users[trained]]
        if not trained.all():
            x[~trained] = self.fold_in(history[np.flatnonzero(~trained)])
        return x @ self.item_factors.T

    def _similar(self, item: int) -> np.ndarray:
        return factor_cosine(self.item_factors[:, :-1], self._item_norms, item)

    def _state(self) -> dict[str, np.ndarray]:
        return {"user_factors": self.user_factors, "item_factors": self.item_factors}

    def _restore(self, state: dict[str, np.ndarray]) -> None:
        self.user_factors = np.array(state["user_factors"], dtype=np.float32)
        self.item_factors = np.array(state["item_factors"], dtype=np.float32)
        self._derive()
