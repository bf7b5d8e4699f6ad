"""Item-kNN on a log with known block structure: recovery, similar items, reasons, real-time
updates, determinism, save/load, parameter checks; and a check on real MovieLens ratings."""

import numpy as np
import pytest

from recsys_fixtures import (
    sampled_search_space,
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
from stylesense.errors import NotFound
from stylesense.recommenders import Interactions
from stylesense.recommenders.itemknn import ItemKNN
from stylesense.recommenders.popular import Popular

N_USERS, N_ITEMS, N_BLOCKS = 400, 200, 4


@pytest.fixture(scope="module")
def split():
    return block_split(N_USERS, N_ITEMS, N_BLOCKS)


@pytest.fixture(scope="module")
def popular_hits(split):
    data, test = split
    return hit_rate(Popular().fit(data), test)


@pytest.mark.parametrize("similarity", ["cosine", "bm25"])
def test_recovers_block_structure_and_beats_popularity(split, popular_hits, similarity):
    data, test = split
    model = ItemKNN(similarity=similarity, neighbours=30).fit(data)
    share = own_block_share(model)
    assert share.mean() >= 0.95 and np.mean(share >= 0.8) >= 0.95
    assert hit_rate(model, test) >= 3 * popular_hits


def test_similar_items_come_from_the_same_block(split):
    model = ItemKNN().fit(split[0])
    for item in (item_id(0, 0), item_id(1, 41), item_id(3, 99)):
        similar = model.similar_items(item, k=5)
        assert len(similar) == 5 and item not in [r.item_id for r in similar]
        assert all(block_of(r.item_id) == block_of(item) for r in similar)
    with pytest.raises(NotFound):
        model.similar_items("no-such-item")


def test_reason_names_the_history_item_that_contributes_most(split):
    data, _ = split
    model = ItemKNN().fit(data)
    user = data.users[5]
    u = model.user_index[user]
    history = set(data.items[model.history[u].indices].tolist())
    for rec in model.recommend(user, k=5):
        assert rec.reason is not None and rec.reason.startswith("similar to ")
        named = rec.reason.split()[2]
        assert named in history
        row = model.history[u]
        contrib = row.data * model.similarity[row.indices][:, data.item_index[rec.item_id]].toarray().ravel()
        assert named == data.items[row.indices[np.argmax(contrib)]]


def test_real_time_update_moves_recommendations_without_refit(split):
    data, _ = split
    model = ItemKNN().fit(data)
    user = user_id(0, 0)  # a block-0 shopper
    others = [u for u in range(data.n_users) if u != model.user_index[user]][:50]
    before = model.scores(np.array(others))
    assert not any(block_of(r.item_id) == 3 for r in model.recommend(user, k=10))
    taken = model.update(browse(user, 3, N_ITEMS, N_BLOCKS, count=8, offset=4, type_="cart"))
    assert taken == 8
    recs = model.recommend(user, k=10)
    assert block_of(recs[0].item_id) == 3 and sum(block_of(r.item_id) == 3 for r in recs) >= 5
    browsed = set(browse(user, 3, N_ITEMS, N_BLOCKS, count=8, offset=4)["item_id"])
    assert browsed.isdisjoint(r.item_id for r in recs)  # what they just viewed is excluded
    # Only the updated shopper's scores moved.
    np.testing.assert_array_equal(model.scores(np.array(others)), before)

    # A shopper never seen at fit time gets their block, not the popularity list.
    model.update(browse("newcomer", 2, N_ITEMS, N_BLOCKS, count=3, offset=6))
    assert all(block_of(r.item_id) == 2 for r in model.recommend("newcomer", k=10))
    # An unknown item in the stream is skipped, not an error.
    stray = browse("newcomer", 2, N_ITEMS, N_BLOCKS, count=1).assign(item_id="unknown-item")
    assert model.update(stray) == 0


def test_fit_is_deterministic(split):
    data, _ = split
    users = np.arange(data.n_users)
    a = ItemKNN(similarity="bm25", neighbours=20).fit(data).scores(users)
    b = ItemKNN(similarity="bm25", neighbours=20, threads=1).fit(data).scores(users)
    np.testing.assert_array_equal(a, b)


def test_neighbours_bounds_the_similarity_rows(split):
    model = ItemKNN(neighbours=7).fit(split[0])
    counts = np.diff(model.similarity.indptr)
    assert counts.max() <= 7 and model.similarity.diagonal().max() == 0


def test_save_load_round_trip_keeps_scores_and_updates(split, tmp_path):
    data, _ = split
    model = ItemKNN(similarity="bm25", neighbours=25, K1=2.0, B=0.5).fit(data)
    model.update(browse("newcomer", 1, N_ITEMS, N_BLOCKS, count=4))
    back = reloaded(model, tmp_path / "itemknn.npz")
    assert back.params == model.params
    users = np.arange(len(model.user_ids))
    np.testing.assert_array_equal(back.scores(users), model.scores(users))
    assert back.recommend("newcomer") == model.recommend("newcomer")
    assert back.similar_items(item_id(2, 2)) == model.similar_items(item_id(2, 2))
    # Updates keep working after a load.
    events = browse(user_id(1, 1), 0, N_ITEMS, N_BLOCKS, count=3, offset=9)
    model.update(events)
    back.update(events)
    np.testing.assert_array_equal(back.scores(users), model.scores(users))


@pytest.mark.parametrize(
    "params",
    [
        {"similarity": "jaccard"},
        {"neighbours": 0},
        {"neighbours": 2.5},
        {"neighbours": "many"},
        {"K1": 0.0},
        {"B": 1.5},
        {"threads": 0},
        {"shrinkage": 10},
    ],
)
def test_bad_params_raise(params):
    with pytest.raises(ValueError):
        ItemKNN(**params)


def test_cli_style_string_params_are_coerced():
    model = ItemKNN(neighbours="40", K1="1.5", similarity="bm25")
    assert model.params["neighbours"] == 40 and model.params["K1"] == 1.5


def test_search_space_gives_valid_models():
    seen = set()
    for params in sampled_search_space(ItemKNN):
        ItemKNN(**params)
        seen.add(params["similarity"])
        assert ("K1" in params) == (params["similarity"] == "bm25")
    assert seen == {"cosine", "bm25"}


@pytest.mark.shared
def test_beats_popularity_on_movielens(shared_data):
    train, test = holdout_last(movielens_events(shared_data / "movielens-100k"), 5)
    data = Interactions.from_frame(train)
    assert hit_rate(ItemKNN().fit(data), test) >= 1.3 * hit_rate(Popular().fit(data), test)
