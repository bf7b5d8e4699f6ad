"""Popular and trending lists straight from the event log: no trained model needed.

Popular ranks items by how many distinct shoppers have an event of a positively weighted type
with them (the ``popular`` model's score); trending by time-decayed weighted events, each
counting ``weight * 0.5 ** ((t_ref - t) / half_life)`` with ``t_ref`` the latest event time (the
``trending`` model's score). So a shop can show both before it trains anything.

A request must not recount the whole log, so :class:`EventPopularity` keeps the counts with the
pk of the newest event they include (the event generation, ``EventStore.max_pk``): a request
that finds newer events folds in just those (one query for the events, one for which of their
shopper-item pairs were counted already), and the ranking is sorted once per generation, not
per request. Counting starts over when the weight table changes, when the newest events were
deleted, and every ``RECOUNT_SECONDS`` (so that deleted events leave the lists too); requests
arriving meanwhile are answered from the previous counts instead of waiting.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from stylesense.recommenders.base import Recommendation

if TYPE_CHECKING:
    from stylesense.events.store import EventStore

DAY = 86400.0
HALF_LIFE_DAYS = 7.0  # the trending model's default
RECOUNT_SECONDS = 300.0
KINDS = ("popular", "trending")


@dataclass(frozen=True)
class Counts:
    """Per item counts up to event ``pk``; never changed once made (requests share them)."""

    pk: int
    weights: tuple[tuple[str, float], ...]
    item_ids: np.ndarray  # str, in order of first appearance
    shoppers: np.ndarray  # float64: distinct shoppers with a positively weighted event
    decayed: np.ndarray  # float64: trending scores at t_ref
    t_ref: int  # epoch seconds of the latest event counted
    made: float  # time.monotonic() of the full count these counts continue
    order: dict[str, np.ndarray] = field(init=False)  # per kind, best first (ties in item order)

    def __post_init__(self) -> None:
        # Sorted once per generation here, walked per request in ``top``.
        object.__setattr__(self, "order", {kind: np.argsort(-self.scores(kind), kind="stable") for kind in KINDS})

    def scores(self, kind: str) -> np.ndarray:
        return self.shoppers if kind == "popular" else self.decayed

    def top(self, kind: str, k: int, allowed: np.ndarray | None, half_life_days: float) -> list[Recommendation]:
        """The ``k`` best items by ``kind`` (one of KINDS) among ``allowed`` (a mask over
        ``item_ids``; None: all), with the reason each ranks there. Only items with a positive
        score: an item known from events of weight 0 alone is nobody's favourite."""
        scores = self.scores(kind)
        out: list[Recommendation] = []
        for i in self.order[kind].tolist():
            if len(out) == k or scores[i] <= 0:
                break
            if allowed is None or allowed[i]:
                reason = (f"popular: {int(scores[i])} shoppers" if kind == "popular" else
                          f"trending: {scores[i]:.1f} weighted interactions, half-life {half_life_days:g} d")
                out.append(Recommendation(str(self.item_ids[i]), float(scores[i]), reason))
        return out


class EventPopularity:
    """Popular and trending counts of one home's event log, brought up to date on demand.
    Thread-safe: one thread counts at a time, the others use the counts they find."""

    def __init__(self, half_life_days: float = HALF_LIFE_DAYS) -> None:
        self.half_life_days = half_life_days
        self._lock = threading.Lock()
        self._counts: Counts | None = None

    def counts(self, store: EventStore, weights: Mapping[str, float]) -> Counts:
        """Counts including every event stored now; or, while another thread is counting, the
        previous ones (there are none the first time: then it waits)."""
        key = tuple(sorted((str(t), float(w)) for t, w in weights.items()))
        current = self._counts
        if current is not None and current.weights == key:
            if current.pk == store.max_pk() and not _due(current):
                return current
            if not self._lock.acquire(blocking=False):
                return current
        else:
            self._lock.acquire()
        try:
            current, newest = self._counts, store.max_pk()
            if current is None or current.weights != key or current.pk > newest or _due(current):
                current = None  # count from the start
            if current is None or current.pk != newest:
                self._counts = current = self._advance(current, store, key)
            return current
        finally:
            self._lock.release()

    def _advance(self, counts: Counts | None, store: EventStore, key: tuple[tuple[str, float], ...]) -> Counts:
        """``counts`` (None: none yet) with every event stored after its pk folded in."""
        import pandas as pd

        from stylesense.recommenders.data import epoch_seconds

        weights = dict(key)
        since = 0 if counts is None else counts.pk
        new = store.frame(after_pk=since)
        if counts is None:
            counts = Counts(0, key, np.zeros(0, dtype=object), np.zeros(0), np.zeros(0), 0, time.monotonic())
        if new.empty:
            return counts
        w = new["type"].map(weights).fillna(0.0).to_numpy(np.float64)
        known = pd.Index(counts.item_ids)
        fresh = pd.unique(new["item_id"][~new["item_id"].isin(known)])
        item_ids = np.concatenate([counts.item_ids, np.asarray(fresh, dtype=object)])
        index = pd.Index(item_ids)
        n = len(item_ids)

        # Shoppers: pairs new to the counts, i.e. not among the pairs counted up to `since`.
        pairs = new.loc[w > 0, ["user_id", "item_id"]].drop_duplicates()
        if since and len(pairs):
            counted = store.pairs_until(pairs["user_id"].unique().tolist(), since,
                                        [t for t, v in weights.items() if v > 0])
            pairs = pairs[np.array([p not in counted for p in zip(pairs["user_id"], pairs["item_id"])], dtype=bool)]
        shoppers = np.zeros(n)
        shoppers[: len(counts.shoppers)] = counts.shoppers
        shoppers += np.bincount(index.get_indexer(pairs["item_id"]), minlength=n)

        # Trending: what was counted ages to the new reference time, then the new events add.
        half_life = self.half_life_days * DAY
        ts = epoch_seconds(new["ts"]).astype(np.int64)
        t_ref = max(counts.t_ref, int(ts.max()))
        decayed = np.zeros(n)
        decayed[: len(counts.decayed)] = counts.decayed * np.exp2(-(t_ref - counts.t_ref) / half_life)
        decayed += np.bincount(index.get_indexer(new["item_id"]),
                               weights=w * np.exp2(-(t_ref - ts.astype(np.float64)) / half_life), minlength=n)
        return Counts(int(new["pk"].max()), key, item_ids, shoppers, decayed, t_ref, counts.made)


def _due(counts: Counts) -> bool:
    return time.monotonic() - counts.made > RECOUNT_SECONDS
