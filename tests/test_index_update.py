"""Upsert/remove without rebuild, compaction under churn, and save/load round trips."""

import faiss
import numpy as np
import pytest

from stylesense.index import KINDS, load_index
from stylesense.index.exact import exact_topk
from stylesense.index.filters import Filter
from stylesense.index.synthetic import clustered_unit_vectors
from stylesense.index.tuning import recall_at_k

from index_backends import BACKENDS

faiss.omp_set_num_threads(2)
DIM = 64
N = 5000


@pytest.fixture(scope="module")
def data():
    x = clustered_unit_vectors(N + 600, DIM, n_clusters=50, seed=11)
    return np.arange(N, dtype=np.int64) + 1000, x[:N], x[N : N + 300], x[N + 300 :]


@pytest.fixture
def built(new_index):
    """built(kind, ids, x): a fresh index of ``kind`` holding these items."""

    def make(kind, ids, x):
        index = new_index(kind, DIM)
        index.build(ids, x)
        return index

    return make


@pytest.mark.parametrize("kind", BACKENDS)
def test_added_items_are_found_and_removed_never_returned(kind, data, built):
    ids, x, queries, extra = data
    index = built(kind, ids, x)
    new_ids = np.arange(100, dtype=np.int64) + 50_000
    index.add(new_ids, extra[:100])
    assert len(index) == N + 100 and 50_007 in index
    _, found = index.search(extra[:100], 1)
    assert (found[:, 0] == new_ids).all()

    gone = np.concatenate([ids[:300], new_ids[:50], [999_999]])  # an unknown id is ignored
    index.remove(gone)
    assert len(index) == N + 100 - 350 and ids[0] not in index
    probe = np.vstack([x[:300], extra[:50], queries])  # the removed vectors themselves, too
    _, found = index.search(probe, 30)
    assert not np.isin(found, gone).any()
    assert (found >= 0).all()


@pytest.mark.parametrize("kind", BACKENDS)
def test_upsert_replaces_without_duplicates(kind, data, built):
    ids, x, _, extra = data
    index = built(kind, ids, x)
    target = ids[:20]
    index.add(target, extra[:20])  # same ids, new vectors
    assert len(index) == N
    np.testing.assert_allclose(index.vectors(target), extra[:20], atol=1e-6)
    scores, found = index.search(extra[:20], 10)
    assert (found[:, 0] == target).all()
    np.testing.assert_allclose(scores[:, 0], 1.0, atol=1e-4)
    _, found = index.search(x[:20], 50)  # the old vectors: each id at most once, if at all
    for row in found:
        assert len(set(row.tolist())) == len(row)


@pytest.mark.parametrize("kind", BACKENDS)
def test_heavy_churn_keeps_results_exact_enough(kind, data, built):
    """Removing 60% and re-adding with new ids crosses the compaction/merge thresholds."""
    ids, x, queries, _ = data
    index = built(kind, ids, x)
    index.remove(ids[::5])
    index.remove(ids[1::5])
    index.remove(ids[2::5])
    index.add(ids[::5] + 100_000, x[::5])
    live = np.sort(np.concatenate([ids[3::5], ids[4::5], ids[::5] + 100_000]))
    assert len(index) == len(live)
    vectors = index.vectors(live)
    truth = live[exact_topk(queries, vectors, 10)[1]]
    _, found = index.search(queries, 10)
    assert recall_at_k(found, truth) >= 0.9
    assert np.isin(found, live).all()


@pytest.mark.parametrize("kind", list(KINDS))
def test_save_load_round_trip_gives_identical_results(kind, data, tmp_path, built):
    ids, x, queries, extra = data
    index = built(kind, ids, x)
    index.remove(ids[:40])  # tombstones and delta items must survive the round trip
    index.add(np.arange(30, dtype=np.int64), extra[:30])
    path = tmp_path / f"{kind}.idx"
    index.save(path)
    loaded = load_index(path)
    assert loaded.kind == kind and loaded.dim == DIM and len(loaded) == len(index)
    allowed = ids[::3]
    for kwargs in ({}, {"where": Filter(ids=allowed)}):
        s1, i1 = index.search(queries, 10, **kwargs)
        s2, i2 = loaded.search(queries, 10, **kwargs)
        np.testing.assert_array_equal(i1, i2)
        np.testing.assert_allclose(s1, s2, atol=1e-6)
    np.testing.assert_array_equal(loaded.vectors(np.arange(30)), index.vectors(np.arange(30)))
    loaded.add(np.array([77_777]), extra[50:51])  # a loaded index stays updatable
    assert loaded.search(extra[50:51], 1)[1][0, 0] == 77_777


@pytest.mark.parametrize("kind", BACKENDS)
def test_an_index_built_empty_grows_by_add(kind, data, new_index):
    ids, x, queries, _ = data
    index = new_index(kind, DIM)
    index.build(np.empty(0, np.int64), np.empty((0, DIM), np.float32))
    for lo in range(0, 1000, 250):
        index.add(ids[lo : lo + 250], x[lo : lo + 250])
    assert len(index) == 1000
    truth = ids[:1000][exact_topk(queries, x[:1000], 10)[1]]
    assert recall_at_k(index.search(queries, 10)[1], truth) >= 0.9


@pytest.mark.parametrize("kind", BACKENDS)
def test_build_replaces_previous_content(kind, data, built):
    ids, x, _, _ = data
    index = built(kind, ids, x)
    index.build(ids[:10] + 1, x[:10])
    assert len(index) == 10 and ids[0] not in index and ids[0] + 1 in index


@pytest.mark.parametrize("kind", BACKENDS)
def test_searches_between_updates_see_the_latest_content(kind, data, built):
    ids, x, queries, extra = data
    index = built(kind, ids, x)
    for step in range(3):
        index.remove(ids[step * 10 : step * 10 + 10])
        index.search(queries[:5], 10)  # caches built here must not go stale
        new = np.array([90_000 + step], dtype=np.int64)
        index.add(new, extra[step : step + 1])
        assert index.search(extra[step : step + 1], 1)[1][0, 0] == new[0]
        assert not np.isin(index.search(x[: step * 10 + 10], 5)[1], ids[: step * 10 + 10]).any()
