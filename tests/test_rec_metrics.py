"""Each ranking metric against values worked out by hand on a four-user case (k = 4)."""

from math import log2

import numpy as np
import pytest

from stylesense.evaluation import metrics as M

# u0: hits at ranks 2 and 4; relevant {11, 13, 99}, 99 outside the ranked universe.
# u1: only two items to offer (padding); hits at ranks 1 and 2; five relevant items (> k).
# u2: nothing relevant. u3: relevant {5}, never ranked.
RANKED = np.array([
    [10, 11, 12, 13],
    [20, 21, -1, -1],
    [30, 31, 32, 33],
    [1, 2, 3, 4],
])
RELEVANT = {0: [11, 13, 99, 13], 1: [20, 21, 22, 23, 24], 3: [5]}  # 13 twice: counted once


@pytest.fixture
def judged() -> M.Judged:
    users = [u for u, items in RELEVANT.items() for _ in items]
    items = [i for items in RELEVANT.values() for i in items]
    return M.judge(RANKED, np.array(users), np.array(items))


def test_judge_marks_hits_and_counts_distinct_relevant_items(judged):
    assert judged.k == 4
    assert judged.hits.tolist() == [
        [False, True, False, True],
        [True, True, False, False],
        [False] * 4,
        [False] * 4,
    ]
    assert judged.n_relevant.tolist() == [3, 5, 0, 1]


def test_precision_divides_by_k_even_when_padded(judged):
    assert M.precision_at_k(judged) == pytest.approx([2 / 4, 2 / 4, 0, 0])


def test_recall_counts_unrankable_relevant_items(judged):
    assert M.recall_at_k(judged) == pytest.approx([2 / 3, 2 / 5, 0, 0])


def test_hit_rate(judged):
    assert M.hit_rate_at_k(judged) == pytest.approx([1, 1, 0, 0])


def test_ndcg_ideal_over_min_k_and_relevant(judged):
    u0 = (1 / log2(3) + 1 / log2(5)) / (1 + 1 / log2(3) + 1 / log2(4))  # ideal: 3 hits
    u1 = (1 + 1 / log2(3)) / (1 + 1 / log2(3) + 1 / log2(4) + 1 / log2(5))  # ideal: k hits
    assert M.ndcg_at_k(judged) == pytest.approx([u0, u1, 0, 0])
    assert M.ndcg_at_k(judged)[0] == pytest.approx(0.498189, abs=1e-6)


def test_map_kaggle_divides_by_min_relevant_k(judged):
    # u0: P(2) = 1/2, P(4) = 2/4, over min(3, 4); u1: P(1) = P(2) = 1, over min(5, 4).
    assert M.average_precision_at_k(judged) == pytest.approx([1.0 / 3, 2.0 / 4, 0, 0])


def test_map_ms_recommenders_variant_divides_by_relevant(judged):
    assert M.average_precision_at_k(judged, by_relevant=True) == pytest.approx([1.0 / 3, 2.0 / 5, 0, 0])


def test_reciprocal_rank_of_first_hit_within_k(judged):
    assert M.reciprocal_rank_at_k(judged) == pytest.approx([1 / 2, 1, 0, 0])


def test_perfect_list_scores_one_everywhere():
    j = M.judge(np.array([[7, 8]]), np.array([0, 0]), np.array([8, 7]))
    for fn in (M.precision_at_k, M.recall_at_k, M.ndcg_at_k, M.average_precision_at_k,
               M.reciprocal_rank_at_k, M.hit_rate_at_k):
        assert fn(j) == pytest.approx([1.0]), fn.__name__


def test_coverage_counts_distinct_items_and_ignores_padding():
    assert M.coverage(np.array([[0, 1, -1], [1, 2, -1]]), n_items=10) == pytest.approx(0.3)


def test_revenue_counts_every_purchase_event_of_a_hit_item():
    ranked = np.array([[5, 6], [7, -1]])
    buy_user = np.array([0, 0, 0, 1, 1])
    buy_item = np.array([5, 5, 8, 7, 6])  # u0 bought 5 twice (hit x2) and 8 (miss)
    buy_price = np.array([10.0, 10.0, 99.0, np.nan, 3.0])  # u1: 7 is a hit of unknown price; 6 is u0's
    assert M.revenue_at_k(ranked, buy_user, buy_item, buy_price) == pytest.approx([20.0, 0.0])
