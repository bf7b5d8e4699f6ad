"""Exact top-k pieces the in-memory kinds share: faiss result normalisation, blocked exact
scans, bitmap selectors over slots, and the exact fallback for approximate searches that come
back short."""

from __future__ import annotations

from collections.abc import Callable

import faiss
import numpy as np

EXACT_BLOCK = 32768
"""Rows gathered at once by blocked scans and adds: bounds temporaries (160 MB at dim 1280)."""


def pad_results(scores: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Normalise faiss output: float32/int64, score -inf wherever the id is -1 (faiss uses -FLT_MAX)."""
    scores = np.asarray(scores, dtype=np.float32)
    ids = np.asarray(ids, dtype=np.int64)
    scores[ids < 0] = -np.inf
    return scores, ids


def fill_short_rows(
    scores: np.ndarray,
    ids: np.ndarray,
    want: int,
    exact: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
) -> None:
    """Redo exactly, in place, the rows that found fewer than ``want`` results.

    An approximate search can come back short (few items in the probed IVF lists, an HNSW
    walk that met few allowed nodes); ``want`` = min(k, eligible items) so a short row is
    always a search miss, never a lack of items. ``exact(rows)`` searches those query rows.
    """
    short = np.flatnonzero((ids >= 0).sum(axis=1) < want)
    if len(short):
        scores[short], ids[short] = exact(short)


def empty_results(m: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    return np.full((m, k), -np.inf, np.float32), np.full((m, k), -1, np.int64)


def exact_topk(queries: np.ndarray, base: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact inner-product top-k of each query over ``base`` rows: (scores, row indices)."""
    if len(base) == 0 or k == 0:
        return empty_results(len(queries), k)
    scores, rows = faiss.knn(queries, base, min(k, len(base)), metric=faiss.METRIC_INNER_PRODUCT)
    if rows.shape[1] < k:
        pad = k - rows.shape[1]
        scores = np.pad(scores, ((0, 0), (0, pad)), constant_values=-np.inf)
        rows = np.pad(rows, ((0, 0), (0, pad)), constant_values=-1)
    return pad_results(scores, rows)


def topk_of(scores: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the k best (score, id) candidates, descending, padded with (-inf, -1).

    Pure numpy: faiss's ResultHeap costs ~15 ms for one query (an OpenMP region per call).
    """
    m, c = scores.shape
    out_scores, out_ids = empty_results(m, k)
    k_eff = min(k, c)
    if k_eff == 0:
        return out_scores, out_ids
    top = np.argpartition(-scores, k_eff - 1, axis=1)[:, :k_eff]
    order = np.argsort(-np.take_along_axis(scores, top, 1), axis=1, kind="stable")
    top = np.take_along_axis(top, order, 1)
    out_scores[:, :k_eff] = np.take_along_axis(scores, top, 1)
    out_ids[:, :k_eff] = np.take_along_axis(ids, top, 1)
    out_ids[~np.isfinite(out_scores)] = -1
    return pad_results(out_scores, out_ids)


def exact_topk_rows(
    queries: np.ndarray, vectors: np.ndarray, rows: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k over ``vectors[rows]``: (scores, row numbers into ``vectors``, -1 padded).

    Gathers ``EXACT_BLOCK`` rows at a time, so the temporary copy stays bounded however many
    rows there are.
    """
    found = []
    for block in row_blocks(rows):
        scores, hits = exact_topk(queries, vectors[block], k)
        found.append((scores, np.where(hits >= 0, block[hits], -1)))
    if len(found) == 1:
        return found[0]
    if not found:
        return empty_results(len(queries), k)
    return topk_of(np.hstack([f[0] for f in found]), np.hstack([f[1] for f in found]), k)


def row_blocks(rows: np.ndarray) -> list[np.ndarray]:
    """``rows`` cut into blocks of at most ``EXACT_BLOCK`` (bounds gathered copies)."""
    return [rows[lo : lo + EXACT_BLOCK] for lo in range(0, len(rows), EXACT_BLOCK)]


def bitmap_selector(n_slots: int, slots: np.ndarray) -> tuple[faiss.IDSelector, np.ndarray]:
    """An ``IDSelectorBitmap`` over slots [0, n_slots) with ``slots`` set.

    Returns the bitmap too: faiss keeps a raw pointer to it, so the caller must hold it alive
    for as long as the selector is used.
    """
    mask = np.zeros(max(n_slots, 1), dtype=bool)
    mask[slots] = True
    bits = np.packbits(mask, bitorder="little")
    return faiss.IDSelectorBitmap(bits), bits
