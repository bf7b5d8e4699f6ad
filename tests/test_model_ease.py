"""EASE^R: the closed form against a direct numpy computation, block recovery, the item cap,
real-time updates and save/load."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import sparse

from recsys_fixtures import block_events, block_of
from stylesense.recommenders import load_recommender
from stylesense.recommenders.data import Interactions
from stylesense.recommenders.ease import EASE, ease_weights
from stylesense.recommenders.popular import Popular

TYPES = ("view", "click", "cart", "purchase")


def reference_b(x: np.ndarray, l2: float) -> np.ndarray:
    """Steck's formula, straight from the paper, in float64."""
    p = np.linalg.inv(x.T @ x + l2 * np.eye(x.shape[1]))
    b = np.eye(x.shape[1]) - p / np.diag(p)[None, :]
    np.fill_diagonal(b, 0.0)
    return b


def tiny() -> pd.DataFrame:
    rows = [
        ("a", "i1", "view"), ("a", "i2", "purchase"), ("a", "i2", "view"),
        ("b", "i1", "click"), ("b", "i3", "view"),
        ("c", "i2", "cart"), ("c", "i3", "view"), ("c", "i4", "like"),
        ("d", "i4", "view"), ("d", "i5", "purchase"),
        ("e", "i1", "view"), ("e", "i5", "view"), ("e", "i2", "view"),
    ]
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "type"])
    frame["ts"] = np.arange(len(frame))
    return frame


@pytest.fixture(scope="module")
def blocks() -> Interactions:
    return Interactions.from_frame(block_events(300, 120, 4, 12, noise=0.05, seed=0))


@pytest.mark.parametrize("binary", [True, False])
def test_b_matches_the_formula_on_a_tiny_matrix(binary):
    data = Interactions.from_frame(tiny())
    m = EASE(l2=2.0, binary=binary).fit(data)
    x = data.matrix.toarray().astype(np.float64)
    if binary:
        x = (x > 0).astype(np.float64)
    assert not binary or x.max() == 1.0
    assert binary or x.max() == 9.0  # a's purchase + view of i2
    ref = reference_b(x, 2.0)
    np.testing.assert_allclose(m.B, ref, atol=1e-6 * np.abs(ref).max(), rtol=1e-5)
    assert m.B.dtype == np.float32 and np.all(np.diag(m.B) == 0)
    # scores are the (binarised) history row times B
    users = np.arange(data.n_users)
    np.testing.assert_allclose(m.scores(users), x @ ref, rtol=1e-5, atol=1e-6)


def test_float32_inverse_agrees_with_float64_on_weighted_data(blocks):
    x = blocks.matrix.copy()
    x.data *= 8.0  # purchases everywhere: a worse-conditioned Gram matrix
    b32 = ease_weights(x, 50.0)
    b64 = ease_weights(x, 50.0, np.float64)
    assert np.abs(b32 - b64).max() <= 1e-4 * np.abs(b64).max()


def test_recovers_block_structure(blocks):
    users = np.arange(blocks.n_users)
    user_block = np.array([block_of(u) for u in blocks.users])
    item_block = np.array([block_of(i) for i in blocks.items])

    def in_block(model) -> float:
        top, _ = model.recommend_batch(users, 10)
        assert (top >= 0).all()
        return float((item_block[top] == user_block[:, None]).mean())

    ease = in_block(EASE(l2=50.0).fit(blocks))
    assert ease >= 0.99
    assert in_block(Popular().fit(blocks)) < 0.5  # block-blind baseline
    m = EASE(l2=50.0).fit(blocks)
    item = blocks.items[0]
    assert all(block_of(r.item_id) == block_of(item) for r in m.similar_items(item, 10))
    recs = m.recommend(blocks.users[0], 3)
    assert recs[0].reason and recs[0].reason.startswith("because you interacted with ")
    seen = set(blocks.items[m.history[0].indices])
    assert recs[0].reason.rsplit(" ", 1)[1] in seen


