"""Candidate sources: each proposes up to ``n`` items per shopper with a score, cheaply.

The ranker only ever ranks what some source proposed, so a source is worth its cost when it
reaches purchases the others miss (``bench/ranker.py`` reports each one's recall):

- ``repurchase``: the shopper's own items, by time-decayed weight (fashion is bought again).
- ``group``: other colours of the products they bought or viewed (the catalogue's product
  group), scored by the decayed weight of the group; reaches products nobody has bought.
- ``visual``: the items that look most like their recent items (best weighted cosine of the
  image vectors); reaches products nobody has bought, including ones imported after training.
- ``itemknn``, ``als``, ``ease``, ``gru4rec``: the registered models' top items, fitted on the
  snapshot's events ("bought together", factors, the linear autoencoder, the next item).
- ``new``: the catalogue's products nobody has bought or viewed yet that look most like the
  shopper's recent items (new arrivals; in a catalogue that also holds products that never
  sell, these need the ranker's other features to tell them apart).
- ``popular``: the best sellers of the last days (decayed counts), the same for everyone.
- ``segment``: the best sellers among shoppers of the same age band where the data has ages,
  else among items of the shopper's main category.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import sparse

from stylesense.recommenders.base import _top_k
from stylesense.recommenders.ranking.snapshot import DAY, History, Shoppers, Snapshot

SOURCES = ("repurchase", "group", "visual", "new", "itemknn", "als", "ease", "gru4rec", "popular", "segment")
MODEL_SOURCES = ("itemknn", "als", "ease", "gru4rec")  # registered models fitted per snapshot

Found = dict[str, tuple[np.ndarray, np.ndarray]]  # source -> (items, scores), best first


@dataclass(frozen=True)
class Shopper:
    """One query: the user index (``session`` True: a history that belongs to nobody), their
    events oldest first (training and live), their history row over the items, and ``now``.
    ``attrs``: the attributes (one row) of a shopper the model knows only by a profile."""

    user: int
    history: History
    row: sparse.csr_matrix
    now: int
    session: bool = False
    attrs: Shoppers | None = None

    def decayed(self, half_life_days: float) -> np.ndarray:
        """Each event's weight times ``0.5 ** (age / half_life)``."""
        age = np.maximum(self.now - self.history.ts, 0) / DAY
        return self.history.weight * np.exp2(-age / half_life_days).astype(np.float32)


@dataclass(frozen=True)
class SourceParams:
    n: int  # items per source, unless ``sizes`` names another number for it
    half_life_days: float  # decay of the shopper's own events (repurchase, group, affinities)
    visual_recent: int  # distinct recent items with a photo the visual source looks like
    visual_decay: float  # their weights: decay ** steps back
    sizes: Mapping[str, int] = field(default_factory=dict)

    def size(self, source: str) -> int:
        return self.sizes.get(source, self.n)


def generate(snap: Snapshot, shoppers: Sequence[Shopper], sources: Sequence[str], p: SourceParams) -> list[Found]:
    """Every source's candidates for every shopper (the model sources scored in one batch)."""
    out: list[Found] = [{} for _ in shoppers]
    for name in sources:
        if name in MODEL_SOURCES:
            for found, items in zip(out, _model(snap, name, shoppers, p.size(name))):
                found[name] = items
        elif name not in _BY_LOOKS:
            for found, shopper in zip(out, shoppers):
                found[name] = _SINGLE[name](snap, shopper, p)
    wanted = [name for name in sources if name in _BY_LOOKS]
    if wanted:  # one similarity row per shopper serves both
        for found, shopper in zip(out, shoppers):
            sims = looks(snap, shopper, p)
            for name in wanted:
                found[name] = _BY_LOOKS[name](snap, shopper, p, sims)
    return out


def _model(snap: Snapshot, name: str, shoppers: Sequence[Shopper], n: int) -> list[tuple[np.ndarray, np.ndarray]]:
    model = snap.components[name]
    known = [s for s in shoppers if not s.session]
    rows = np.zeros((len(shoppers), model.data.n_items), np.float32)
    if known:
        users = np.array([s.user for s in known], dtype=np.int64)
        width = model.data.n_items  # items added after the model's fit have no column in it
        history = sparse.vstack([s.row[:, :width] for s in known]).tocsr()
        scored = model.scores(users, history)
        rows[[i for i, s in enumerate(shoppers) if not s.session]] = scored
    for i, s in enumerate(shoppers):
        if s.session:
            rows[i] = model.session_scores(s.history.item[s.history.item < model.data.n_items],
                                           s.history.weight[s.history.item < model.data.n_items])
    idx, val = _top_k(rows, n)
    return [(i[np.isfinite(v)], v[np.isfinite(v)]) for i, v in zip(idx, val)]


