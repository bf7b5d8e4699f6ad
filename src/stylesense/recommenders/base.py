"""The one interface every recommender implements, and the work they all share.

A model implements three things: ``_fit`` (learn from :class:`Interactions`), ``_scores`` (a
dense score row per user, given the user's current history row), and optionally
``_similar`` / ``_reason`` / ``_state`` / ``_restore``. Everything else lives here once:
top-k with seen-item exclusion and allowed-item masks, batching, the popularity fallback for
users with no history, real-time ``update``, and save/load.

Real time: ``update(events)`` appends the events to the model's copy of each user's history.
Models that score from the history row (item-kNN, EASE, visual, ALS by fold-in, trending) then
reflect the new behaviour on the next ``recommend`` without a retrain; ``updatable`` says which.

Anonymous sessions: ``recommend_session`` scores a history that belongs to nobody (a shopper
without an account: recent events, perhaps a photo) without storing or changing anything, so
it runs beside other requests. The history becomes a one-row matrix over the model's items,
scored as a user the model has never seen (``_session_scores``); models that read the event
sequence rather than the row (visual, GRU4Rec, a blend holding them) override that.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from scipy import sparse

from stylesense.atomic import save_npz
from stylesense.errors import InvalidInput, NotFound
from stylesense.recommenders.data import Interactions

FORMAT_VERSION = 1
BATCH_USERS = 512  # users scored per dense block: 512 x 20k items x 4 B = 40 MB
REASON_RECENT = 20  # latest history items a reason may name
PHOTO_REASON = "looks like your photo"


@dataclass(frozen=True)
class Recommendation:
    item_id: str
    score: float
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape every surface answers with."""
        return {"item_id": self.item_id, "score": round(self.score, 6), "reason": self.reason}


