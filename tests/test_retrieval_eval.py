"""Retrieval metrics against hand-computed cases, and the group-aware adaptation split."""

import numpy as np
import pytest

from stylesense.errors import InvalidInput
from stylesense.evaluation.retrieval import adapt_split, exact_search, label_split, retrieval_metrics


def scripted_search(ids, ranked, calls=None):
    """A search whose result lists are written by hand: query vector i (one-hot) -> ranked[i]."""

    def search(queries, kk):
        if calls is not None:
            calls.append((len(queries), kk))
        rows = queries.argmax(axis=1)
        out = np.array([ranked[r][:kk] for r in rows], dtype=np.asarray(ids).dtype)
        return np.zeros(out.shape, dtype=np.float32), out

    return search


# Five items, k = 2. Results per query (k + 1 = 3), with the item itself where the index put it:
#   id 1 (a, g1): [1, 4, 2] -> drop self -> [4, 2]   hits a: 0,1  P=1/2  AP=(1/2)/min(2,2)=1/4  group: 2 found -> 1
#   id 2 (a, g1): [3, 2, 1] -> self 2nd  -> [3, 1]   hits a: 1,1  P=1    AP=(1+1)/2=1          group: 1 found -> 1
#   id 3 (a,  -): [5, 4, 1] -> no self   -> [5, 4]   5 is unlabelled -> wrong: P=0 AP=0
#   id 4 (b, g2): [4, 1, -1] -> [1, -1]  b is unique: P=0 AP=0 (no other b);   group: 5 missing -> 0
#   id 5 ("",g2): [5, 4, 1] -> [4, 1]    no label: not a P/mAP query;            group: 4 found -> 1
# P@2 = (1/2 + 1 + 0 + 0) / 4 = 0.375; mAP@2 = (1/4 + 1 + 0 + 0) / 4 = 0.3125; group recall = 3/4.
IDS = np.array([1, 2, 3, 4, 5], dtype=np.int64)
LABELS = np.array(["a", "a", "a", "b", ""], dtype=object)
GROUPS = np.array(["g1", "g1", "", "g2", "g2"], dtype=object)
RANKED = [[1, 4, 2], [3, 2, 1], [5, 4, 1], [4, 1, -1], [5, 4, 1]]


def test_hand_computed_metrics_with_self_exclusion_empty_labels_and_padding():
    calls = []
    res = retrieval_metrics(scripted_search(IDS, RANKED, calls), IDS, np.eye(5, dtype=np.float32), LABELS, GROUPS, k=2)
    assert res["items"] == 4
    assert res["k"] == 2
    assert res["precision_at_k"] == pytest.approx(0.375)
    assert res["map_at_k"] == pytest.approx(0.3125)
    assert res["group_recall_at_k"] == pytest.approx(0.75)
    assert res["group_items"] == 4
    assert all(kk == 3 for _, kk in calls)  # asks k + 1 so the dropped self leaves k results


def test_without_groups_and_with_none_labels():
    labels = np.array(["a", "a", "a", "b", None], dtype=object)
    res = retrieval_metrics(scripted_search(IDS, RANKED), IDS, np.eye(5, dtype=np.float32), labels, None, k=2)
    assert res["items"] == 4
    assert res["precision_at_k"] == pytest.approx(0.375)
    assert res["group_recall_at_k"] is None
    assert res["group_items"] == 0


def test_average_precision_is_normalised_by_min_k_and_other_relevant():
    # id 1 (a) with k=3 sees [2 (a), 6 (c), 3 (a)]: AP = (1/1 + 2/3) / min(3, 4 other a's) = 5/9.
    # id 7 (c) sees [6 (c), 1, 2]: P = 1/3, AP = 1 / min(3, 1 other c) = 1.
    ids = np.array(["0111565001", "02", "03", "04", "05", "06", "07"])  # text ids, leading zero kept
    labels = np.array(["a", "a", "a", "a", "a", "c", "c"], dtype=object)
    pad = ["-1"] * 4
    ranked = [["0111565001", "02", "06", "03"], pad, pad, pad, pad, pad, ["06", "0111565001", "07", "02"]]
    res = retrieval_metrics(scripted_search(ids, ranked), ids, np.eye(7, dtype=np.float32), labels, None, k=3)
    assert res["items"] == 7  # the other five get only padding and score 0
    assert res["map_at_k"] == pytest.approx((5 / 9 + 1) / 7)
    assert res["precision_at_k"] == pytest.approx((2 / 3 + 1 / 3) / 7)


def test_exact_cosine_search_on_clusters_is_perfect_and_batched():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(30, 16))
    labels = np.repeat(np.arange(30), 50).astype(str)  # 1500 items: more than one query batch
    x = centres[labels.astype(int)] + 0.01 * rng.normal(size=(1500, 16))
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    ids = np.arange(100, 1600)
    calls = []

    def search(q, kk):
        calls.append(len(q))
        top = np.argsort(-(q @ x.T), axis=1)[:, :kk]
        return np.zeros(top.shape, np.float32), ids[top]

    res = retrieval_metrics(search, ids, x, labels, None, k=10)
    assert res["precision_at_k"] == pytest.approx(1.0)
    assert res["map_at_k"] == pytest.approx(1.0)
    assert len(calls) == 2 and sum(calls) == 1500


