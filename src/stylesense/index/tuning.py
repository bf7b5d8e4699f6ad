"""Recall knobs tuned at build time on held-out build vectors, and recall@k itself (which the
contract tests and benchmarks of every backend measure with)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

TUNE_K = 10
"""Recall knobs are tuned for recall@10, the depth the app shows."""
TUNE_QUERIES = 512
"""Held-out build vectors used to tune a recall knob: ~+-0.01 on the recall estimate."""
TUNE_MIN_ITEMS = 2000
"""Below this many items tuning is noise; implementations use an exhaustive setting instead."""
TUNE_MARGIN = 0.01
"""Tune to target + margin so the estimate's sampling error does not land below the target."""


def tune_knob(
    ladder: Sequence[int],
    search: Callable[[int], np.ndarray],
    truth: np.ndarray,
    target: float,
) -> tuple[int, float]:
    """Smallest ladder value whose held-out recall@k reaches ``target``: (value, recall).

    ``search(value)`` returns the ids (m, k) found with the knob at ``value``; ``truth`` the
    exact ids. WHY tune at build time: the right efSearch/nprobe/pool depends on the data
    (cluster structure, intrinsic dimension), and a fixed default is either slow or misses.
    When no value reaches the target (lossy codes such as PQ cap the recall), take the smallest
    value within 0.01 of the best recall seen rather than the slowest setting for nothing.
    """
    recalls: list[float] = []
    for value in ladder:
        recalls.append(recall_at_k(search(value), truth))
        if recalls[-1] >= target:
            return value, recalls[-1]
    best = max(recalls)
    pick = next(i for i, r in enumerate(recalls) if r >= best - 0.01)
    return ladder[pick], recalls[pick]


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean fraction of the true top-k ids present in the found top-k (ids -1 ignored)."""
    hits = sum(len(np.intersect1d(f[f >= 0], t[t >= 0])) for f, t in zip(found, truth, strict=True))
    return hits / max(int((truth >= 0).sum()), 1)


def split_for_tuning(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(rest, held_out) row indices: the held-out rows serve as tuning queries.

    WHY held out rather than leave-one-out: a query that is itself in an HNSW graph lands on
    its own node whose links are its neighbours, which flatters recall; a held-out query is
    what the app sends. The held-out rows are added back after tuning.
    """
    rng = np.random.default_rng(seed)
    held = np.sort(rng.choice(n, size=min(TUNE_QUERIES, n // 10), replace=False))
    rest = np.setdiff1d(np.arange(n), held, assume_unique=True)
    return rest, held