def test_max_items_caps_the_matrix(blocks):
    m = EASE(l2=50.0, max_items=40).fit(blocks)
    assert m.B.shape == (40, 40)
    order = np.argsort(-m.popularity, kind="stable")
    np.testing.assert_array_equal(m.kept, np.sort(order[:40]))
    assert m.popularity[m.kept].min() >= m.popularity[np.setdiff1d(np.arange(120), m.kept)].max()
    # B on the kept items is plain EASE on those columns
    np.testing.assert_allclose(m.B, ease_weights((blocks.matrix[:, m.kept] > 0).astype(np.float32), 50.0), rtol=1e-6)
    s = m.scores(np.arange(blocks.n_users))
    rest = np.setdiff1d(np.arange(120), m.kept)
    assert np.isfinite(s).all()
    assert (s[:, rest].max(axis=1) < s[:, m.kept].min(axis=1)).all()  # below everything learned
    # among themselves the uncapped items follow popularity
    for row in s[:3]:
        ranked = rest[np.argsort(-row[rest], kind="stable")]
        assert (np.diff(m.popularity[ranked]) <= 0).all()
    # a filter that leaves only tail items still gives a full list
    allowed = np.zeros(120, dtype=bool)
    allowed[rest[:15]] = True
    recs = m.recommend(blocks.users[0], 10, allowed=allowed)
    assert len(recs) == 10 and {r.item_id for r in recs} <= set(blocks.items[rest[:15]])


def test_real_time_update(blocks):
    m = EASE(l2=50.0).fit(blocks)
    b_before = m.B.copy()
    block3 = [i for i in blocks.items if block_of(i) == 3]
    # a brand-new shopper who views four items of block 3 gets block 3
    m.update(pd.DataFrame({"user_id": "newbie", "item_id": block3[:4], "type": "view", "ts": 2_000_000_000}))
    recs = m.recommend("newbie", 10)
    assert len(recs) == 10 and all(block_of(r.item_id) == 3 for r in recs)
    assert not {r.item_id for r in recs} & set(block3[:4])
    # a block-0 shopper who starts browsing block 3 sees it come in
    user = next(u for u in blocks.users if block_of(u) == 0)
    before = [block_of(r.item_id) for r in m.recommend(user, 10)]
    assert before.count(3) == 0
    m.update(pd.DataFrame({"user_id": user, "item_id": block3[4:9], "type": "view", "ts": 2_000_000_001}))
    after = [block_of(r.item_id) for r in m.recommend(user, 10)]
    assert after.count(3) >= 4
    np.testing.assert_array_equal(m.B, b_before)  # no refit


def test_save_load_round_trip(tmp_path, blocks):
    m = EASE(l2=30.0, binary=False, max_items=100).fit(blocks)
    m.update(pd.DataFrame({"user_id": ["newbie", blocks.users[5]], "item_id": [blocks.items[3], blocks.items[7]],
                           "type": ["cart", "view"], "ts": [2_000_000_000] * 2}))
    m.save(tmp_path / "e.npz")
    back = load_recommender(tmp_path / "e.npz")
    users = np.arange(len(m.user_ids))
    np.testing.assert_array_equal(back.scores(users), m.scores(users))
    assert back.params == {"l2": 30.0, "binary": False, "max_items": 100}
    assert back.recommend("newbie") == m.recommend("newbie")
    assert back.similar_items(blocks.items[0]) == m.similar_items(blocks.items[0])


@pytest.mark.parametrize("bad", [{"l2": 0}, {"l2": -5.0}, {"l2": "abc"}, {"max_items": 0},
                                 {"binary": "maybe"}, {"binary": 3}, {"max_items": 2.5}, {"lambda": 1}])
def test_bad_params(bad):
    with pytest.raises(ValueError):
        EASE(**bad)


def test_string_params_from_cli():
    assert EASE(l2="100", binary="false", max_items="5000").params == {"l2": 100.0, "binary": False, "max_items": 5000}


class FakeTrial:
    def suggest_float(self, name, low, high, log=False):
        assert low < high and (not log or low > 0)
        return (low * high) ** 0.5 if log else (low + high) / 2

    def suggest_categorical(self, name, choices):
        return choices[-1]


def test_search_space_builds_a_valid_model(blocks):
    params = EASE.search_space(FakeTrial())
    assert set(params) == {"l2", "binary"}
    EASE(**params).fit(blocks)


def test_sparse_input_types():
    # ease_weights takes any scipy sparse matrix
    x = sparse.random(40, 15, density=0.3, random_state=0, format="coo")
    ref = reference_b(x.toarray(), 3.0)
    np.testing.assert_allclose(ease_weights(x, 3.0), ref, rtol=1e-4, atol=1e-6)
