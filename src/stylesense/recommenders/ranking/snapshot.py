"""The event log as known at one moment ``now``: what the candidate sources and the features read.

The ranker learns from the past the way it will be used: for a training window starting at
``t``, everything it reads (the candidate models, item sales, a shopper's history) is a
:class:`Snapshot` of the events before ``t`` only, and the labels are the events of the window.
Serving reads the snapshot of all training events (plus the live events folded in since).

A snapshot keeps the model's whole user and item universe (indices never shift between windows);
users and items without events before ``now`` simply have none.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy import sparse

from stylesense.recommenders.base import Recommender, _top_k
from stylesense.recommenders.data import Interactions
from stylesense.recommenders.ranking.content import Content

if TYPE_CHECKING:
    from stylesense.recommenders.ranking.candidates import Shopper

DAY = 86_400
WEEK = 7 * DAY
AGE_BAND_YEARS = 10  # the age segment: shoppers of the same decade of age


def log_end(ts: np.ndarray) -> int:
    """Where a log ends: one day after its last day for day-stamped logs (every time at
    midnight, as H&M's), else one second after its last event (the temporal split's rule)."""
    if len(ts) == 0:
        return 0
    tick = DAY if (np.asarray(ts) % DAY == 0).all() else 1
    return int(np.max(ts)) + tick


def before(data: Interactions, t: int) -> Interactions:
    """The events of ``data`` before ``t``, over the same users and items (same indices)."""
    n = int(np.searchsorted(data.ts, t, side="left"))  # events are sorted by time
    return Interactions(users=data.users, items=data.items, user=data.user[:n], item=data.item[:n],
                        weight=data.weight[:n], ts=data.ts[:n], price=data.price[:n], session=data.session[:n],
                        weights=dict(data.weights))


@dataclass(frozen=True)
class History:
    """One shopper's events, oldest first: items, epoch seconds, weights, prices (NaN: unknown)."""

    item: np.ndarray
    ts: np.ndarray
    weight: np.ndarray
    price: np.ndarray

    @classmethod
    def empty(cls) -> "History":
        return cls(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32), np.zeros(0, np.float32))

    def __len__(self) -> int:
        return len(self.item)

    def plus(self, other: "History") -> "History":
        if not len(other):
            return self
        return History(*(np.concatenate([a, b]) for a, b in zip(
            (self.item, self.ts, self.weight, self.price), (other.item, other.ts, other.weight, other.price))))


