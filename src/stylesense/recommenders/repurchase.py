"""Repurchase: the shopper's own items, most recent first, then this week's best sellers.

The heuristic every H&M Kaggle notebook started from, and the baseline the ranker has to beat
(issue 13): in fashion shoppers buy again what they bought (another pack of the same socks),
and what they do not know yet is best guessed by what sells now. Scores are arranged so that
every item of the shopper's history (latest event first) ranks above every other item, and the
others rank by how often they were bought in the ``days`` before the latest event the model
knows (then by all-time popularity, so a list is always full).

Real time: ``update`` events join the history at once (the newest item moves to the top);
the best sellers are those of the fit.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import sparse

from stylesense.errors import InvalidInput
from stylesense.recommenders.base import Recommender
from stylesense.recommenders.data import Interactions

DAY = 86_400


class Repurchase(Recommender):
    """Own items by recency, then the best sellers of the last ``days``."""

    name = "repurchase"
    defaults = {"days": 7.0}
    updatable = True  # the history part is the live sequence

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        days = self.params["days"]
        if isinstance(days, bool) or not isinstance(days, (int, float)) or not np.isfinite(days) or days <= 0:
            raise InvalidInput(f"repurchase: days must be a positive number, got {days!r}")
        self.params["days"] = float(days)

    @classmethod
    def search_space(cls, trial: Any) -> dict[str, Any]:
        return {"days": trial.suggest_float("days", 1.0, 60.0, log=True)}

    def _fit(self, data: Interactions) -> None:
        end = int(data.ts.max()) if data.n_events else 0
        recent = data.ts >= end - self.params["days"] * DAY
        week = np.bincount(data.item[recent], minlength=data.n_items).astype(np.float64)
        self._set_sellers(week)

    def _set_sellers(self, week: np.ndarray) -> None:
        self.week = np.asarray(week, dtype=np.float64)
        # In [0, 1): this week's sales first, all-time popularity breaking ties (and ranking
        # what did not sell this week), so that history items (scored >= 1) stay on top.
        overall = self.popularity.astype(np.float64)
        key = self.week * (overall.max() + 1.0) + overall
        self.sellers = (key / (key.max() + 1.0)).astype(np.float32)
        self.popularity = self.sellers.copy()  # the cold-start list: the best sellers too

    def _scores(self, users: np.ndarray, history: sparse.csr_matrix) -> np.ndarray:
        out = np.broadcast_to(self.sellers, (len(users), self.data.n_items)).copy()
        for row, u in enumerate(np.asarray(users).tolist()):
            seq = self.sequence(u) if u < len(self.user_ids) else history[row].indices
            self._lift(out[row], seq)
        return out

    def _session_scores(self, items: np.ndarray, row: sparse.csr_matrix) -> np.ndarray:
        out = self.sellers.copy()
        self._lift(out, items)
        return out

    @staticmethod
    def _lift(scores: np.ndarray, seq: np.ndarray) -> None:
        """History items above everything else, the latest event's item first."""
        seq = np.asarray(seq, dtype=np.int64)
        if len(seq):
            items, first = np.unique(seq[::-1], return_index=True)
            latest = len(seq) - first  # 1-based position of each item's latest event
            scores[items] = 1.0 + latest.astype(np.float32) / len(seq)  # (1, 2]: above every seller

    def _reason(self, user: int, item: int, nameable: np.ndarray | None) -> str | None:
        if self.history[user, item] > 0:
            return "you bought or viewed it before"
        return f"best seller: {int(self.week[item])} sold in the last {self.params['days']:g} days"

    def _session_reasons(self, seq: np.ndarray, items: np.ndarray, nameable: np.ndarray | None) -> list[str | None]:
        mine = set(np.asarray(seq).tolist())
        return ["you viewed it before" if int(i) in mine else
                f"best seller: {int(self.week[int(i)])} sold in the last {self.params['days']:g} days" for i in items]

    def _state(self) -> dict[str, np.ndarray]:
        return {"week": self.week}

    def _restore(self, state: dict[str, np.ndarray]) -> None:
        self._set_sellers(state["week"])
