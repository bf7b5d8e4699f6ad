"""Leave-one-out retrieval metrics and the group-aware split used to judge catalogue adaptation.

The metrics go through a ``search`` callable rather than raw vectors so that the very index a
home serves (exact or approximate) is what gets measured, not an idealised brute-force copy.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from stylesense.errors import InvalidInput

SearchFn = Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]]

_BATCH = 1024


def _missing(values: np.ndarray) -> np.ndarray:
    """True where a label/group value is absent (None, NaN or empty string)."""
    out = np.empty(len(values), dtype=bool)
    for i, v in enumerate(values):
        out[i] = v is None or (isinstance(v, float) and v != v) or str(v) == ""
    return out


def _as_keys(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes for label/group values (-1 = missing), plus how many items share each code.

    Codes make the comparisons vectorised and independent of the value's dtype (str, int, object).
    """
    values = np.asarray(values, dtype=object)
    missing = _missing(values)
    codes = np.full(len(values), -1, dtype=np.int64)
    if (~missing).any():
        _, inverse = np.unique(values[~missing].astype(str), return_inverse=True)
        codes[~missing] = inverse
    counts = np.bincount(codes[codes >= 0], minlength=int(codes.max()) + 1 if len(codes) else 0)
    return codes, counts


def _positions(ids: np.ndarray, result_ids: np.ndarray) -> np.ndarray:
    """Map result ids back to rows of ``ids``; -1 for padding or ids outside the catalogue."""
    ids = np.asarray(ids)
    result_ids = np.asarray(result_ids)
    if ids.dtype.kind in "iu":
        ids_k, res_k = ids.astype(np.int64), result_ids.astype(np.int64)
    else:
        ids_k, res_k = ids.astype(str), result_ids.astype(str)
    order = np.argsort(ids_k, kind="stable")
    sorted_ids = ids_k[order]
    idx = np.searchsorted(sorted_ids, res_k).clip(0, len(ids_k) - 1)
    found = sorted_ids[idx] == res_k
    return np.where(found, order[idx], -1)


def _top_k_without_self(pos: np.ndarray, query_rows: np.ndarray, k: int) -> np.ndarray:
    """Drop each query's own row from its k+1 results (wherever it ranks) and keep the first k.

    If the query is absent from its own results (ties, approximate search), the last result goes
    instead, so every query is judged on exactly k slots.
    """
    not_self = pos != query_rows[:, None]
    order = np.argsort(~not_self, axis=1, kind="stable")[:, :k]
    kept = np.take_along_axis(pos, order, axis=1)
    if kept.shape[1] < k:  # a search that returned fewer columns: pad as misses
        kept = np.pad(kept, ((0, 0), (0, k - kept.shape[1])), constant_values=-1)
    return kept


def retrieval_metrics(
    search: SearchFn,
    ids: np.ndarray,
    vectors: np.ndarray,
    labels: np.ndarray,
    groups: np.ndarray | None,
    k: int = 10,
    queries: np.ndarray | None = None,
) -> dict:
    """Leave-one-out P@k, mAP@k and (optionally) same-group recall@k over a catalogue.

    Every item with a label queries the catalogue with its own vector; itself is never counted.
    P@k: share of the k results with the query's label (unlabelled results and padding are wrong).
    mAP@k: AP@k normalised by min(k, number of OTHER items with that label); an item whose label
    is unique scores 0, like its P@k, so rare classes are not silently dropped.
    group_recall_at_k: share of the item's other group members found in the top k, normalised by
    min(k, members - 1), over items whose (non-empty) group has other members.
    queries: boolean mask of the items that query (default: all); every item is still a result,
    so seen and unseen labels of one catalogue are scored on the same search.
    """
    ids = np.asarray(ids)
    vectors = np.asarray(vectors)
    n = len(ids)
    if len(vectors) != n or len(labels) != n or (groups is not None and len(groups) != n):
        raise InvalidInput("ids, vectors, labels and groups must have the same length")

    label_codes, label_counts = _as_keys(labels)
    labelled = label_codes >= 0
    if groups is not None:
        group_codes, group_counts = _as_keys(groups)
        grouped = group_codes >= 0
        grouped[grouped] = group_counts[group_codes[grouped]] > 1
    else:
        group_codes = np.full(n, -1, dtype=np.int64)
        grouped = np.zeros(n, dtype=bool)

    if queries is not None:
        queries = np.asarray(queries, dtype=bool)
        if len(queries) != n:
            raise InvalidInput("queries must be a mask with one value per item")
        labelled, grouped = labelled & queries, grouped & queries
    query_rows = np.flatnonzero(labelled | grouped)
    prec_sum = ap_sum = grec_sum = 0.0
    ranks = np.arange(1, k + 1, dtype=np.float64)
    for start in range(0, len(query_rows), _BATCH):
        rows = query_rows[start : start + _BATCH]
        _, result_ids = search(np.ascontiguousarray(vectors[rows]), k + 1)
        top = _top_k_without_self(_positions(ids, result_ids), rows, k)
        valid = top >= 0
        safe = np.where(valid, top, 0)

        lab = labelled[rows]
        if lab.any():
            q_lab = label_codes[rows][lab]
            hits = valid[lab] & (label_codes[safe[lab]] == q_lab[:, None])
            prec_sum += hits.sum() / k
            others = np.minimum(label_counts[q_lab] - 1, k)
            precision_at_i = np.cumsum(hits, axis=1) / ranks
            ap = (precision_at_i * hits).sum(axis=1)
            ap_sum += np.divide(ap, others, out=np.zeros_like(ap), where=others > 0).sum()

        grp = grouped[rows]
        if grp.any():
            q_grp = group_codes[rows][grp]
            ghits = valid[grp] & (group_codes[safe[grp]] == q_grp[:, None])
            denom = np.minimum(group_counts[q_grp] - 1, k)
            grec_sum += (ghits.sum(axis=1) / denom).sum()

    n_items = int(labelled.sum())
    n_group = int(grouped.sum())
    return {
        "items": n_items,
        "k": k,
        "precision_at_k": float(prec_sum / n_items) if n_items else None,
        "map_at_k": float(ap_sum / n_items) if n_items else None,
        "group_recall_at_k": float(grec_sum / n_group) if groups is not None and n_group else None,
        "group_items": n_group,
    }


