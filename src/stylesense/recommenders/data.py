"""Interactions: the event log turned into what every recommender fits on.

Events arrive as a table (user_id, item_id, type, ts, and optionally value, price, session_id).
Models need integer indices and a user x item matrix of implicit-feedback strengths, and the
sequence-aware ones (trending, visual, session models) need the events themselves in time
order. :class:`Interactions` holds both views of the same data, built once per fit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import sparse

from stylesense.errors import InvalidInput
from stylesense.weights import DEFAULT_WEIGHTS

EVENT_COLUMNS = ("user_id", "item_id", "type", "ts")


@dataclass
class Interactions:
    """Users, items and events with integer indices.

    ``users``/``items`` map index -> external id. Event arrays (``user``, ``item``, ``weight``,
    ``ts`` in epoch seconds, ``price``, ``session``) are sorted by (ts, original order).
    ``matrix`` sums the weights per (user, item), so repeat purchases count more.
    """

    users: np.ndarray  # str, index -> user id
    items: np.ndarray  # str, index -> item id
    user: np.ndarray  # int64 per event
    item: np.ndarray  # int64 per event
    weight: np.ndarray  # float32 per event
    ts: np.ndarray  # int64 epoch seconds per event
    price: np.ndarray  # float32 per event, NaN where unknown
    session: np.ndarray  # str per event, "" where the events carry none
    weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))

    def __post_init__(self) -> None:
        self.user_index = {u: i for i, u in enumerate(self.users.tolist())}
        self.item_index = {t: i for i, t in enumerate(self.items.tolist())}
        self.matrix = sparse.csr_matrix(
            (self.weight, (self.user, self.item)),
            shape=(len(self.users), len(self.items)),
            dtype=np.float32,
        )
        self.matrix.sum_duplicates()

    @property
    def n_users(self) -> int:
        return len(self.users)

    @property
    def n_items(self) -> int:
        return len(self.items)

    @property
    def n_events(self) -> int:
        return len(self.user)

    @classmethod
    def from_frame(
        cls,
        events: pd.DataFrame,
        weights: Mapping[str, float] | None = None,
        *,
        items: Sequence[str] = (),
        users: Sequence[str] = (),
    ) -> "Interactions":
        """Index an events table.

        ``items``/``users`` extend the universe beyond those in ``events`` (catalogue items
        nobody has bought yet must still be recommendable by content-based models). Their
        order comes first, so indices stay stable when the same universe is passed twice.
        """
        missing = [c for c in EVENT_COLUMNS if c not in events.columns]
        if missing:
            raise InvalidInput(f"events table lacks column(s) {', '.join(missing)}")
        weights = dict(DEFAULT_WEIGHTS if weights is None else weights)
        types = events["type"]
        seconds = epoch_seconds(events["ts"])
        order = np.argsort(seconds, kind="stable")
        ev = events.iloc[order]
        user_ids = _universe(users, ev["user_id"].astype(str))
        item_ids = _universe(items, ev["item_id"].astype(str))
        user_pos = pd.Index(user_ids).get_indexer(ev["user_id"].astype(str))
        item_pos = pd.Index(item_ids).get_indexer(ev["item_id"].astype(str))
        price = ev["price"] if "price" in ev.columns else pd.Series(np.nan, index=ev.index)
        session = ev["session_id"] if "session_id" in ev.columns else pd.Series("", index=ev.index)
        return cls(
            users=np.asarray(user_ids, dtype=str),
            items=np.asarray(item_ids, dtype=str),
            user=user_pos.astype(np.int64),
            item=item_pos.astype(np.int64),
            weight=_weigh(types.iloc[order], weights),
            ts=seconds[order],
            price=pd.to_numeric(price, errors="coerce").to_numpy(np.float32),
            session=session.fillna("").astype(str).to_numpy(dtype=str),
            weights=weights,
        )

    def event_weights(self, types: pd.Series) -> np.ndarray:
        """Weights of new events (``update``), by the same table the model was fitted with."""
        return _weigh(types, self.weights)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Everything needed to rebuild this object (see :meth:`from_arrays`)."""
        return {f"data_{k}": getattr(self, k) for k in _FIELDS}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], weights: Mapping[str, float]) -> "Interactions":
        return cls(**{k: arrays[f"data_{k}"] for k in _FIELDS}, weights=dict(weights))


_FIELDS = ("users", "items", "user", "item", "weight", "ts", "price", "session")


def _weigh(types: pd.Series, weights: Mapping[str, float]) -> np.ndarray:
    """Unknown event types raise: silently weighting them 0 would hide a typo in a CSV."""
    unknown = sorted(set(types.astype(str).unique()) - set(weights))
    if unknown:
        raise InvalidInput(f"no weight for event type(s) {', '.join(unknown)}; known: {sorted(weights)}")
    return types.astype(str).map(weights).to_numpy(np.float32)


def _universe(first: Sequence[str], seen: pd.Series) -> list[str]:
    """``first`` in its order, then the ids of ``seen`` not in it, in order of first appearance."""
    out = list(dict.fromkeys(str(x) for x in first))
    known = set(out)
    out.extend(x for x in pd.unique(seen) if x not in known)
    return out


def epoch_seconds(ts: pd.Series) -> np.ndarray:
    """Timestamps as int64 epoch seconds, from datetimes or numbers (MovieLens stores seconds)."""
    if pd.api.types.is_numeric_dtype(ts):
        return ts.to_numpy().astype(np.int64)
    # Through a Timedelta, not astype(int64): pandas 3 stores datetimes in s, ms, us or ns.
    since = pd.to_datetime(ts, utc=True) - pd.Timestamp(0, tz="UTC")
    return (since // pd.Timedelta(seconds=1)).to_numpy(np.int64)


def session_starts(first: np.ndarray, ts: np.ndarray, session: np.ndarray, gap_hours: float) -> np.ndarray:
    """Which events open a session, for events sorted by (user, time); ``first`` marks each
    user's first event. A new session starts at a user's first event, where a non-empty
    ``session`` id differs from the previous event's, and, between events without ids, after a
    pause longer than ``gap_hours``. Shared by the ``last-session`` split protocol and GRU4Rec's training sequences."""
    out = np.asarray(first, dtype=bool).copy()
    if len(out) < 2:
        return out
    sid = np.asarray(session, dtype=object)
    has = sid != ""
    gap = np.diff(np.asarray(ts, dtype=np.int64)) > gap_hours * 3600.0
    both = has[1:] & has[:-1]
    changed = np.where(both, sid[1:] != sid[:-1], np.where(has[1:] | has[:-1], has[1:] != has[:-1], gap))
    out[1:] |= changed
    return out
