"""ALS: matrix factorisation for implicit feedback (Hu, Koren & Volinsky 2008), via implicit.

Each (user, item) with event weight w gets confidence ``1 + alpha * w`` that the user likes the
item; pairs with no events have confidence 1 and preference 0. Fitting alternates least-squares
solves for user and item factors (implicit's CPU conjugate-gradient solver). A user's score for
an item is the dot product of their factors.

Real time: when ``update`` changes a user's history, their factor is recomputed by an exact
least-squares fold-in against the fixed item factors,
``x_u = (YtY + Yt(C_u - I)Y + reg I)^-1 Yt C_u p_u`` (implicit's ``recalculate_user``), so the
next ``recommend`` reflects the new behaviour, for new shoppers too, without a refit.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from implicit.cpu.als import AlternatingLeastSquares
from scipy import sparse
from threadpoolctl import threadpool_limits

from stylesense.errors import InvalidInput
from stylesense.recommenders.base import Recommender
from stylesense.recommenders.data import Interactions


class ALS(Recommender):
    """Implicit-feedback ALS with confidence weighting and fold-in of updated users.

    Parameters: ``factors``, ``regularization`` (L2 on both factor matrices), ``alpha``
    (confidence = 1 + alpha * event weight), ``iterations``, ``seed`` (initial factors; the fit
    is deterministic for a given seed), ``threads`` (implicit's solver threads; results do not
    depend on it).
    """

    name = "als"
    updatable = True
    defaults = {"factors": 64, "regularization": 10.0, "alpha": 2.0, "iterations": 15, "seed": 0, "threads": 2}

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        p = self.params
        require_int(p, "factors", 1, self.name)
        require_int(p, "iterations", 1, self.name)
        require_int(p, "seed", 0, self.name)
        require_int(p, "threads", 1, self.name)
        require_float(p, "regularization", 0.0, self.name, strict=False)
        require_float(p, "alpha", 0.0, self.name, strict=False)

    @classmethod
    def search_space(cls, trial: Any) -> dict[str, Any]:
        return {
            "factors": trial.suggest_int("factors", 16, 256, log=True),
            "regularization": trial.suggest_float("regularization", 1e-2, 100.0, log=True),
            "alpha": trial.suggest_float("alpha", 0.1, 100.0, log=True),
            "iterations": trial.suggest_int("iterations", 5, 30),
        }

    def _confidence(self, rows: sparse.csr_matrix) -> sparse.csr_matrix:
        c = sparse.csr_matrix(rows, dtype=np.float32, copy=True)
        c.data = 1.0 + np.float32(self.params["alpha"]) * c.data
        return c

    def _solver(self) -> AlternatingLeastSquares:
        with threadpool_limits(1, "blas"):  # implicit warns when BLAS runs its own threads
            return AlternatingLeastSquares(
                factors=self.params["factors"],
                regularization=self.params["regularization"],
                alpha=1.0,  # the confidence is computed here: 1 + alpha * w
                dtype=np.float32,
                iterations=self.params["iterations"],
                num_threads=self.params["threads"],
                random_state=self.params["seed"],
            )

    def _fit(self, data: Interactions) -> None:
        self._als = self._solver()
        with threadpool_limits(1, "blas"):
            self._als.fit(self._confidence(data.matrix), show_progress=False)
        self.user_factors = np.ascontiguousarray(self._als.user_factors, dtype=np.float32)
        self.item_factors = np.ascontiguousarray(self._als.item_factors, dtype=np.float32)
        self._item_norms = None

    def fold_in(self, rows: sparse.csr_matrix) -> np.ndarray:
        """User factors from history rows (one per user), item factors held fixed."""
        rows = sparse.csr_matrix(rows)
        if rows.shape[0] == 0:
            return np.zeros((0, self.item_factors.shape[1]), np.float32)
        with threadpool_limits(1, "blas"):
            x = self._als.recalculate_user(np.arange(rows.shape[0]), self._confidence(rows))
        return np.asarray(x, dtype=np.float32).reshape(rows.shape[0], -1)

    def _updated(self, users: np.ndarray, events) -> None:
        n = len(self.user_ids)
        if self.user_factors.shape[0] < n:
            grow = np.zeros((n - self.user_factors.shape[0], self.user_factors.shape[1]), np.float32)
            self.user_factors = np.vstack([self.user_factors, grow])
        if len(users):
            self.user_factors[users] = self.fold_in(self.history[users])

    def _scores(self, users: np.ndarray, history: sparse.csr_matrix) -> np.ndarray:
        known = users < self.user_factors.shape[0]
        x = np.zeros((len(users), self.item_factors.shape[1]), np.float32)
        x[known] = self.user_factors[users[known]]
        if not known.all():  # not expected (update folds users in), but never index past the end
            x[~known] = self.fold_in(history[np.flatnonzero(~known)])
        return x @ self.item_factors.T

    def _similar(self, item: int) -> np.ndarray:
        if self._item_norms is None:
            self._item_norms = np.linalg.norm(self.item_factors, axis=1)
        return factor_cosine(self.item_factors, self._item_norms, item)

    def _state(self) -> dict[str, np.ndarray]:
        return {"user_factors": self.user_factors, "item_factors": self.item_factors}

    def _restore(self, state: dict[str, np.ndarray]) -> None:
        self.user_factors = np.array(state["user_factors"], dtype=np.float32)
        self.item_factors = np.array(state["item_factors"], dtype=np.float32)
        self._item_norms = None
        self._als = self._solver()
        self._als.item_factors = self.item_factors
        self._als.user_factors = self.user_factors


def factor_cosine(factors: np.ndarray, norms: np.ndarray, item: int) -> np.ndarray:
    """Cosine similarity of one item's factor vector to every item's."""
    return (factors @ factors[item]) / np.maximum(norms * norms[item], 1e-9)


def require_int(params: dict[str, Any], key: str, low: int, model: str) -> None:
    """Check (in place) that ``params[key]`` is an integer >= ``low``; ValueError if not."""
    value = params[key]
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise InvalidInput(f"{model}: {key} must be an integer >= {low}, got {value!r}")
    params[key] = int(value)


def require_float(params: dict[str, Any], key: str, low: float, model: str, *, strict: bool = True) -> None:
    """Check (in place) that ``params[key]`` is a finite number > ``low`` (>= when not strict)."""
    value = params[key]
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    ok = ok and np.isfinite(value) and (value > low if strict else value >= low)
    if not ok:
        raise InvalidInput(f"{model}: {key} must be a number {'>' if strict else '>='} {low}, got {value!r}")
    params[key] = float(value)
