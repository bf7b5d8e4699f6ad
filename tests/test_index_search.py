"""Search quality and contract of every index kind (recall, self-match, padding, scores)."""

import faiss
import numpy as np
import pytest

from stylesense.errors import NotFound
from stylesense.index import AUTO_FLAT_MAX_FLOATS, load_index, make_index
from stylesense.index.exact import exact_topk
from stylesense.index.synthetic import clustered_unit_vectors
from stylesense.index.tuning import recall_at_k

from index_backends import BACKENDS, Built

faiss.omp_set_num_threads(2)
DIM = 64
N = 5000


@pytest.fixture(scope="module")
def data():
    """5k indexed vectors with sparse ids + 300 held-out queries from the same clusters."""
    x = clustered_unit_vectors(N + 300, DIM, n_clusters=50, seed=1)
    ids = np.arange(N, dtype=np.int64) * 7 + 3
    return ids, x[:N], x[N:]


@pytest.fixture(scope="module")
def built(data, new_index):
    ids, x, _ = data
    return Built(new_index, DIM, ids, x)


@pytest.mark.parametrize("kind", BACKENDS)
def test_recall_at_10_vs_exact(kind, data, built):
    ids, x, queries = data
    truth = ids[exact_topk(queries, x, 10)[1]]
    _, found = built[kind].search(queries, 10)
    assert recall_at_k(found, truth) >= 0.95


@pytest.mark.parametrize("kind", BACKENDS)
def test_indexed_vector_is_its_own_top1(kind, data, built):
    ids, x, _ = data
    rows = np.random.default_rng(0).choice(N, 100, replace=False)
    scores, found = built[kind].search(x[rows], 5)
    assert (found[:, 0] == ids[rows]).all()
    np.testing.assert_allclose(scores[:, 0], 1.0, atol=1e-4)


@pytest.mark.parametrize("kind", BACKENDS)
def test_scores_are_descending_inner_products(kind, data, built):
    _, _, queries = data
    index = built[kind]
    scores, found = index.search(queries[:20], 10)
    assert scores.dtype == np.float32 and found.dtype == np.int64 and scores.shape == (20, 10)
    assert (np.diff(scores, axis=1) <= 1e-6).all()
    for q, s, f in zip(queries[:20], scores, found, strict=True):
        np.testing.assert_allclose(index.vectors(f) @ q, s, atol=1e-4)
        assert len(set(f.tolist())) == 10


@pytest.mark.parametrize("kind", BACKENDS)
def test_pads_with_minus_one_only_beyond_the_catalogue(kind, new_index):
    x = clustered_unit_vectors(7, DIM, n_clusters=2, seed=2)
    index = new_index(kind, DIM)
    index.build(np.arange(7), x)
    scores, found = index.search(x[:2], 10)
    assert (found[:, :7] >= 0).all() and (found[:, 7:] == -1).all()
    assert np.isneginf(scores[:, 7:]).all()
    assert sorted(found[0, :7].tolist()) == list(range(7))
    assert index.search(x[:2], 0)[1].shape == (2, 0)


@pytest.mark.parametrize("kind", BACKENDS)
def test_empty_index_returns_padding(kind, new_index):
    index = new_index(kind, DIM)
    index.build(np.empty(0, np.int64), np.empty((0, DIM), np.float32))
    assert len(index) == 0
    _, found = index.search(clustered_unit_vectors(3, DIM, seed=3), 4)
    assert (found == -1).all()


@pytest.mark.parametrize("kind", BACKENDS)
def test_vectors_and_membership(kind, data, built):
    ids, x, _ = data
    index = built[kind]
    np.testing.assert_allclose(index.vectors(ids[[5, 0, 99]]), x[[5, 0, 99]], atol=1e-6)
    assert ids[17] in index and 4 not in index and "x" not in index
    assert len(index) == N
    with pytest.raises(NotFound):
        index.vectors(np.array([4]))


@pytest.mark.parametrize("kind", BACKENDS)
def test_rejects_wrong_shapes_and_duplicate_ids(kind, new_index):
    index = new_index(kind, DIM)
    x = clustered_unit_vectors(4, DIM, seed=4)
    with pytest.raises(ValueError):
        index.build(np.array([1, 1, 2, 3]), x)
    with pytest.raises(ValueError):
        index.build(np.arange(4), x[:, :10])
    index.build(np.arange(4), x)
    with pytest.raises(ValueError):
        index.search(x[:, :10], 2)


@pytest.mark.parametrize(("codec", "min_recall"), [("fp16", 0.95), ("sq8", 0.9), ("pq", 0.4)])
def test_ivf_codecs_trade_recall_for_memory(codec, min_recall, data, tmp_path):
    ids, x, queries = data
    index = make_index("ivf", DIM, codec=codec)
    index.build(ids, x)
    truth = ids[exact_topk(queries, x, 10)[1]]
    _, found = index.search(queries, 10)
    assert recall_at_k(found, truth) >= min_recall
    index.save(tmp_path / "i.npz")
    assert load_index(tmp_path / "i.npz").search(queries, 10)[1].tolist() == found.tolist()
    flat_file = tmp_path / "flat.npz"
    full = make_index("ivf", DIM)
    full.build(ids, x)
    full.save(flat_file)
    assert (tmp_path / "i.npz").stat().st_size < flat_file.stat().st_size


def test_auto_picks_exact_for_small_catalogues_and_hnsw_for_large():
    assert make_index("auto", 1280, n_expected=20_000).kind == "flat"
    assert make_index("auto", 1280, n_expected=30_000).kind == "hnsw"
    assert make_index("auto", 256, n_expected=100_000).kind == "flat"
    assert make_index("auto", DIM, n_expected=AUTO_FLAT_MAX_FLOATS // DIM + 1).kind == "hnsw"
    with pytest.raises(ValueError):
        make_index("annoy", DIM)


def test_single_query_search_leaves_the_thread_setting_alone(data, built):
    faiss.omp_set_num_threads(2)
    built["flat"].search(data[2][:1], 5)
    assert faiss.omp_get_max_threads() == 2
