"""ALS on a log with known block structure: recovery, similar items, fold-in of updated and new
users, determinism, save/load (fold-in still works after a load), parameter checks; and a check
on real MovieLens ratings."""

import numpy as np
import pytest

from recsys_fixtures import (
    sampled_search_space,
    assert_recovers_blocks,
    block_split,
    block_of,
    browse,
    hit_rate,
    holdout_last,
    item_id,
    user_id,
    movielens_events,
    own_block_share,
    reloaded,
)
from stylesense.recommenders import Interactions
from stylesense.recommenders.als import ALS
from stylesense.recommenders.popular import Popular

N_USERS, N_ITEMS, N_BLOCKS = 400, 200, 4
SMALL = {"factors": 16, "iterations": 10}  # the synthetic log has rank ~4; keeps the tests fast


@pytest.fixture(scope="module")
def split():
    return block_split(N_USERS, N_ITEMS, N_BLOCKS)


@pytest.fixture(scope="module")
def fitted(split):
    return ALS(**SMALL).fit(split[0])


def test_recovers_block_structure_and_beats_popularity(split, fitted):
    assert_recovers_blocks(fitted, split)


def test_default_params_recover_the_structure_too(split):
    share = own_block_share(ALS().fit(split[0]))
    assert share.mean() >= 0.95


def test_confidence_is_one_plus_alpha_times_weight(split):
    model = ALS(alpha=3.0, **SMALL)
    row = split[0].matrix[:2]
    np.testing.assert_allclose(model._confidence(row).data, 1.0 + 3.0 * row.data)


def test_similar_items_come_from_the_same_block(fitted):
    for item in (item_id(0, 0), item_id(1, 41), item_id(3, 99)):
        similar = fitted.similar_items(item, k=5)
        assert len(similar) == 5 and item not in [r.item_id for r in similar]
        assert all(block_of(r.item_id) == block_of(item) for r in similar)
        assert all(-1.0 - 1e-5 <= r.score <= 1.0 + 1e-5 for r in similar)  # cosine


def test_fold_in_of_an_unchanged_user_agrees_with_the_trained_factor(split, fitted):
    users = np.arange(50)
    trained = fitted.user_factors[users] @ fitted.item_factors.T
    folded = fitted.fold_in(fitted.history[users]) @ fitted.item_factors.T
    corr = [np.corrcoef(a, b)[0, 1] for a, b in zip(trained, folded)]
    assert np.median(corr) >= 0.95


def test_real_time_update_folds_in_changed_and_new_users(split):
    data, _ = split
    model = ALS(**SMALL).fit(data)
    before = model.scores(np.arange(data.n_users))
    user = user_id(0, 0)  # a block-0 shopper
    assert not any(block_of(r.item_id) == 3 for r in model.recommend(user, k=10))
    model.update(browse(user, 3, N_ITEMS, N_BLOCKS, count=8, offset=4, type_="cart"))
    recs = model.recommend(user, k=10)
    assert block_of(recs[0].item_id) == 3 and sum(block_of(r.item_id) == 3 for r in recs) >= 5
    after = model.scores(np.arange(data.n_users))
    u = model.user_index[user]
    others = np.arange(data.n_users) != u
    np.testing.assert_array_equal(after[others], before[others])  # nobody else moved
    assert not np.array_equal(after[u], before[u])

    model.update(browse("newcomer", 2, N_ITEMS, N_BLOCKS, count=3, offset=6))
    recs = model.recommend("newcomer", k=10)
    assert all(block_of(r.item_id) == 2 for r in recs)
    assert model.user_factors.shape[0] == len(model.user_ids) == data.n_users + 1
    # The new shopper's list is not the popularity list.
    popular = [r.item_id for r in Popular().fit(data).recommend("someone-unknown", k=10)]
    assert [r.item_id for r in recs] != popular
    # A reason is given by item-factor similarity to the history.
    assert recs[0].reason is not None and recs[0].reason.startswith("similar to b2_")


def test_fit_is_deterministic_for_a_seed_and_any_thread_count(split):
    data, _ = split
    users = np.arange(data.n_users)
    a = ALS(seed=3, **SMALL).fit(data).scores(users)
    b = ALS(seed=3, threads=1, **SMALL).fit(data).scores(users)
    c = ALS(seed=4, **SMALL).fit(data).scores(users)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_save_load_round_trip_keeps_scores_and_fold_in(split, tmp_path):
    data, _ = split
    model = ALS(**SMALL).fit(data)
    model.update(browse("newcomer", 1, N_ITEMS, N_BLOCKS, count=4))
    back = reloaded(model, tmp_path / "als.npz")
    assert back.params == model.params
    users = np.arange(len(model.user_ids))
    np.testing.assert_array_equal(back.scores(users), model.scores(users))
    assert back.recommend("newcomer") == model.recommend("newcomer")
    assert back.similar_items(item_id(2, 2)) == model.similar_items(item_id(2, 2))
    # Fold-in works on the loaded model and gives the same factors as on the original.
    events = browse(user_id(1, 1), 3, N_ITEMS, N_BLOCKS, count=5, offset=9, type_="purchase")
    model.update(events)
    back.update(events)
    np.testing.assert_allclose(back.scores(users), model.scores(users), rtol=1e-5, atol=1e-6)
    assert block_of(back.recommend(user_id(1, 1))[0].item_id) == 3


@pytest.mark.parametrize(
    "params",
    [
        {"factors": 0},
        {"factors": 8.5},
        {"iterations": 0},
        {"regularization": -1.0},
        {"alpha": float("nan")},
        {"alpha": "lots"},
        {"seed": -1},
        {"threads": 0},
        {"learning_rate": 0.1},
    ],
)
def test_bad_params_raise(params):
    with pytest.raises(ValueError):
        ALS(**params)


def test_search_space_gives_valid_models():
    for params in sampled_search_space(ALS):
        assert set(params) == {"factors", "regularization", "alpha", "iterations"}
        ALS(**params)


@pytest.mark.shared
def test_beats_popularity_on_movielens(shared_data):
    train, test = holdout_last(movielens_events(shared_data / "movielens-100k"), 5)
    data = Interactions.from_frame(train)
    assert hit_rate(ALS().fit(data), test) >= 1.4 * hit_rate(Popular().fit(data), test)
