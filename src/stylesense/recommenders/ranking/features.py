"""The feature row of each (shopper, candidate) pair, as the ranker learns and serves it.

Groups (their names in :func:`feature_names` order):

- per source: its score and the candidate's rank in its list (missing where it did not propose
  the candidate: LightGBM learns what a missing value means), and how many sources did;
- the item (:data:`~.snapshot.ITEM_FEATURES`): sales in the last 1 and 4 weeks and ever, the
  trend, distinct buyers, days since its first and last sale, price, whether it has a photo,
  how many colours its product has, decayed sales;
- the shopper: events, distinct items, days since their last and first event, events in the
  last 4 weeks, their mean and spread of prices, and their attributes where the data has them;
- the pair: the shopper's events on the item and days since the last one, the same for its
  product group, price against the shopper's price band, the shopper's (decayed) share of
  events in the item's value of each attribute column (affinity to its category, colour, ...),
  and the best and mean image similarity of the item to the shopper's recent items.

Everything reads the snapshot and the shopper's history only, so a feature row at a training
window's start holds nothing of the window itself (``tests/test_model_ranker.py`` checks it).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from stylesense.recommenders.ranking.candidates import Found, Shopper, SourceParams, recent_with_photo
from stylesense.recommenders.ranking.snapshot import DAY, ITEM_FEATURES, Snapshot

USER_FEATURES = ("user_events", "user_items", "user_days_since_last", "user_days_since_first", "user_events_4w",
                 "user_price_mean", "user_price_std")
PAIR_FEATURES = ("pair_events", "pair_days_since", "pair_weight", "group_events", "group_days_since",
                 "group_share", "price_ratio", "price_z", "image_sim_max", "image_sim_mean")


def feature_names(sources: Sequence[str], columns: Sequence[str], shopper_columns: Sequence[str]) -> list[str]:
    return [
        *(f"{s}_{kind}" for s in sources for kind in ("score", "rank")), "n_sources",
        *ITEM_FEATURES, *USER_FEATURES, *(f"shopper_{c}" for c in shopper_columns),
        *PAIR_FEATURES, *(f"affinity_{c}" for c in columns),
    ]


def pair_features(snap: Snapshot, shopper: Shopper, found: Found, sources: Sequence[str],
                  p: SourceParams) -> tuple[np.ndarray, np.ndarray]:
    """(candidates: sorted item indices, their (n, len(feature_names)) float32 rows)."""
    lists = [found[s][0] for s in sources if s in found]
    cand = np.unique(np.concatenate(lists)) if lists else np.zeros(0, np.int64)
    parts = [_sources(cand, found, sources), snap.item_features(cand)]
    parts.append(np.broadcast_to(_shopper(snap, shopper), (len(cand), len(USER_FEATURES) + len(snap.shoppers.columns))))
    parts.append(_pairs(snap, shopper, cand, p))
    return cand, np.concatenate(parts, axis=1).astype(np.float32, copy=False)


def _sources(cand: np.ndarray, found: Found, sources: Sequence[str]) -> np.ndarray:
    out = np.full((len(cand), 2 * len(sources) + 1), np.nan, np.float32)
    out[:, -1] = 0.0
    for j, name in enumerate(sources):
        items, scores = found.get(name, (np.zeros(0, np.int64), np.zeros(0, np.float32)))
        at = np.searchsorted(cand, items)
        out[at, 2 * j] = scores
        out[at, 2 * j + 1] = np.arange(1, len(items) + 1)
        out[at, -1] += 1.0
    return out


def _shopper(snap: Snapshot, s: Shopper) -> np.ndarray:
    h = s.history
    if len(h):
        age = (s.now - h.ts) / DAY
        priced = h.price[np.isfinite(h.price)]
        own = [len(h), len(np.unique(h.item)), age.min(), age.max(), float((age < 28).sum()),
               priced.mean() if len(priced) else np.nan, priced.std() if len(priced) > 1 else np.nan]
    else:
        own = [0.0, 0.0, np.nan, np.nan, 0.0, np.nan, np.nan]
    attrs = snap.shoppers.of(s)[0]
    return np.concatenate([np.asarray(own, np.float32), attrs.astype(np.float32)])


def _last(keys: np.ndarray, ts: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, ...]:
    """Distinct keys, their event counts, latest time and weight sum."""
    uniq, inv, counts = np.unique(keys, return_inverse=True, return_counts=True)
    latest = np.full(len(uniq), np.iinfo(np.int64).min, np.int64)
    np.maximum.at(latest, inv, ts)
    return uniq, counts, latest, np.bincount(inv, weights=weights, minlength=len(uniq))


def _lookup(uniq: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions of ``keys`` in the sorted ``uniq`` and whether each is there."""
    if not len(uniq):
        return np.zeros(len(keys), np.int64), np.zeros(len(keys), bool)
    at = np.minimum(np.searchsorted(uniq, keys), len(uniq) - 1)
    return at, uniq[at] == keys


def _pairs(snap: Snapshot, s: Shopper, cand: np.ndarray, p: SourceParams) -> np.ndarray:
    c, h = snap.content, s.history
    out = np.full((len(cand), len(PAIR_FEATURES) + len(c.columns)), np.nan, np.float32)
    if not len(h) or not len(cand):
        return out
    decayed = s.decayed(p.half_life_days)
    total = float(decayed.sum()) or 1.0
    # the item itself
    uniq, counts, latest, weight = _last(h.item, h.ts, decayed)
    at, hit = _lookup(uniq, cand)
    out[:, 0] = np.where(hit, counts[at], 0.0)
    out[:, 1] = np.where(hit, (s.now - latest[at]) / DAY, np.nan)
    out[:, 2] = np.where(hit, weight[at] / total, 0.0)
    # its product group
    hg, cg = c.group[h.item], c.group[cand]
    known = hg >= 0
    if known.any():
        uniq, counts, latest, weight = _last(hg[known], h.ts[known], decayed[known])
        at, hit = _lookup(uniq, cg)
        hit &= cg >= 0
        out[:, 3] = np.where(hit, counts[at], 0.0)
        out[:, 4] = np.where(hit, (s.now - latest[at]) / DAY, np.nan)
        out[:, 5] = np.where(hit, weight[at] / total, 0.0)
    # price against the shopper's band
    priced = h.price[np.isfinite(h.price)]
    if len(priced):
        price = snap.price[cand]
        mean, std = priced.mean(), priced.std()
        out[:, 6] = price / max(mean, 1e-9)
        out[:, 7] = (price - mean) / max(std, 1e-3 * max(mean, 1e-9))
    # image similarity to the recent items with a photo
    recent = recent_with_photo(c.row, h.item, p.visual_recent)
    photo = c.row[cand] >= 0
    if len(recent) and photo.any():
        sims = c.unit(cand[photo]) @ c.unit(recent).T
        out[photo, 8] = sims.max(axis=1)
        out[photo, 9] = sims.mean(axis=1)
    # affinity to each attribute column's value
    base = len(PAIR_FEATURES)
    for j in range(len(c.columns)):
        codes = c.codes[h.item, j]
        known = codes >= 0
        if not len(c.levels[j]):
            continue
        share = np.bincount(codes[known], weights=decayed[known], minlength=len(c.levels[j])) / total
        cc = c.codes[cand, j]
        out[:, base + j] = np.where(cc >= 0, share[np.maximum(cc, 0)], np.nan)
    return out
