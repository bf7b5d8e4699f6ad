"""Filtered search: the filter acts inside the search, so k results come back whenever k match."""

import faiss
import numpy as np
import pytest

from stylesense.index.exact import exact_topk
from stylesense.index.filters import Filter
from stylesense.index.synthetic import clustered_unit_vectors
from stylesense.index.tuning import recall_at_k

from index_backends import BACKENDS, Built

faiss.omp_set_num_threads(2)
DIM = 64
N = 5000


@pytest.fixture(scope="module")
def data():
    x = clustered_unit_vectors(N + 200, DIM, n_clusters=50, seed=21)
    return np.arange(N, dtype=np.int64) * 2 + 10, x[:N], x[N:]


@pytest.fixture(scope="module")
def built(data, new_index):
    ids, x, _ = data
    return Built(new_index, DIM, ids, x)


def exact_filtered(ids, x, queries, allowed, k):
    rows = np.flatnonzero(np.isin(ids, allowed))
    return ids[rows][exact_topk(queries, x[rows], k)[1]]


@pytest.mark.parametrize("kind", BACKENDS)
@pytest.mark.parametrize("fraction", [0.5, 0.2, 0.05, 0.01])
def test_filtered_search_returns_k_allowed_items_with_high_recall(kind, fraction, data, built):
    ids, x, queries = data
    allowed = np.random.default_rng(1).choice(ids, int(fraction * N), replace=False)
    scores, found = built[kind].search(queries, 10, where=Filter(ids=allowed))
    assert (found >= 0).all() and np.isin(found, allowed).all()
    assert np.isfinite(scores).all()
    assert recall_at_k(found, exact_filtered(ids, x, queries, allowed, 10)) >= 0.95


@pytest.mark.parametrize("kind", BACKENDS)
def test_very_restrictive_filter_is_exact(kind, data, built):
    ids, x, queries = data
    allowed = np.random.default_rng(2).choice(ids, 15, replace=False)
    _, found = built[kind].search(queries, 10, where=Filter(ids=allowed))
    np.testing.assert_array_equal(found, exact_filtered(ids, x, queries, allowed, 10))


@pytest.mark.parametrize("kind", BACKENDS)
def test_allowed_items_far_from_the_query_still_fill_k(kind, data, built):
    ids, x, queries = data
    q = queries[:1]
    far = ids[np.argsort(x @ q[0])[:40]]  # the 40 items least similar to the query
    scores, found = built[kind].search(q, 10, where=Filter(ids=far))
    np.testing.assert_array_equal(found, exact_filtered(ids, x, q, far, 10))
    assert (scores < 0).all()


@pytest.mark.parametrize("kind", BACKENDS)
def test_fewer_than_k_only_when_fewer_match(kind, data, built):
    ids, x, queries = data
    index = built[kind]
    allowed = np.concatenate([ids[[3, 500, 4000]], [1, 3, 999_999_999]])  # unknown ids ignored
    scores, found = index.search(queries[:4], 10, where=Filter(ids=allowed))
    assert (np.sort(found[:, :3], axis=1) == np.sort(ids[[3, 500, 4000]])).all()
    assert (found[:, 3:] == -1).all() and np.isneginf(scores[:, 3:]).all()
    empty_scores, empty_found = index.search(queries[:2], 5, where=Filter(ids=np.array([], np.int64)))
    assert (empty_found == -1).all() and np.isneginf(empty_scores).all()


@pytest.mark.parametrize("kind", BACKENDS)
def test_filter_never_resurrects_removed_items(kind, data, new_index):
    ids, x, queries = data
    index = new_index(kind, DIM)
    index.build(ids, x)
    allowed = ids[:30]
    index.search(queries[:10], 10, where=Filter(ids=allowed))  # caches this filter
    index.remove(allowed[:25])
    _, found = index.search(queries[:10], 10, where=Filter(ids=allowed))
    assert (np.sort(found[:, :5], axis=1) == allowed[25:]).all()
    assert (found[:, 5:] == -1).all()
