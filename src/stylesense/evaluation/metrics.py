"""Top-k ranking metrics for recommenders, one value per user, vectorised over users.

Everything starts from :func:`judge`: the ranked lists (an ``(n_users, k)`` array of integer
item codes, best first, ``-1`` where a model had fewer than k items to offer) are checked against
each user's relevant items once, giving a boolean hit matrix and the size of each relevant set.
Every metric is then a few array operations on that :class:`Judged` pair, so the metrics cannot
disagree about what counted as a hit.

Relevance is binary (an item was interacted with in the held-out data or not). A relevant item
that no model can rank (it is not in the training universe) still counts in ``n_relevant``, so
recall and nDCG are honest about what was missed. Ranked lists are assumed to hold distinct
items, as every :class:`~stylesense.recommenders.base.Recommender` returns.

Per-user values are returned rather than means so the caller decides how to aggregate (the
harness averages over test users, and sums revenue).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Judged:
    """``hits[u, r]``: the item user ``u`` got at rank ``r + 1`` is relevant to them.
    ``n_relevant[u]``: how many distinct items are relevant to ``u`` (ranked or not)."""

    hits: np.ndarray  # bool (n_users, k)
    n_relevant: np.ndarray  # int64 (n_users,)

    @property
    def k(self) -> int:
        return self.hits.shape[1]


def _pair_keys(users: np.ndarray, items: np.ndarray, width: int) -> np.ndarray:
    """One int64 per (user row, item code) pair, so pair membership is a single ``np.isin``."""
    return np.asarray(users, dtype=np.int64) * width + np.asarray(items, dtype=np.int64)


def _ranked_keys(ranked: np.ndarray, width: int) -> np.ndarray:
    rows = np.arange(ranked.shape[0], dtype=np.int64)[:, None]
    return _pair_keys(rows, ranked, width)


def _width(ranked: np.ndarray, items: np.ndarray) -> int:
    """Key stride: above every item code on either side, so no two pairs share a key (and a -1
    padding slot lands on code ``width - 1`` of the row before, which no real item has)."""
    return int(max(ranked.max(initial=-1), np.max(items, initial=-1))) + 2


def judge(ranked: np.ndarray, rel_user: np.ndarray, rel_item: np.ndarray) -> Judged:
    """Check ranked lists against relevant (user row, item code) pairs.

    ``ranked``: (n_users, k) int item codes, best first, -1 padding. ``rel_user[j]`` /
    ``rel_item[j]``: item ``rel_item[j]`` is relevant to row ``rel_user[j]``; repeated pairs
    (a user who bought the same item twice) count once. Item codes that appear in no ranked
    list (items outside the training universe get codes of their own) are never hits but do
    count towards ``n_relevant``.
    """
    ranked = np.asarray(ranked, dtype=np.int64)
    rel_item = np.asarray(rel_item, dtype=np.int64)
    width = _width(ranked, rel_item)
    relevant = np.unique(_pair_keys(rel_user, rel_item, width))
    n_relevant = np.bincount(relevant // width, minlength=ranked.shape[0]).astype(np.int64)
    hits = (ranked >= 0) & np.isin(_ranked_keys(ranked, width), relevant)
    return Judged(hits=hits, n_relevant=n_relevant)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den, 0 where den is 0 (a user with nothing relevant scores 0, not NaN)."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def precision_at_k(j: Judged) -> np.ndarray:
    """Hits / k. Divided by k even when fewer than k items were ranked (as MS Recommenders)."""
    return j.hits.sum(axis=1) / j.k


def recall_at_k(j: Judged) -> np.ndarray:
    """Hits / |relevant|, so a user with more than k relevant items cannot reach 1."""
    return _ratio(j.hits.sum(axis=1), j.n_relevant)


def hit_rate_at_k(j: Judged) -> np.ndarray:
    """1 if any of the top k is relevant, else 0."""
    return j.hits.any(axis=1).astype(np.float64)


def _discounts(k: int) -> np.ndarray:
    return 1.0 / np.log2(np.arange(2, k + 2))


def ndcg_at_k(j: Judged) -> np.ndarray:
    """Binary-relevance nDCG@k: DCG = sum of 1/log2(rank + 1) over hits, over the ideal DCG of
    min(k, |relevant|) hits at the top (MS Recommenders' definition; the log base cancels)."""
    disc = _discounts(j.k)
    dcg = j.hits @ disc
    ideal = np.concatenate([[0.0], np.cumsum(disc)])[np.minimum(j.n_relevant, j.k)]
    return _ratio(dcg, ideal)


def average_precision_at_k(j: Judged, *, by_relevant: bool = False) -> np.ndarray:
    """AP@k = sum over ranks i <= k of P(i) * rel(i), divided by min(|relevant|, k).

    That is Kaggle H&M's MAP@12 definition and MS Recommenders' ``map_at_k``. With
    ``by_relevant=True`` the sum is divided by |relevant| instead, as MS Recommenders' ``map``
    (Spark MLlib's MAP), which punishes users with more than k relevant items.
    """
    precision_at_i = np.cumsum(j.hits, axis=1) / np.arange(1, j.k + 1)
    total = (precision_at_i * j.hits).sum(axis=1)
    return _ratio(total, j.n_relevant if by_relevant else np.minimum(j.n_relevant, j.k))


def reciprocal_rank_at_k(j: Judged) -> np.ndarray:
    """1 / rank of the first hit within the top k, 0 if none (so its mean is MRR@k: items past
    rank k are never seen, and judging them would need a full ranking per user)."""
    first = np.argmax(j.hits, axis=1)
    return np.where(j.hits.any(axis=1), 1.0 / (first + 1), 0.0)


def coverage(ranked: np.ndarray, n_items: int) -> float:
    """Catalogue coverage: distinct items recommended to anyone / items in the universe."""
    ranked = np.asarray(ranked)
    return len(np.unique(ranked[ranked >= 0])) / n_items if n_items else 0.0


def intra_list_diversity(ranked: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """Per user, the mean ``1 - cosine`` between the search vectors of every two items of
    their list (how unlike each other the products shown look; 0: all alike). ``vectors``
    (n_items, d) holds L2-normalised rows by item code, zero rows for items without a photo,
    which take part in no pair. NaN for a list with fewer than two items that have one."""
    ranked = np.asarray(ranked, dtype=np.int64)
    vectors = np.asarray(vectors, dtype=np.float32)
    has = np.linalg.norm(vectors, axis=1) > 0
    valid = (ranked >= 0) & has[np.clip(ranked, 0, None)]
    picked = vectors[np.clip(ranked, 0, None)] * valid[..., None]
    sims = np.einsum("ukd,ujd->ukj", picked, picked)
    n = valid.sum(axis=1).astype(np.float64)
    pairs = n * (n - 1)
    off_diagonal = sims.sum(axis=(1, 2)) - np.einsum("ukk->u", sims)
    return np.where(pairs > 0, 1.0 - off_diagonal / np.where(pairs > 0, pairs, 1.0), np.nan)


def revenue_at_k(
    ranked: np.ndarray, buy_user: np.ndarray, buy_item: np.ndarray, buy_price: np.ndarray
) -> np.ndarray:
    """Per user, the summed price of held-out purchases whose item is in the user's top k.

    Event level, not set level: each purchase event of a recommended item counts, so a
    recommended item bought twice earns twice. Unknown (NaN) prices count 0.
    """
    ranked = np.asarray(ranked, dtype=np.int64)
    buy_item = np.asarray(buy_item, dtype=np.int64)
    width = _width(ranked, buy_item)
    shown = _ranked_keys(ranked, width)[ranked >= 0]
    hit = np.isin(_pair_keys(buy_user, buy_item, width), shown)
    price = np.nan_to_num(np.asarray(buy_price, dtype=np.float64), nan=0.0)
    return np.bincount(np.asarray(buy_user, dtype=np.int64), weights=price * hit, minlength=ranked.shape[0])
