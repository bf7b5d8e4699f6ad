"""Trending: popularity with a memory. Each event counts ``0.5 ** (age / half_life)``, so what
shoppers bought this week outranks what they bought last season.

The same list for every shopper (minus what they already have); it is also this model's
cold-start answer, so a new shopper sees what is hot now rather than the all-time best sellers.
Real time: ``update`` adds new events to the decayed counts, so an item that suddenly sells
climbs without a retrain.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse

from stylesense.errors import InvalidInput
from stylesense.recommenders.base import Recommender
from stylesense.recommenders.data import Interactions, epoch_seconds

DAY = 86400.0


class Trending(Recommender):
    """Time-decayed popularity: score(item) = sum over its events of
    ``weight * 0.5 ** ((t_ref - t) / half_life)``, ``t_ref`` the latest event time seen."""

    name = "trending"
    defaults = {"half_life_days": 7.0}
    updatable = True  # new events re-rank everyone's list: that is the point of trending

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        hl = self.params["half_life_days"]
        if isinstance(hl, bool) or not isinstance(hl, (int, float)) or not np.isfinite(hl) or hl <= 0:
            raise InvalidInput(f"trending: half_life_days must be a positive number, got {hl!r}")
        self.params["half_life_days"] = float(hl)

    @classmethod
    def search_space(cls, trial: Any) -> dict[str, Any]:
        return {"half_life_days": trial.suggest_float("half_life_days", 0.5, 90.0, log=True)}

    @property
    def _half_life_s(self) -> float:
        return self.params["half_life_days"] * DAY

    # -- fitting ----------------------------------------------------------------------
    def _fit(self, data: Interactions) -> None:
        self.t_ref = int(data.ts.max()) if data.n_events else 0
        decay = np.exp2(-(self.t_ref - data.ts.astype(np.float64)) / self._half_life_s)
        self.decayed = np.bincount(data.item, weights=data.weight * decay, minlength=data.n_items)
        self._cold_start()

    def _cold_start(self) -> None:
        # The base class serves ``popularity`` to shoppers with no history; for this model the
        # trending list is the better answer (the same list everyone else gets).
        self.popularity = self.decayed.astype(np.float32)

    def _scores(self, users: np.ndarray, history: sparse.csr_matrix) -> np.ndarray:
        return np.broadcast_to(self.popularity, (len(users), len(self.popularity))).copy()

    def _reason(self, user: int, item: int, nameable: np.ndarray | None) -> str | None:
        return f"trending: {self.decayed[item]:.1f} weighted interactions, half-life {self.params['half_life_days']:g} d"

    def _session_reasons(self, seq: np.ndarray, items: np.ndarray, nameable: np.ndarray | None) -> list[str | None]:
        return [self._reason(-1, int(i), nameable) for i in items]  # everyone's reason: no user in it

    # -- real time ----------------------------------------------------------------------
    def _updated(self, users: np.ndarray, events: pd.DataFrame) -> None:
        if events.empty:
            return
        items = pd.Index(self.item_ids).get_indexer(events["item_id"].astype(str))
        weights = self.data.event_weights(events["type"]).astype(np.float64)
        # Events without a time are "now": the latest time this model has seen.
        ts = epoch_seconds(events["ts"]) if "ts" in events.columns else np.full(len(events), self.t_ref)
        t_new = max(self.t_ref, int(ts.max()))
        if t_new > self.t_ref:  # time moved forward: everything counted so far ages
            self.decayed *= np.exp2(-(t_new - self.t_ref) / self._half_life_s)
            self.t_ref = t_new
        decay = np.exp2(-(self.t_ref - ts.astype(np.float64)) / self._half_life_s)
        self.decayed += np.bincount(items, weights=weights * decay, minlength=len(self.decayed))
        self._cold_start()

    # -- persistence --------------------------------------------------------------------
    def _state(self) -> dict[str, np.ndarray]:
        return {"decayed": self.decayed, "t_ref": np.asarray(self.t_ref, dtype=np.int64)}

    def _restore(self, state: dict[str, np.ndarray]) -> None:
        self.decayed = np.asarray(state["decayed"], dtype=np.float64)
        self.t_ref = int(state["t_ref"])
        self._cold_start()
