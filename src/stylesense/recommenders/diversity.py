"""Maximal marginal relevance (MMR): re-rank a model's top candidates so a list does not show
ten near-identical products.

A model ranks every item on its own, so its top ten can be one black dress in ten shots. MMR
(Carbonell and Goldstein, 1998) picks the list greedily: each next item maximises

    (1 - diversity) * relevance - diversity * (highest similarity to an item already picked)

where relevance is the model's score scaled to [0, 1] over the candidates (scores of different
models have different scales; the similarities, cosines of the catalogue's search vectors,
are already in [-1, 1]), so ``diversity`` means the same for every model: 0 is the model's own
order, 1 ignores the scores after the first pick. Only the top :func:`candidate_count` items
by score are considered: a diverse list must still be made of items the model thinks fit.

Pure NumPy, no state: the caller hands over scores and vectors (a zero vector, for an item
without a photo, is like nothing).
"""

from __future__ import annotations

import numpy as np

from stylesense.errors import InvalidInput

MIN_CANDIDATES = 50


def candidate_count(k: int) -> int:
    """How many of a model's best items MMR picks ``k`` from: 3k, at least 50."""
    return max(3 * k, MIN_CANDIDATES)


def check_diversity(diversity: float) -> float:
    """``diversity`` as a float in [0, 1]; InvalidInput for anything else (NaN included)."""
    try:
        value = float(diversity)
    except (TypeError, ValueError):
        raise InvalidInput(f"diversity must be a number from 0 to 1, got {diversity!r}") from None
    if not 0.0 <= value <= 1.0:
        raise InvalidInput(f"diversity must be from 0 (off) to 1, got {diversity!r}")
    return value


def mmr(scores: np.ndarray, vectors: np.ndarray, k: int, diversity: float) -> np.ndarray:
    """Positions into the candidates (``scores`` (n,), ``vectors`` (n, d) L2-normalised rows),
    at most ``k``, in MMR order; diversity 0 is the order of ``scores`` (ties: the earlier
    candidate). Candidates scoring -inf (not recommendable) are never picked."""
    scores = np.asarray(scores, dtype=np.float64)
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.shape[0] != len(scores):
        raise InvalidInput(f"{len(scores)} scores for {vectors.shape[0]} vectors")
    live = np.flatnonzero(np.isfinite(scores))
    k = min(k, len(live))
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    order = live[np.argsort(-scores[live], kind="stable")]
    if diversity <= 0.0:
        return order[:k].astype(np.int64)
    relevance = scores[order]
    spread = relevance[0] - relevance[-1]
    relevance = (relevance - relevance[-1]) / spread if spread > 0 else np.ones_like(relevance)
    sims = vectors[order] @ vectors[order].T
    closest = np.full(len(order), -np.inf)  # highest similarity to a picked item
    free = np.ones(len(order), dtype=bool)
    picked: list[int] = []
    for _ in range(k):
        gain = (1.0 - diversity) * relevance - diversity * np.where(np.isfinite(closest), closest, 0.0)
        best = int(np.argmax(np.where(free, gain, -np.inf)))
        picked.append(best)
        free[best] = False
        closest = np.maximum(closest, sims[best])
    return order[picked].astype(np.int64)

