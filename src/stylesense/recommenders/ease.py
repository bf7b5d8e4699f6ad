"""EASE^R (Steck, "Embarrassingly Shallow Autoencoders for Sparse Data", WWW 2019).

One item-item weight matrix in closed form: with ``P = (X^T X + l2 I)^-1``,
``B = I - P / diag(P)`` (column j divided by ``P_jj``), so ``diag(B) = 0`` and an item never
predicts itself. A shopper's scores are ``history_row @ B``: the model reads the current history
row, so real-time ``update`` events change the next recommendation without a retrain, and a
brand-new shopper with a few views is served like anyone else.

Cost: ``X^T X`` is n_items x n_items dense and the inverse is O(n^3). ``max_items`` caps n:
EASE is fitted on the most popular items only (see :meth:`EASE._index` for what the rest get).
Measured on 2 cores, float32: MovieLens-100K (1,682 items) fits in 0.1 s; on the H&M sample,
8,000 items 3 s / 0.26 GB, 10,000 items 6 s / 0.4 GB, all 16,378 items 24 s / 1.1 GB (B in
memory, and again as the saved file). The default cap of 10,000 keeps a fit in seconds and the
model under half a GB; on the H&M sample the items past it (bought once or twice) gave no
measurable gain (hit@12 on the last 28 days: 0.045 at 8,000 items, 0.041 with all of them).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import sparse
from scipy.linalg import lapack

from stylesense.errors import InvalidInput
from stylesense.recommenders.base import Recommender
from stylesense.recommenders.data import Interactions


class EASE(Recommender):
    """Linear item-item autoencoder with an L2 penalty and a zero diagonal."""

    name = "ease"
    defaults = {"l2": 500.0, "binary": True, "max_items": 10000}
    updatable = True  # scores are history_row @ B

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        l2, binary, max_items = self.params["l2"], self.params["binary"], self.params["max_items"]
        if isinstance(l2, bool) or not isinstance(l2, (int, float)) or not np.isfinite(l2) or l2 <= 0:
            raise InvalidInput(f"ease: l2 must be a positive number, got {l2!r}")
        if not isinstance(binary, (bool, np.bool_)):
            raise InvalidInput(f"ease: binary must be true or false, got {binary!r}")
        if isinstance(max_items, bool) or not isinstance(max_items, (int, np.integer)) or max_items < 1:
            raise InvalidInput(f"ease: max_items must be a positive integer, got {max_items!r}")
        self.params.update(l2=float(l2), binary=bool(binary), max_items=int(max_items))

    @classmethod
    def search_space(cls, trial: Any) -> dict[str, Any]:
        # max_items is a memory/time budget, not a quality knob: left to the caller.
        return {
            "l2": trial.suggest_float("l2", 1.0, 1e4, log=True),
            "binary": trial.suggest_categorical("binary", [True, False]),
        }

    # -- fitting ----------------------------------------------------------------------
    def _fit(self, data: Interactions) -> None:
        n = data.n_items
        if n > self.params["max_items"]:
            # The most popular items (distinct users; ties by index), kept in index order.
            order = np.argsort(-self.popularity, kind="stable")
            self.kept = np.sort(order[: self.params["max_items"]]).astype(np.int64)
        else:
            self.kept = np.arange(n, dtype=np.int64)
        x = self._input(data.matrix.tocsc()[:, self.kept])
        self.B = ease_weights(x, self.params["l2"])
        self._index()

    def _index(self) -> None:
        self.pos = np.full(self.data.n_items, -1, dtype=np.int64)  # item -> row/column of B
        self.pos[self.kept] = np.arange(len(self.kept))
        self.rest = np.flatnonzero(self.pos < 0)
        # Items left out of B by max_items rank below every learned score, among themselves by
        # popularity (a fraction in [0, 0.5)). They stay finite on purpose: when a filter
        # (``allowed``) leaves only such tail items, the shopper still gets a list.
        pop = self.popularity[self.rest].astype(np.float32)
        self.rest_bonus = 0.5 * pop / (pop.max() + 1.0) if len(pop) else pop

    def _kept_columns(self, history: sparse.csr_matrix) -> sparse.csr_matrix:
        """``history``'s columns of the items in B: itself when B holds every item (a fancy
        column index of a CSR row costs more than the rest of a recommendation's bookkeeping)."""
        return history if len(self.rest) == 0 else history[:, self.kept]

    def _input(self, m: sparse.spmatrix) -> sparse.csr_matrix:
        m = sparse.csr_matrix(m, dtype=np.float32, copy=True)
        if self.params["binary"]:
            m.data = (m.data > 0).astype(np.float32)
        return m

    # -- scoring ----------------------------------------------------------------------
    def _scores(self, users: np.ndarray, history: sparse.csr_matrix) -> np.ndarray:
        learned = np.asarray(self._input(self._kept_columns(history)) @ self.B, dtype=np.float32)
        if len(self.rest) == 0:
            return learned
        out = np.empty((len(users), self.data.n_items), dtype=np.float32)
        out[:, self.kept] = learned
        floor = learned.min(axis=1, keepdims=True) - 1.0
        out[:, self.rest] = floor + self.rest_bonus[None, :]
        return out

    def _similar(self, item: int) -> np.ndarray:
        p = self.pos[item]
        if p < 0:  # not in B: fall back to co-occurrence
            return super()._similar(item)
        out = np.full(self.data.n_items, -np.inf, dtype=np.float32)
        out[self.kept] = self.B[p]  # row p: how much having `item` raises each other item
        return out

    def _reasons(self, user: int, items: np.ndarray, nameable: np.ndarray | None) -> list[str | None]:
        """Per item, the history item contributing most to its score (``x_r * B[r, item]``)."""
        row = self._input(self._kept_columns(self.history[[user]]))
        pos = self.pos[np.asarray(items, dtype=np.int64)]
        if row.nnz == 0:
            return [None] * len(pos)
        # Only the k columns of the history's rows of B (np.ix_), not every column of them.
        contrib = row.data[:, None] * self.B[np.ix_(row.indices, np.maximum(pos, 0))]
        if nameable is not None:
            contrib[~nameable[self.kept[row.indices]]] = -np.inf
        best = contrib.argmax(axis=0)
        return [
            f"because you interacted with {self.item_ids[self.kept[row.indices[b]]]}"
            if p >= 0 and contrib[b, j] > 0 else None
            for j, (p, b) in enumerate(zip(pos.tolist(), best.tolist()))
        ]

    # -- persistence --------------------------------------------------------------------
    def _state(self) -> dict[str, np.ndarray]:
        return {"B": self.B, "kept": self.kept}

    def _restore(self, state: dict[str, np.ndarray]) -> None:
        self.B = np.ascontiguousarray(state["B"], dtype=np.float32)
        self.kept = np.asarray(state["kept"], dtype=np.int64)
        self._index()