def test_split_keeps_groups_together_half_half_and_deterministic():
    rng = np.random.default_rng(1)
    n = 2000
    ids = np.array([f"{i:010d}" for i in range(n)])
    groups = np.array([f"p{g}" if g < 500 else "" for g in rng.integers(0, 1000, size=n)], dtype=object)
    train, test = adapt_split(ids, groups, seed=0)
    assert train.dtype == bool and np.all(train ^ test)
    assert abs(train.mean() - 0.5) < 0.02
    for g in np.unique(groups[groups != ""]):
        sides = train[groups == g]
        assert sides.all() or not sides.any()
    again, _ = adapt_split(ids, groups, seed=0)
    assert np.array_equal(train, again)
    perm = rng.permutation(n)  # depends on the (id, group) pairs, not their order
    shuffled, _ = adapt_split(ids[perm], groups[perm], seed=0)
    assert np.array_equal(shuffled, train[perm])
    other, _ = adapt_split(ids, groups, seed=1)
    assert not np.array_equal(other, train)


def test_split_without_groups():
    train, test = adapt_split(np.arange(1001), None, seed=0)
    assert train.sum() in (500, 501) and test.sum() == 1001 - train.sum()


def test_query_mask_scores_a_subset_on_the_same_search():
    # only ids 1 and 4 query (a: P=1/2, AP=1/4; b: 0); every item is still a result
    mask = np.array([True, False, False, True, False])
    res = retrieval_metrics(scripted_search(IDS, RANKED), IDS, np.eye(5, dtype=np.float32), LABELS, GROUPS, k=2,
                            queries=mask)
    assert res["items"] == 2 and res["precision_at_k"] == pytest.approx(0.25)
    assert res["map_at_k"] == pytest.approx(0.125)
    assert res["group_items"] == 2 and res["group_recall_at_k"] == pytest.approx(0.5)
    with pytest.raises(InvalidInput):
        retrieval_metrics(scripted_search(IDS, RANKED), IDS, np.eye(5, dtype=np.float32), LABELS, GROUPS, k=2,
                          queries=mask[:3])


def catalogue(n: int = 3000, seed: int = 2):
    """Items with 30 label values (some rare), products of 1-4 colour variants sharing a label
    mostly, a few products mixing two labels, and some unlabelled items."""
    rng = np.random.default_rng(seed)
    ids = np.array([f"{i:010d}" for i in range(n)])
    product = rng.integers(0, n // 2, size=n)
    labels = np.array([f"type{(p * 7) % 30}" for p in product], dtype=object)
    mixed = rng.random(n) < 0.03
    labels[mixed] = [f"type{v}" for v in rng.integers(0, 30, size=int(mixed.sum()))]
    labels[rng.random(n) < 0.05] = ""
    groups = np.array([f"p{p}" if p % 5 else "" for p in product], dtype=object)
    return ids, labels, groups


def test_label_split_holds_out_whole_label_values_and_whole_products():
    ids, labels, groups = catalogue()
    train, test, unseen = label_split(ids, labels, groups, seed=0)
    assert train.dtype == bool and np.all(train ^ test) and not (unseen & train).any()
    values = {v for v in labels if v}
    held = {v for v in labels[unseen]}
    assert len(held) == 10  # a third of the 30 values
    assert not held & set(labels[train])  # no held-out value on the training side
    assert set(labels[test & ~unseen]) - {""} <= set(labels[train])  # the rest of the test side is seen
    assert held | set(labels[train]) - {""} == values
    assert np.array_equal(unseen, test & np.isin(labels.astype(str), list(held)))
    for g in np.unique(groups[groups != ""]):  # every product on one side
        sides = train[groups == g]
        assert sides.all() or not sides.any()
    assert 0.28 < train.mean() < 0.4 and (test & ~unseen).sum() > 800  # seen labels to compare with


def test_label_split_is_seeded_and_independent_of_row_order():
    ids, labels, groups = catalogue()
    a = label_split(ids, labels, groups, seed=0)
    b = label_split(ids, labels, groups, seed=0)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    perm = np.random.default_rng(5).permutation(len(ids))
    shuffled = label_split(ids[perm], labels[perm], groups[perm], seed=0)
    assert all(np.array_equal(x[perm], y) for x, y in zip(a, shuffled))
    other = label_split(ids, labels, groups, seed=1)
    assert set(labels[other[2]]) != set(labels[a[2]])
    train, _, unseen = label_split(ids, labels, None, held_out=0.5, seed=3)  # no groups; half the values
    assert len(set(labels[unseen])) == 15 and not set(labels[unseen]) & set(labels[train])


def test_label_split_refuses_what_cannot_be_split():
    ids = np.arange(4)
    with pytest.raises(InvalidInput):
        label_split(ids, np.array(["a", "a", "", "a"], dtype=object))
    with pytest.raises(InvalidInput):
        label_split(ids, np.array(["a", "b", "a", "b"], dtype=object), held_out=1.0)
    train, test, unseen = label_split(ids, np.array(["a", "b", "a", "b"], dtype=object), held_out=0.9)
    assert len(set(np.array(["a", "b", "a", "b"])[unseen])) == 1  # never every value


def test_exact_search_ranks_by_inner_product():
    x = np.eye(4, dtype=np.float32)[[0, 0, 1, 2]] + np.float32(0.01) * np.arange(4)[:, None]
    ids = np.array(["a", "b", "c", "d"])
    scores, found = exact_search(x, ids)(x[:1], 10)
    assert list(found[0][:2]) == ["b", "a"] and found.shape == (1, 4)
    assert np.all(np.diff(scores[0]) <= 0)