@dataclass
class Shoppers:
    """Shopper attributes where the data has them (customers' age, ...): numeric ``columns``
    per user index (NaN: unknown), and ``band``, the age segment (-1: unknown)."""

    columns: list[str]
    values: np.ndarray  # (n_users, len(columns)) float32
    band: np.ndarray  # int64 per user

    @classmethod
    def empty(cls, n_users: int) -> "Shoppers":
        return cls([], np.zeros((n_users, 0), np.float32), np.full(n_users, -1, np.int64))

    @classmethod
    def build(cls, user_ids: np.ndarray, table: pd.DataFrame | None, age_column: str = "age") -> "Shoppers":
        """From a table indexed by user id: its numeric columns (text columns are left out: a
        postal code or a member status would need an encoding of its own)."""
        if table is None or table.empty:
            return cls.empty(len(user_ids))
        numeric = table.apply(pd.to_numeric, errors="coerce")
        columns = [str(c) for c in numeric.columns if numeric[c].notna().any()]
        return cls(columns, np.zeros((0, len(columns)), np.float32), np.zeros(0, np.int64)).rows(
            user_ids, table, age_column)

    def rows(self, user_ids: Sequence[str] | np.ndarray, table: pd.DataFrame | None,
             age_column: str = "age") -> "Shoppers":
        """Attributes of ``user_ids`` read from ``table`` (indexed by user id) in this object's
        columns: a profile written after the fit gets the features the boosters were trained
        on; columns the fit did not have are left out, missing ones are unknown (NaN)."""
        ids = pd.Index(np.asarray(user_ids, dtype=str))
        if table is None or table.empty or not self.columns:
            return Shoppers(self.columns, np.full((len(ids), len(self.columns)), np.nan, np.float32),
                            np.full(len(ids), -1, np.int64))
        numeric = table.reindex(columns=self.columns).apply(pd.to_numeric, errors="coerce")
        numeric.index = numeric.index.astype(str)
        values = numeric[~numeric.index.duplicated(keep="last")].reindex(ids).to_numpy(np.float32)
        band = np.full(len(ids), -1, np.int64)
        if age_column in self.columns:
            age = values[:, self.columns.index(age_column)]
            ok = np.isfinite(age)
            band[ok] = (age[ok] // AGE_BAND_YEARS).astype(np.int64)
        return Shoppers(self.columns, values, band)

    def of(self, s: Shopper) -> tuple[np.ndarray, int]:
        """A query's attributes and age band: its own where it carries them (a shopper known
        only by a profile), else its user's row, else unknown."""
        if s.attrs is not None:
            return s.attrs.values[0], int(s.attrs.band[0])
        if not s.session and s.user < len(self.band):
            return self.values[s.user], int(self.band[s.user])
        return np.full(len(self.columns), np.nan, np.float32), -1

    def grown(self, n_users: int) -> "Shoppers":
        """Rows for users added since (unknown attributes)."""
        extra = n_users - len(self.band)
        if extra <= 0:
            return self
        unknown = np.full((extra, len(self.columns)), np.nan, np.float32)
        return Shoppers(self.columns, np.concatenate([self.values, unknown]),
                        np.concatenate([self.band, np.full(extra, -1, np.int64)]))

    def take(self, at: np.ndarray) -> "Shoppers":
        return Shoppers(self.columns, self.values[at], self.band[at])

    def replaced(self, at: np.ndarray, given: "Shoppers") -> "Shoppers":
        """A copy whose rows ``at`` are ``given``'s (profiles changed since the fit): served
        models are changed by swapping, never in place."""
        values, band = self.values.copy(), self.band.copy()
        values[at], band[at] = given.values, given.band
        return Shoppers(self.columns, values, band)

    def appended(self, given: "Shoppers") -> "Shoppers":
        return Shoppers(self.columns, np.concatenate([self.values, given.values]),
                        np.concatenate([self.band, given.band]))


class Snapshot:
    """Events before ``now``: per-item sales, per-user histories, the best sellers overall and
    per segment, and the fitted candidate models (``components``)."""

    def __init__(self, data: Interactions, now: int, content: Content, shoppers: Shoppers,
                 components: Mapping[str, Recommender], n: int, popular_half_life_days: float = 7.0) -> None:
        self.data, self.now, self.content, self.shoppers = data, int(now), content, shoppers
        self.components = dict(components)
        order = np.argsort(data.user, kind="stable")  # events are time-sorted: each user's stay in order
        self._order = order
        self._starts = np.searchsorted(data.user[order], np.arange(data.n_users + 1))
        self._item_table(popular_half_life_days)
        self._segments(n)

    # -- items ------------------------------------------------------------------------------
    def _item_table(self, half_life_days: float) -> None:
        d, n = self.data, self.data.n_items
        age = (self.now - d.ts).astype(np.float64)
        count = lambda mask: np.bincount(d.item[mask], minlength=n).astype(np.float32)  # noqa: E731
        self.sales_1w, self.sales_4w = count(age < WEEK), count(age < 4 * WEEK)
        self.sales_all = np.bincount(d.item, minlength=n).astype(np.float32)
        self.buyers = np.asarray((d.matrix > 0).sum(axis=0), dtype=np.float32).ravel()
        first = np.full(n, np.iinfo(np.int64).max, np.int64)
        np.minimum.at(first, d.item, d.ts)
        last = np.full(n, -1, np.int64)
        np.maximum.at(last, d.item, d.ts)
        sold = self.sales_all > 0
        self.age_days = np.where(sold, (self.now - first) / DAY, np.nan).astype(np.float32)
        self.since_sale_days = np.where(sold, (self.now - last) / DAY, np.nan).astype(np.float32)
        priced = np.isfinite(d.price)
        total = np.bincount(d.item[priced], weights=d.price[priced], minlength=n)
        times = np.bincount(d.item[priced], minlength=n)
        with np.errstate(invalid="ignore", divide="ignore"):
            self.price = np.where(times > 0, total / times, self.content.price).astype(np.float32)
        decay = np.exp2(-age / (half_life_days * DAY))
        self.trending = np.bincount(d.item, weights=d.weight * decay, minlength=n).astype(np.float32)
        # the product's (all its colours') size and sales: a new colour of a product that sells
        # has a record before its first sale
        self.group_size, self.group_1w, self.group_4w, self.group_all = (np.zeros(n, np.float32) for _ in range(4))
        self.group_age_days = np.full(n, np.nan, np.float32)
        g = self.content.group
        known = np.flatnonzero(g >= 0)
        if len(known):
            gk, m = g[known], len(self.content.group_levels)
            for out, per_item in ((self.group_size, np.ones(len(known))), (self.group_1w, self.sales_1w[known]),
                                  (self.group_4w, self.sales_4w[known]), (self.group_all, self.sales_all[known])):
                out[known] = np.bincount(gk, weights=per_item, minlength=m)[gk]
            group_first = np.full(m, np.iinfo(np.int64).max, np.int64)
            np.minimum.at(group_first, gk, first[known])
            launched = group_first[gk] < np.iinfo(np.int64).max
            self.group_age_days[known[launched]] = (self.now - group_first[gk][launched]) / DAY
        self._decay = decay

    def _segments(self, n: int) -> None:
        """The ``n`` best sellers (decayed) overall, per age band and per main-category value."""
        d, k = self.data, max(1, n)
        self.popular = _top(self.trending, k)
        self.by_band: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        band = self.shoppers.band[d.user] if len(self.shoppers.band) >= d.n_users else np.full(d.n_events, -1)
        for b in np.unique(band[band >= 0]).tolist():
            mine = band == b
            self.by_band[b] = _top(np.bincount(d.item[mine], weights=(d.weight * self._decay)[mine],
                                               minlength=d.n_items).astype(np.float32), k)
        self.by_category: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        c = self.content.segment
        if c >= 0:
            codes = self.content.codes[:, c]
            for level in np.unique(codes[codes >= 0]).tolist():
                self.by_category[level] = _top(np.where(codes == level, self.trending, -np.inf).astype(np.float32), k)

    def item_features(self, items: np.ndarray) -> np.ndarray:
        """(len(items), len(ITEM_FEATURES)) float32 rows, in :data:`ITEM_FEATURES` order."""
        i = np.asarray(items, dtype=np.int64)
        trend = self.sales_1w[i] * 4.0 / (self.sales_4w[i] + 1.0)
        return np.column_stack([
            self.sales_1w[i], self.sales_4w[i], self.sales_all[i], trend, self.buyers[i], self.age_days[i],
            self.since_sale_days[i], self.price[i], self.content.has_vector[i].astype(np.float32), self.group_size[i],
            self.trending[i], self.group_1w[i], self.group_4w[i], self.group_all[i], self.group_age_days[i],
        ]).astype(np.float32)

    # -- users ------------------------------------------------------------------------------
    def history(self, user: int) -> History:
        """The user's events before ``now`` (none for users past the snapshot's)."""
        if user >= self.data.n_users:
            return History.empty()
        e = self._order[self._starts[user] : self._starts[user + 1]]
        d = self.data
        return History(d.item[e], d.ts[e], d.weight[e], d.price[e])

    def has_history(self) -> np.ndarray:
        """Per user, whether they have any event before ``now``."""
        return np.diff(self._starts) > 0


ITEM_FEATURES = ("item_sales_1w", "item_sales_4w", "item_sales_all", "item_trend", "item_buyers", "item_age_days",
                 "item_days_since_sale", "item_price", "item_has_photo", "item_group_size", "item_trending",
                 "group_sales_1w", "group_sales_4w", "group_sales_all", "group_age_days")


def _top(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The top ``k`` items with a finite score above 0 (nobody bought the rest), best first."""
    idx, val = _top_k(np.asarray(scores, np.float32)[None, :].copy(), k)
    keep = np.isfinite(val[0]) & (val[0] > 0)
    return idx[0][keep], val[0][keep]


def rows_of(histories: list[History], n_items: int) -> sparse.csr_matrix:
    """The users' history rows (summed weights), for the candidate models' ``scores``."""
    if not histories:
        return sparse.csr_matrix((0, n_items), dtype=np.float32)
    r = np.repeat(np.arange(len(histories)), [len(h) for h in histories])
    items = np.concatenate([h.item for h in histories])
    weights = np.concatenate([h.weight for h in histories])
    m = sparse.csr_matrix((weights, (r, items)), shape=(len(histories), n_items), dtype=np.float32)
    m.sum_duplicates()
    return m