def ease_weights(x: sparse.spmatrix, l2: float, dtype: type = np.float32) -> np.ndarray:
    """``B = I - P / diag(P)``, ``P = (X^T X + l2 I)^-1``, ``diag(B) = 0``, as float32.

    The Gram matrix is symmetric positive definite (``l2 > 0``), so the inverse is a Cholesky
    factorisation and ``potri`` in place (about 4x faster than ``np.linalg.inv`` and one
    n x n buffer). float32 by default: it halves time and memory, and it is accurate enough:
    max |B32 - B64| / max |B64| was 2e-6 .. 4e-4 on MovieLens-100K and 8,000 H&M items
    (l2 10 .. 500, 0/1 or weighted), and where the top-10 differed the swapped items were
    ties to 4e-7. Also, the float64 ``dpotrf`` of the OpenBLAS 0.3.31 bundled with scipy
    crashed (SIGSEGV) with 2 threads from n = 16,000 on; ``spotrf`` ran fine to n = 24,000.
    ``dtype=np.float64`` is there for checking.
    """
    x = sparse.csr_matrix(x)
    n = x.shape[1]
    # One n x n buffer throughout. The Gram matrix is symmetric, so its C-order array is also
    # its F-order array (``.T``), which LAPACK factorises and inverts in place.
    gram = (x.T @ x).toarray()  # CSC.toarray() comes out in F order: .T is the same matrix
    c = np.ascontiguousarray(gram if gram.flags.c_contiguous else gram.T, dtype=dtype)
    del gram
    c[np.diag_indices(n)] += dtype(l2)
    potrf, potri = lapack.get_lapack_funcs(("potrf", "potri"), (c.T,))
    factor, info = potrf(c.T, lower=False, overwrite_a=True, clean=False)
    if info != 0:
        raise np.linalg.LinAlgError(f"ease: Cholesky failed (info={info}); raise l2")
    inv, info = potri(factor, lower=False, overwrite_c=True)
    if info != 0:
        raise np.linalg.LinAlgError(f"ease: inverse failed (info={info}); raise l2")
    c = inv.T  # C-order again (the same buffer unless LAPACK had to copy)
    # potri filled the upper triangle of the F-order matrix, i.e. c's lower triangle: mirror
    # it into the upper one block by block (index arrays for all n^2 / 2 would cost GBs).
    block = 1024
    for s in range(0, n, block):
        e = min(s + block, n)
        c[s:e, s:e] = np.tril(c[s:e, s:e]) + np.tril(c[s:e, s:e], -1).T
        c[s:e, e:] = c[e:, s:e].T
    diag = c.diagonal().copy()
    c /= -diag[None, :]  # B_ij = -P_ij / P_jj
    c[np.diag_indices(n)] = 0.0
    return np.ascontiguousarray(c, dtype=np.float32)