class Recommender(ABC):
    """Base class: ``fit``, ``recommend``, ``recommend_batch``, ``similar_items``, ``update``,
    ``save`` / ``load``. Parameters are plain keyword arguments with ``defaults``."""

    name: ClassVar[str]
    defaults: ClassVar[dict[str, Any]] = {}
    updatable: ClassVar[bool] = True  # whether update() changes this model's scores

    def __init__(self, **params: Any) -> None:
        unknown = sorted(set(params) - set(self.defaults))
        if unknown:
            raise InvalidInput(
                f"{self.name}: unknown parameter(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(self.defaults)) or 'none'}"
            )
        self.params: dict[str, Any] = {}
        for key, default in self.defaults.items():
            try:
                self.params[key] = _coerce(params[key], default) if key in params else default
            except ValueError as e:
                raise InvalidInput(f"{self.name}: parameter {key}: {e}") from None
        self._data: Interactions | None = None
        self.meta: dict[str, Any] = {}  # the caller's bookkeeping (e.g. last event id trained on)

    # -- fitting ----------------------------------------------------------------------
    def fit(self, data: Interactions) -> "Recommender":
        self._data = data
        self.user_ids: list[str] = data.users.tolist()
        self.user_index: dict[str, int] = dict(data.user_index)
        self.history: sparse.csr_matrix = data.matrix.copy()
        self.n_fitted_users = data.n_users
        self.popularity = _distinct_users(data)
        self._extra: dict[int, list[int]] = {}  # user -> items of update() events, in order
        self._fit(data)
        return self

    @property
    def data(self) -> Interactions:
        if self._data is None:
            raise RuntimeError(f"{self.name}: not fitted")
        return self._data

    @property
    def item_ids(self) -> np.ndarray:
        return self.data.items

    @property
    def needs_vectors(self) -> bool:
        """Whether ``fit`` reads the catalogue's image vectors (handed over first with the
        model's ``with_vectors``)."""
        return False

    @abstractmethod
    def _fit(self, data: Interactions) -> None: ...

    @abstractmethod
    def _scores(self, users: np.ndarray, history: sparse.csr_matrix) -> np.ndarray:
        """(len(users), n_items) float32 scores; higher is better. ``history`` holds the users'
        rows of the current history (training plus updates); ``users`` may include users added
        by ``update`` (index >= ``n_fitted_users``), and an index past every user
        (``len(user_ids)``: an anonymous session), which must be scored from its row alone."""

    # -- scoring ----------------------------------------------------------------------
    def scores(self, users: np.ndarray, rows: sparse.csr_matrix | None = None) -> np.ndarray:
        """Scores for user indices (``rows``: their history rows, if already sliced); users
        with an empty history get popularity (cold start)."""
        users = np.asarray(users, dtype=np.int64)
        rows = self.history[users] if rows is None else rows
        out = np.asarray(self._scores(users, rows), dtype=np.float32)
        cold = np.diff(rows.indptr) == 0
        if cold.any():
            out[cold] = self.popularity
        return out

    # -- anonymous sessions ---------------------------------------------------------------
    def session_scores(self, items: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """(n_items,) float32 scores for a shopper the model does not know whose history is
        ``items`` (indices, oldest first) with event ``weights``; popularity when it is empty.
        Changes nothing in the model."""
        items = np.asarray(items, dtype=np.int64)
        if len(items) == 0:
            return self.popularity.astype(np.float32, copy=True)
        row = sparse.csr_matrix((np.asarray(weights, np.float32), (np.zeros(len(items), np.int64), items)),
                                shape=(1, self.data.n_items))
        row.sum_duplicates()
        return np.asarray(self._session_scores(items, row), dtype=np.float32).reshape(-1)

    def _session_scores(self, items: np.ndarray, row: sparse.csr_matrix) -> np.ndarray:
        """A non-empty session's score row: by default ``_scores`` for an index past every user,
        scored from ``row``. Models that read ``sequence`` instead override this (``items``)."""
        return self._scores(np.array([len(self.user_ids)], dtype=np.int64), row)[0]

    def recommend_session(
        self,
        items: Sequence[str],
        types: Sequence[str],
        k: int = 10,
        *,
        exclude_seen: bool = True,
        allowed: np.ndarray | None = None,
        nameable: np.ndarray | None = None,
        photo: np.ndarray | None = None,
    ) -> list[Recommendation]:
        """Top-k for an anonymous shopper whose recent events are ``items`` with ``types``
        (oldest first); items the model has never seen are left out (they have no column).
        ``exclude_seen`` hides the session's items; ``allowed`` / ``nameable`` as in
        :meth:`recommend`.

        ``photo``: the similarity of a photo of the shopper's to each item (-inf where none is
        known). The two rows are added after standardising each (as the blend adds models), so
        neither's scale decides; an item the photo lifts more than the events is recommended
        because it "looks like your photo"."""
        pos = pd.Index(self.item_ids).get_indexer(pd.Index([str(i) for i in items], dtype=object))
        known = pos >= 0
        seq = pos[known].astype(np.int64)
        scores = self.session_scores(seq, self.data.event_weights(pd.Series(list(types), dtype=object)[known]))
        by_photo = None
        if photo is not None:
            photo = np.asarray(photo, np.float32)
            events_z, photo_z = standardise(scores[None, :])[0], standardise(photo[None, :])[0]
            scorable = np.isfinite(scores) | np.isfinite(photo)  # what neither can score stays out
            by_photo, scores = photo_z > events_z, np.where(scorable, events_z + photo_z, -np.inf)
        seen = None
        if exclude_seen and len(seq):
            seen = sparse.csr_matrix((np.ones(len(seq), np.float32), (np.zeros(len(seq), np.int64), seq)),
                                     shape=(1, self.data.n_items))
        idx, val = _rank(scores[None, :], k, allowed, seen)
        keep = np.isfinite(val[0])
        top, top_scores = idx[0][keep], val[0][keep]
        reasons = self._session_reasons(seq, top, nameable)
        if by_photo is not None:
            reasons = [PHOTO_REASON if by_photo[i] else r for i, r in zip(top.tolist(), reasons)]
        return [Recommendation(str(self.item_ids[i]), float(s), r) for i, s, r in zip(top, top_scores, reasons)]

    def _session_reasons(self, seq: np.ndarray, items: np.ndarray, nameable: np.ndarray | None) -> list[str | None]:
        """Per recommended item, the session item most like it (by ``_similar``, one call per
        session item, not per recommendation), naming only ``nameable`` items."""
        recent = np.unique(seq[-REASON_RECENT:])
        if nameable is not None:
            recent = recent[nameable[recent]]
        if len(recent) == 0 or len(items) == 0:
            return [None] * len(items)
        sims = np.stack([np.asarray(self._similar(int(s)), np.float32) for s in recent])[:, np.asarray(items)]
        best = sims.argmax(axis=0)
        return [
            f"similar to {self.item_ids[recent[b]]} you interacted with"
            if sims[b, j] > 0 and recent[b] != item else None
            for j, (b, item) in enumerate(zip(best.tolist(), np.asarray(items).tolist()))
        ]

    def recommend_batch(
        self,
        users: np.ndarray,
        k: int = 10,
        *,
        exclude_seen: bool = True,
        allowed: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k item indices and scores for many users: (n, k) arrays, -1 / -inf padded where
        fewer than k items are eligible. ``allowed``: boolean mask over items (filters)."""
        users = np.asarray(users, dtype=np.int64)
        top = np.full((len(users), k), -1, dtype=np.int64)
        top_scores = np.full((len(users), k), -np.inf, dtype=np.float32)
        for start in range(0, len(users), BATCH_USERS):
            block = users[start : start + BATCH_USERS]
            rows = self.history[block]
            idx, val = _rank(self.scores(block, rows), k, allowed, rows if exclude_seen else None)
            top[start : start + len(block), : idx.shape[1]] = idx
            top_scores[start : start + len(block), : idx.shape[1]] = val
        top[~np.isfinite(top_scores)] = -1
        return top, top_scores

    def recommend(
        self,
        user: str,
        k: int = 10,
        *,
        exclude_seen: bool = True,
        allowed: np.ndarray | None = None,
        nameable: np.ndarray | None = None,
    ) -> list[Recommendation]:
        """Top-k for one user id; an unknown user gets the cold-start (popularity) list.
        ``nameable``: boolean mask of the items a reason may name (None: any), so that a
        reason never points at a removed product; it is not ``allowed``, since a filter on
        bags should still let "similar to the shirt you bought" explain a bag."""
        u = self.user_index.get(str(user))
        if u is None:
            idx, val = _rank(self.popularity[None, :].copy(), k, allowed)
            return [Recommendation(str(self.item_ids[i]), float(s)) for i, s in zip(idx[0], val[0]) if np.isfinite(s)]
        idx, val = self.recommend_batch(np.array([u]), k, exclude_seen=exclude_seen, allowed=allowed)
        keep = idx[0] >= 0
        items, scores = idx[0][keep], val[0][keep]
        reasons = self._reasons(u, items, nameable)
        return [Recommendation(str(self.item_ids[i]), float(s), r) for i, s, r in zip(items, scores, reasons)]

    def similar_items(self, item: str, k: int = 10, *, allowed: np.ndarray | None = None) -> list[Recommendation]:
        """The k items most like ``item`` (never itself), among ``allowed`` (a boolean mask)."""
        i = self.data.item_index.get(str(item))
        if i is None:
            raise NotFound(f"{self.name}: unknown item {item!r}")
        s = np.asarray(self._similar(i), dtype=np.float32).copy()
        s[i] = -np.inf
        idx, val = _rank(s[None, :], k, allowed)
        return [Recommendation(str(self.item_ids[j]), float(v)) for j, v in zip(idx[0], val[0]) if np.isfinite(v)]

    def _similar(self, item: int) -> np.ndarray:
        """Item-to-item scores; by default cosine over who interacted (co-occurrence)."""
        m = self.data.matrix.T.tocsr()
        m.data = np.ones_like(m.data)
        co = np.asarray((m @ m[item].T).todense()).ravel()
        norms = np.sqrt(np.asarray(m.sum(axis=1)).ravel())
        return co / np.maximum(norms * norms[item], 1e-9)

    def _reasons(self, user: int, items: np.ndarray, nameable: np.ndarray | None) -> list[str | None]:
        """A short "why" per recommended item, naming only ``nameable`` items (None: any).
        Models whose reason comes from the user's history row override this to compute all k
        at once (one row lookup, not k)."""
        return [self._reason(user, int(i), nameable) for i in items]

    def _reason(self, user: int, item: int, nameable: np.ndarray | None) -> str | None:
        """The "why" of one item; the default: the most similar item in the user's history,
        for models whose ``_similar`` is meaningful."""
        seq = self.sequence(user)
        recent = np.unique(seq[-REASON_RECENT:])
        if nameable is not None:
            recent = recent[nameable[recent]]
        if len(recent) == 0:
            return None
        sim = self._similar(item)[recent]
        best = int(recent[int(np.argmax(sim))])
        if sim.max() <= 0 or best == item:
            return None
        return f"similar to {self.item_ids[best]} you interacted with"

    # -- real time ----------------------------------------------------------------------
    def sequence(self, user: int) -> np.ndarray:
        """The user's item indices in time order: training events, then update() events."""
        if not hasattr(self, "_by_user"):
            order = np.argsort(self.data.user, kind="stable")  # events are time-sorted already
            self._by_user = (order, np.searchsorted(self.data.user[order], np.arange(self.data.n_users + 1)))
        order, starts = self._by_user
        fitted = (
            self.data.item[order[starts[user] : starts[user + 1]]] if user < self.data.n_users else np.zeros(0, np.int64)
        )
        return np.concatenate([fitted, np.asarray(self._extra.get(user, []), dtype=np.int64)])

    def update(self, events: pd.DataFrame) -> int:
        """Fold new events (user_id, item_id, type, ts) into the users' histories without a
        retrain. Items the model has never seen are skipped (they have no column to score);
        returns the number of events taken."""
        if events.empty:
            return 0
        weights = self.data.event_weights(events["type"])
        items = pd.Index(self.item_ids).get_indexer(events["item_id"].astype(str))
        keep = items >= 0
        users = []
        for uid in events["user_id"].astype(str)[keep]:
            if uid not in self.user_index:
                self.user_index[uid] = len(self.user_ids)
                self.user_ids.append(uid)
            users.append(self.user_index[uid])
        users_arr = np.asarray(users, dtype=np.int64)
        if len(self.user_ids) > self.history.shape[0]:
            self.history.resize((len(self.user_ids), self.history.shape[1]))
        delta = sparse.csr_matrix(
            (weights[keep], (users_arr, items[keep])), shape=self.history.shape, dtype=np.float32
        )
        self.history = (self.history + delta).tocsr()
        for u, i in zip(users_arr.tolist(), items[keep].tolist()):
            self._extra.setdefault(u, []).append(i)
        self._updated(np.unique(users_arr), events[keep])
        return int(keep.sum())

    def _updated(self, users: np.ndarray, events: pd.DataFrame) -> None:
        """Hook for models that keep per-user state beyond the history row (e.g. ALS factors)."""

    # -- persistence --------------------------------------------------------------------
    def _state(self) -> dict[str, np.ndarray]:
        """The fitted arrays this model needs besides the interactions."""
        return {}

    def _restore(self, state: dict[str, np.ndarray]) -> None:
        """Inverse of ``_state``; called after the interactions are restored."""

    def save(self, path: str | Path) -> None:
        """One .npz file (no pickle), written atomically."""
        extra_users = sorted(self._extra)
        header = {
            "format": FORMAT_VERSION,
            "model": self.name,
            "params": self.params,
            "weights": self.data.weights,
            "n_fitted_users": self.n_fitted_users,
            "meta": self.meta,
        }
        h = self.history
        arrays = {
            **self.data.to_arrays(),
            "hist_indptr": h.indptr, "hist_indices": h.indices, "hist_data": h.data,
            "user_ids": np.asarray(self.user_ids, dtype=str),
            "extra_users": np.asarray(extra_users, dtype=np.int64),
            "extra_lens": np.asarray([len(self._extra[u]) for u in extra_users], dtype=np.int64),
            "extra_items": np.asarray([i for u in extra_users for i in self._extra[u]], dtype=np.int64),
            **{f"state_{k}": v for k, v in self._state().items()},
        }
        save_npz(path, header, arrays)

    @classmethod
    def _load_into(cls, model: "Recommender", header: dict, arrays: dict[str, np.ndarray]) -> "Recommender":
        data = Interactions.from_arrays(arrays, header["weights"])
        model._data = data
        model.user_ids = arrays["user_ids"].tolist()
        model.user_index = {u: i for i, u in enumerate(model.user_ids)}
        model.history = sparse.csr_matrix(
            (arrays["hist_data"], arrays["hist_indices"], arrays["hist_indptr"]),
            shape=(len(model.user_ids), data.n_items),
        )
        model.n_fitted_users = int(header["n_fitted_users"])
        model.meta = dict(header.get("meta", {}))
        model.popularity = _distinct_users(data)
        splits = np.cumsum(arrays["extra_lens"])[:-1]
        model._extra = {
            int(u): items.tolist()
            for u, items in zip(arrays["extra_users"], np.split(arrays["extra_items"], splits))
        }
        model._restore({k[6:]: v for k, v in arrays.items() if k.startswith("state_")})
        return model


def _distinct_users(data: Interactions) -> np.ndarray:
    """Per item, how many users interacted with it: the cold-start (popularity) scores."""
    return np.asarray((data.matrix > 0).sum(axis=0), dtype=np.float32).ravel()


def standardise(scores: np.ndarray) -> np.ndarray:
    """Per row: minus the mean, over the standard deviation (rows without spread become 0), so
    that rows of different models (or a model and a photo) add with weights that mean what they
    say. Items a row cannot score (-inf) count as its lowest score."""
    scores = np.asarray(scores, np.float32)
    finite = np.isfinite(scores)
    if not finite.all():
        low = np.where(finite, scores, np.inf).min(axis=1, keepdims=True)
        scores = np.where(finite, scores, np.where(np.isfinite(low), low, 0.0))
    centred = scores - scores.mean(axis=1, keepdims=True)
    spread = centred.std(axis=1, keepdims=True)
    return np.divide(centred, spread, out=np.zeros_like(centred), where=spread > 1e-12)


def _rank(
    scores: np.ndarray, k: int, allowed: np.ndarray | None = None, seen: sparse.csr_matrix | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise top-k of ``scores`` (modified in place) among ``allowed`` items, leaving out
    the nonzeros of ``seen``; ineligible items score -inf and sort last."""
    if allowed is not None:
        scores[:, ~allowed] = -np.inf
    if seen is not None:
        coo = seen.tocoo()
        scores[coo.row, coo.col] = -np.inf
    return _top_k(scores, k)


def _top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise top-k (indices, values), best first; -inf entries sort last."""
    k = min(k, scores.shape[1])
    if k <= 0:
        return np.zeros((scores.shape[0], 0), np.int64), np.zeros((scores.shape[0], 0), np.float32)
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    vals = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-vals, axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1), np.take_along_axis(vals, order, axis=1)


def _coerce(value: Any, default: Any) -> Any:
    """CLI ``--param KEY=VALUE`` strings take the type of the default."""
    if not isinstance(value, str) or isinstance(default, str) or default is None:
        return value
    if isinstance(default, bool):
        if value.lower() in {"1", "true", "yes"}:
            return True
        if value.lower() in {"0", "false", "no"}:
            return False
        raise InvalidInput(f"expected true/false, got {value!r}")
    return type(default)(value)


def known_users(model: Recommender, users: Sequence[str]) -> np.ndarray:
    """Indices of ``users`` (ids) in the model, -1 for unknown ones."""
    return np.array([model.user_index.get(str(u), -1) for u in users], dtype=np.int64)