def adapt_split(ids: np.ndarray, groups: np.ndarray | None, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A seeded ~50/50 split of a catalogue where every group (same product) lands on one side.

    Keeping colour variants together is what makes the same-product score on the test half
    honest: the adapter never saw any member of a test product. The split depends only on the
    set of (id, group) pairs, not on their order. Returns boolean (train_mask, test_mask).
    """
    n = len(ids)
    keys = _group_keys(ids, groups)
    uniq, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
    order = np.random.default_rng(seed).permutation(len(uniq))
    before = np.cumsum(counts[order]) - counts[order]  # items already placed before each group
    train_group = np.zeros(len(uniq), dtype=bool)
    train_group[order] = before < n / 2
    train = train_group[inverse]
    return train, ~train


def _group_keys(ids: np.ndarray, groups: np.ndarray | None) -> np.ndarray:
    """One key per item: its group, or the item alone where it has none."""
    ids = np.asarray(ids).astype(str)
    if groups is None:
        return np.char.add("i:", ids)
    g = np.asarray(groups, dtype=object)
    missing = _missing(g)
    return np.where(missing, np.char.add("i:", ids), np.char.add("g:", np.where(missing, "", g).astype(str)))


def label_split(
    ids: np.ndarray, labels: np.ndarray, groups: np.ndarray | None = None, *, held_out: float = 1 / 3, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A seeded split that holds out whole label values: what a new catalogue looks like.

    ``held_out`` of the distinct label values (at least one, never all) are drawn with ``seed``;
    every item with one of them goes to the test side, and so does every other member of its
    group, so no held-out value and no product is on both sides. The rest splits ~50/50 by
    group as in :func:`adapt_split` (seed + 1), so the test side also has seen labels to compare
    with. Depends only on the sets of values, not on the order of the rows.
    Returns boolean (train_mask, test_mask, unseen_mask); unseen_mask marks the test items
    whose label is held out.
    """
    labels = np.asarray(labels, dtype=object)
    n = len(labels)
    if len(ids) != n or (groups is not None and len(groups) != n):
        raise InvalidInput("ids, labels and groups must have the same length")
    if not 0 < held_out < 1:
        raise InvalidInput("held_out must be between 0 and 1")
    missing = _missing(labels)
    values = np.unique(labels[~missing].astype(str))
    if len(values) < 2:
        raise InvalidInput("a label split needs 2+ label values")
    n_out = min(len(values) - 1, max(1, round(held_out * len(values))))
    out_values = values[np.random.default_rng(seed).permutation(len(values))[:n_out]]
    unseen = ~missing & np.isin(np.where(missing, "", labels).astype(str), out_values)
    keys = _group_keys(ids, groups)
    test = np.isin(keys, keys[unseen])
    rest = np.flatnonzero(~test)
    train_rest, _ = adapt_split(np.asarray(ids)[rest], None if groups is None else np.asarray(groups)[rest], seed=seed + 1)
    train = np.zeros(n, dtype=bool)
    train[rest[train_rest]] = True
    return train, ~train, unseen


def exact_search(vectors: np.ndarray, ids: np.ndarray) -> SearchFn:
    """Exact inner-product search over ``vectors`` (unit rows: cosine), for measuring vectors
    that no home indexes (validation parts, benchmark halves)."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    ids = np.asarray(ids)

    def search(queries: np.ndarray, kk: int) -> tuple[np.ndarray, np.ndarray]:
        scores = queries @ vectors.T
        kk = min(kk, len(ids))
        top = np.argpartition(-scores, kk - 1, axis=1)[:, :kk]
        order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
        top = np.take_along_axis(top, order, axis=1)
        return np.take_along_axis(scores, top, axis=1), ids[top]

    return search
