"""Global popularity: what most shoppers interacted with. The baseline every model must beat,
and the cold-start answer for shoppers with no history."""

from __future__ import annotations

import numpy as np
from scipy import sparse

from stylesense.recommenders.base import Recommender
from stylesense.recommenders.data import Interactions


class Popular(Recommender):
    """Items ranked by how many distinct users interacted with them."""

    name = "popular"
    updatable = False  # one shopper's view should not reorder everyone's list

    def _fit(self, data: Interactions) -> None:
        pass  # the base class already counts ``popularity``

    def _scores(self, users: np.ndarray, history: sparse.csr_matrix) -> np.ndarray:
        return np.broadcast_to(self.popularity, (len(users), len(self.popularity))).copy()

    def _reason(self, user: int, item: int, nameable: np.ndarray | None) -> str | None:
        return f"popular: {int(self.popularity[item])} shoppers"

    def _session_reasons(self, seq: np.ndarray, items: np.ndarray, nameable: np.ndarray | None) -> list[str | None]:
        return [self._reason(-1, int(i), nameable) for i in items]  # everyone's reason: no user in it
