"""BPR on a log with known block structure: recovery, the bias column, similar items, new
shoppers from update(), determinism, save/load, parameter checks; and a check on real MovieLens
ratings."""

import numpy as np
import pytest
import torch

from recsys_fixtures import (
    sampled_search_space,
    assert_recovers_blocks,
    assert_newcomers_get_their_block,
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
from stylesense.recommenders.bpr import BPR
from stylesense.recommenders.popular import Popular

N_USERS, N_ITEMS, N_BLOCKS = 400, 200, 4
SMALL = {"factors": 16, "epochs": 40, "learning_rate": 0.02, "batch_size": 256}


@pytest.fixture(scope="module")
def split():
    return block_split(N_USERS, N_ITEMS, N_BLOCKS)


@pytest.fixture(scope="module")
def fitted(split):
    return BPR(**SMALL).fit(split[0])


def test_recovers_block_structure_and_beats_popularity(split, fitted):
    assert_recovers_blocks(fitted, split)


def test_default_params_recover_the_structure_too(split):
    assert own_block_share(BPR().fit(split[0])).mean() >= 0.95


def test_factors_carry_the_item_bias_column(split, fitted):
    assert fitted.user_factors.shape == (split[0].n_users, 17)
    assert fitted.item_factors.shape == (split[0].n_items, 17)
    np.testing.assert_array_equal(fitted.user_factors[:, -1], 1.0)  # so the dot adds the bias
    u = np.arange(5)
    np.testing.assert_allclose(
        fitted.scores(u), fitted.user_factors[u] @ fitted.item_factors.T, rtol=1e-6
    )


def test_similar_items_come_from_the_same_block(fitted):
    for item in (item_id(0, 0), item_id(1, 41), item_id(3, 99)):
        similar = fitted.similar_items(item, k=5)
        assert len(similar) == 5 and item not in [r.item_id for r in similar]
        assert all(block_of(r.item_id) == block_of(item) for r in similar)


def test_update_leaves_trained_users_alone_and_serves_new_shoppers(split):
    data, _ = split
    model = BPR(**SMALL).fit(data)
    assert not model.updatable
    before = model.scores(np.arange(data.n_users))
    model.update(browse(user_id(0, 0), 3, N_ITEMS, N_BLOCKS, count=8, offset=4, type_="cart"))
    np.testing.assert_array_equal(model.scores(np.arange(data.n_users)), before)

    # A shopper first seen in update() is scored from their items' factors, not popularity.
    assert_newcomers_get_their_block(model, data, N_ITEMS, N_BLOCKS)


def test_fit_is_deterministic_for_a_seed(split):
    data, _ = split
    users = np.arange(data.n_users)
    a = BPR(seed=3, **SMALL).fit(data).scores(users)
    b = BPR(seed=3, **SMALL).fit(data).scores(users)
    c = BPR(seed=4, **SMALL).fit(data).scores(users)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_threads_work_and_the_torch_setting_is_restored(split, fitted):
    data, _ = split
    before = torch.get_num_threads()
    quick = {**SMALL, "epochs": 3}
    one = BPR(threads=1, **quick).fit(data)
    two = BPR(threads=2, **quick).fit(data)
    assert torch.get_num_threads() == before
    assert one.params["threads"] == 1 and fitted.params["threads"] == 1  # the default
    users = np.arange(data.n_users)
    np.testing.assert_allclose(one.scores(users), two.scores(users), rtol=1e-4, atol=1e-5)


def test_save_load_round_trip_keeps_scores(split, tmp_path):
    data, _ = split
    model = BPR(**SMALL).fit(data)
    model.update(browse("newcomer", 1, N_ITEMS, N_BLOCKS, count=4))
    back = reloaded(model, tmp_path / "bpr.npz")
    assert back.params == model.params
    users = np.arange(len(model.user_ids))
    np.testing.assert_array_equal(back.scores(users), model.scores(users))
    assert back.recommend("newcomer") == model.recommend("newcomer")
    assert back.similar_items(item_id(2, 2)) == model.similar_items(item_id(2, 2))


@pytest.mark.parametrize(
    "params",
    [
        {"factors": 0},
        {"epochs": -5},
        {"epochs": 2.5},
        {"batch_size": 0},
        {"iterations": 10},
        {"learning_rate": 0.0},
        {"learning_rate": "fast"},
        {"regularization": -0.1},
        {"seed": 1.5},
        {"threads": 0},
        {"alpha": 1.0},
    ],
)
def test_bad_params_raise(params):
    with pytest.raises(ValueError):
        BPR(**params)


def test_search_space_gives_valid_models():
    for params in sampled_search_space(BPR):
        assert set(params) == {"factors", "learning_rate", "regularization", "epochs"}
        BPR(**params)


QUICK_ML = {"factors": 64, "epochs": 40}  # a few seconds on MovieLens-100K


@pytest.mark.shared
def test_beats_popularity_on_movielens(shared_data):
    events = movielens_events(shared_data / "movielens-100k")
    train, test = holdout_last(events, 5)
    data = Interactions.from_frame(train)
    pop = hit_rate(Popular().fit(data), test)
    assert hit_rate(BPR(**QUICK_ML).fit(data), test) >= 1.3 * pop

    # Shoppers left out of the fit and then streamed in through update() are served better
    # than by popularity (the averaged-item-factor user vector).
    rng = np.random.default_rng(0)
    held = set(rng.choice(events["user_id"].unique(), 150, replace=False).tolist())
    streamed, later = holdout_last(events[events["user_id"].isin(held)], 5)
    data = Interactions.from_frame(events[~events["user_id"].isin(held)], items=events["item_id"].unique())
    model = BPR(**QUICK_ML).fit(data)
    popular = Popular().fit(data)
    for m in (model, popular):
        m.update(streamed)
    assert hit_rate(model, later) >= 1.3 * hit_rate(popular, later)
