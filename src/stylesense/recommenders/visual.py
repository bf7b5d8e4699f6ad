"""Visual: recommend what looks like what the shopper viewed last.

Content-based, so it serves items nobody has bought yet: the only model here that can. Item
vectors (L2-normalised image embeddings) come from the catalogue index and are handed over
before ``fit``::

    Visual(recent=10).with_vectors(item_ids, vectors).fit(interactions)

where ``interactions`` was built with ``Interactions.from_frame(events, items=catalogue_ids)``
so unsold catalogue items have a column. The shopper's last ``recent`` distinct items carry
recency weights ``decay ** steps_back``. With ``pooling="max"`` (default) an item scores its
best weighted cosine to any of them, so a shopper with two tastes (or a new one this session)
gets items like each, led by the newest; ``"mean"`` scores the cosine to the weighted mean
vector, which blurs two tastes into items that look like neither. Real time: the scores are
rebuilt from the current sequence, update events included.

Items without a vector (no photo) score -inf: this model has nothing to say about them and
never recommends them, not even in its popularity fallback.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse

from stylesense.errors import InvalidInput
from stylesense.recommenders.base import Recommender
from stylesense.recommenders.data import Interactions


class Visual(Recommender):
    """Cosine between item image vectors and a recency-weighted profile of recent items."""

    name = "visual"
    defaults = {"recent": 10, "decay": 0.8, "pooling": "max"}
    updatable = True  # the profile is rebuilt from the sequence, which includes updates

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        recent, decay = self.params["recent"], self.params["decay"]
        if isinstance(recent, bool) or not isinstance(recent, (int, np.integer)) or recent < 1:
            raise InvalidInput(f"visual: recent must be a positive integer, got {recent!r}")
        if isinstance(decay, bool) or not isinstance(decay, (int, float)) or not 0 < decay <= 1:
            raise InvalidInput(f"visual: decay must be in (0, 1], got {decay!r}")
        if self.params["pooling"] not in ("max", "mean"):
            raise InvalidInput(f"visual: pooling must be max or mean, got {self.params['pooling']!r}")
        self.params.update(recent=int(recent), decay=float(decay))
        self._pending: tuple[np.ndarray, np.ndarray] | None = None

    @classmethod
    def search_space(cls, trial: Any) -> dict[str, Any]:
        return {
            "recent": trial.suggest_int("recent", 1, 50, log=True),
            "decay": trial.suggest_float("decay", 0.3, 1.0),
            "pooling": trial.suggest_categorical("pooling", ["max", "mean"]),
        }

    needs_vectors = True  # type: ignore[assignment]

    def with_vectors(self, item_ids: Sequence[str], vectors: np.ndarray) -> "Visual":
        """Item vectors for the next ``fit`` (one row per id; normalised again here). Ids not in
        the fitted interactions are ignored: they have no column to score."""
        ids = np.asarray([str(i) for i in item_ids], dtype=str)
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[0] != len(ids):
            raise InvalidInput(f"visual: expected a ({len(ids)}, d) vector array, got shape {vectors.shape}")
        if len(set(ids.tolist())) != len(ids):
            raise InvalidInput("visual: duplicate item ids in the vectors")
        if not np.isfinite(vectors).all():
            raise InvalidInput("visual: vectors hold NaN or inf")
        self._pending = (ids, vectors)
        return self

    # -- fitting ----------------------------------------------------------------------
    def _fit(self, data: Interactions) -> None:
        if self._pending is None:
            raise InvalidInput(
                "visual: no item vectors; call .with_vectors(item_ids, vectors) before fit "
                "(the catalogue's image embeddings)"
            )
        ids, vectors = self._pending
        pos = pd.Index(ids).get_indexer(data.items)
        norms = np.linalg.norm(vectors, axis=1)
        ok = pos >= 0
        ok[ok] = norms[pos[ok]] > 1e-12  # an all-zero vector is no vector
        items = np.flatnonzero(ok)
        self._set_vectors(items, vectors[pos[items]] / norms[pos[items], None])

    def _set_vectors(self, items: np.ndarray, vectors: np.ndarray) -> None:
        """Unit vectors of the items that have one (``items``: their indices), as fitted or as
        saved. Only these rows are kept: in a real catalogue many sold items have no photo."""
        if len(items) == 0:
            raise InvalidInput("visual: none of the items has a vector")
        self.vector_items = np.asarray(items, dtype=np.int64)
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self.has_vector = np.zeros(self.data.n_items, dtype=bool)
        self.has_vector[self.vector_items] = True
        self.row = np.full(self.data.n_items, -1, dtype=np.int64)  # item -> row of vectors
        self.row[self.vector_items] = np.arange(len(self.vector_items))
        # The cold-start list (base class) must not offer items this model cannot show either.
        self.popularity = np.where(self.has_vector, self.popularity, -np.inf).astype(np.float32)

    # -- scoring ----------------------------------------------------------------------
    def recent_items(self, user: int) -> tuple[np.ndarray, np.ndarray]:
        """The user's last ``recent`` distinct items that have a vector, newest first, and their
        recency weights ``decay ** k``."""
        return self._recent_of(self.sequence(user))

    def _recent_of(self, seq: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`recent_items` of an item sequence (oldest first), a user's or a session's."""
        seq = np.asarray(seq, dtype=np.int64)[::-1]
        seq = seq[self.has_vector[seq]]
        _, first = np.unique(seq, return_index=True)  # newest occurrence of each item
        items = seq[np.sort(first)][: self.params["recent"]]
        return items, self.params["decay"] ** np.arange(len(items), dtype=np.float32)

    def _row(self, items: np.ndarray, w: np.ndarray) -> np.ndarray:
        """One shopper's scores from their recent items and weights: the best weighted cosine
        to any (max pooling) or the cosine to their unit mean vector (mean); popularity over
        the items with a vector where they have none, or their mean vector is zero."""
        out = np.full(self.data.n_items, -np.inf, dtype=np.float32)
        if len(items) and self.params["pooling"] == "mean":
            p = w @ self.vectors[self.row[items]]
            norm = np.linalg.norm(p)
            if norm > 1e-12:
                out[self.vector_items] = self.vectors @ (p / norm)
                return out
        elif len(items):
            out[self.vector_items] = (self.vectors @ (self.vectors[self.row[items]].T * w)).max(axis=1)
            return out
        return self.popularity.copy()

    def _scores(self, users: np.ndarray, history: sparse.csr_matrix) -> np.ndarray:
        out = np.empty((len(users), self.data.n_items), dtype=np.float32)
        for row, u in enumerate(np.asarray(users).tolist()):
            out[row] = self._row(*self.recent_items(u))
        return out

    def _session_scores(self, items: np.ndarray, row: sparse.csr_matrix) -> np.ndarray:
        return self._row(*self._recent_of(items))

    def _similar(self, item: int) -> np.ndarray:
        if not self.has_vector[item]:
            return np.full(self.data.n_items, -np.inf, dtype=np.float32)
        out = np.full(self.data.n_items, -np.inf, dtype=np.float32)
        out[self.vector_items] = self.vectors @ self.vectors[self.row[item]]
        return out

    def _reason(self, user: int, item: int, nameable: np.ndarray | None) -> str | None:
        items, _ = self.recent_items(user)
        if nameable is not None:
            items = items[nameable[items]]
        if len(items) == 0 or not self.has_vector[item]:
            return None
        sim = self.vectors[self.row[items]] @ self.vectors[self.row[item]]
        best = int(items[int(np.argmax(sim))])
        if best == item:
            return None
        return f"looks like {self.item_ids[best]} you viewed"

    # -- persistence --------------------------------------------------------------------
    def _state(self) -> dict[str, np.ndarray]:
        # float32: float16 would halve the file but move cosines by ~1e-3, enough to reorder
        # near-ties after a reload.
        return {"vectors": self.vectors, "vector_items": self.vector_items}

    def _restore(self, state: dict[str, np.ndarray]) -> None:
        self._set_vectors(state["vector_items"], state["vectors"])