def _best(scores: np.ndarray, items: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``items`` with ``scores``, the top ``n``, best first (ties: the lower item index)."""
    if len(items) > n:
        keep = np.argpartition(-scores, n - 1)[:n]
        items, scores = items[keep], scores[keep]
    order = np.lexsort((items, -scores))
    return items[order].astype(np.int64), scores[order].astype(np.float32)


def _by_item(keys: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct ``keys`` and the sum of ``weights`` per key."""
    uniq, inv = np.unique(keys, return_inverse=True)
    return uniq, np.bincount(inv, weights=weights, minlength=len(uniq))


def repurchase(snap: Snapshot, s: Shopper, p: SourceParams) -> tuple[np.ndarray, np.ndarray]:
    if not len(s.history):
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    items, score = _by_item(s.history.item, s.decayed(p.half_life_days))
    return _best(score, items, p.size("repurchase"))


def group(snap: Snapshot, s: Shopper, p: SourceParams) -> tuple[np.ndarray, np.ndarray]:
    g = snap.content.group[s.history.item] if len(s.history) else np.zeros(0, np.int64)
    known = g >= 0
    if not known.any():
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    groups, weight = _by_item(g[known], s.decayed(p.half_life_days)[known])
    members = snap.content.members(groups)
    sizes = snap.content.group_starts[groups + 1] - snap.content.group_starts[groups]
    return _best(np.repeat(weight, sizes), members, p.size("group"))


def recent_with_photo(content_row: np.ndarray, items: np.ndarray, recent: int) -> np.ndarray:
    """The last ``recent`` distinct ``items`` (oldest first) that have a vector, newest first."""
    seq = np.asarray(items, dtype=np.int64)[::-1]
    seq = seq[content_row[seq] >= 0]
    _, first = np.unique(seq, return_index=True)
    return seq[np.sort(first)][:recent]


def looks(snap: Snapshot, s: Shopper, p: SourceParams) -> np.ndarray | None:
    """Per item with a vector (``content.vector_items`` order), its best recency-weighted
    cosine to the shopper's recent items with a photo; None when they have none."""
    c = snap.content
    recent = recent_with_photo(c.row, s.history.item, p.visual_recent)
    if len(recent) == 0 or len(c.vector_items) == 0:
        return None
    w = p.visual_decay ** np.arange(len(recent), dtype=np.float32)
    return (c.vectors @ (c.unit(recent).T * w)).max(axis=1)


def visual(snap: Snapshot, s: Shopper, p: SourceParams, sims: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    if sims is None:
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    return _best(sims, snap.content.vector_items, p.size("visual"))


def new(snap: Snapshot, s: Shopper, p: SourceParams, sims: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    if sims is None:
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    unsold = snap.sales_all[snap.content.vector_items] == 0
    return _best(sims[unsold], snap.content.vector_items[unsold], p.size("new"))


def popular(snap: Snapshot, s: Shopper, p: SourceParams) -> tuple[np.ndarray, np.ndarray]:
    items, score = snap.popular
    return items[: p.size("popular")], score[: p.size("popular")]


def main_category(snap: Snapshot, s: Shopper, p: SourceParams) -> int:
    """The shopper's most bought value of the segment column (decayed weight), -1: none."""
    c = snap.content.segment
    if c < 0 or not len(s.history):
        return -1
    codes = snap.content.codes[s.history.item, c]
    known = codes >= 0
    if not known.any():
        return -1
    levels, weight = _by_item(codes[known], s.decayed(p.half_life_days)[known])
    return int(levels[np.argmax(weight)])


def segment(snap: Snapshot, s: Shopper, p: SourceParams) -> tuple[np.ndarray, np.ndarray]:
    band = snap.shoppers.of(s)[1]
    if band >= 0 and band in snap.by_band:
        items, score = snap.by_band[band]
    else:
        level = main_category(snap, s, p)
        if level not in snap.by_category:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        items, score = snap.by_category[level]
    return items[: p.size("segment")], score[: p.size("segment")]


_SINGLE = {"repurchase": repurchase, "group": group, "popular": popular, "segment": segment}
_BY_LOOKS = {"visual": visual, "new": new}
