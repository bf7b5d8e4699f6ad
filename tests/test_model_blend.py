"""Blend (the hybrid): standardised scores, weights, block recovery, component fits reused but
never shared by updates, real time, save/load, visual components, parameter checks, and the
engine filling in the components' tuned parameters."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from recsys_fixtures import (
    assert_newcomers_get_their_block,
    assert_recovers_blocks,
    block_split,
    browse,
    reloaded,
    sampled_search_space,
)
from stylesense.recommenders import make_recommender
from stylesense.recommenders.base import standardise
from stylesense.recommenders.blend import Blend, FitCache
from stylesense.recommenders.ease import EASE
from stylesense.recommenders.itemknn import ItemKNN

N_USERS, N_ITEMS, N_BLOCKS = 400, 200, 4
QUICK = {"als": {"factors": 8, "iterations": 5, "threads": 1}, "bpr": {"factors": 8, "epochs": 5, "threads": 1}}


@pytest.fixture(scope="module")
def split():
    return block_split(N_USERS, N_ITEMS, N_BLOCKS)


def test_standardise_removes_each_rows_scale_and_offset():
    rng = np.random.default_rng(0)
    s = rng.normal(size=(3, 50)).astype(np.float32)
    z = standardise(s)
    np.testing.assert_allclose(z.mean(1), 0, atol=1e-5)
    np.testing.assert_allclose(z.std(1), 1, atol=1e-4)
    np.testing.assert_allclose(standardise(7 * s + np.array([[1], [-3], [100]], np.float32)), z, atol=1e-4)
    flat = standardise(np.ones((1, 5), np.float32))
    assert np.array_equal(flat, np.zeros((1, 5), np.float32))  # no spread: no opinion
    s[0, :3] = -np.inf  # unscorable items count as the row's lowest score
    z = standardise(s)
    assert np.isfinite(z).all() and z[0, :3].max() <= z[0].min() + 1e-6


def test_one_weighted_component_ranks_like_that_model(split):
    data, _ = split
    blend = Blend(models="ease,itemknn", weights="1,0").fit(data)
    ease = EASE().fit(data)
    users = np.arange(data.n_users)
    assert np.array_equal(blend.recommend_batch(users, 10)[0], ease.recommend_batch(users, 10)[0])
    both = Blend(models="ease,itemknn", weights="1,1").fit(data)
    assert not np.array_equal(both.recommend_batch(users, 10)[0], ease.recommend_batch(users, 10)[0])


def test_recovers_blocks_and_beats_popularity(split):
    assert_recovers_blocks(Blend(params=QUICK).fit(split[0]), split)


def test_component_fits_are_reused_across_weights_through_a_cache(split, monkeypatch):
    data, _ = split
    cache = FitCache()
    first = Blend(models="ease,itemknn", weights="1,1").with_cache(cache).fit(data)
    calls = []
    real_fit = ItemKNN.fit
    monkeypatch.setattr(ItemKNN, "fit", lambda self, d: calls.append(1) or real_fit(self, d))
    second = Blend(models="ease,itemknn", weights="1,3").with_cache(cache).fit(data)
    assert calls == [] and second.components[1] is first.components[1]
    Blend(models="ease,itemknn", weights="1,3", params={"itemknn": {"neighbours": 7}}).with_cache(cache).fit(data)
    assert calls == [1]  # other parameters: a new fit
    Blend(models="ease,itemknn", weights="1,3").fit(data)
    assert calls == [1, 1]  # no cache, no sharing: a blend that will serve owns its components


def test_updates_reach_every_component_but_no_other_blend(split):
    data, _ = split
    user = str(data.users[0])
    cache = FitCache()
    a = Blend(models="ease,itemknn").with_cache(cache).fit(data)
    b = Blend(models="ease,itemknn", weights="1,2").with_cache(cache).fit(data)  # shares a's fits
    before = b.scores(np.array([b.user_index[user]])).copy()
    shared = list(b.components)
    assert all(x is y for x, y in zip(a.components, shared))
    a.update(browse(user, 2, N_ITEMS, N_BLOCKS, count=6))
    assert all(x is y for x, y in zip(b.components, shared))  # b's stay as they were
    assert all(c.history is not b.components[0].history for c in a.components)
    for component in a.components:
        assert component.history[component.user_index[user]].nnz == a.history[a.user_index[user]].nnz
    np.testing.assert_array_equal(b.scores(np.array([b.user_index[user]])), before)


def test_newcomers_get_their_block_in_real_time(split):
    data, _ = split
    assert_newcomers_get_their_block(Blend(models="ease,itemknn").fit(data), data, N_ITEMS, N_BLOCKS)


def test_save_load_round_trip(split, tmp_path):
    data, _ = split
    model = Blend(params=QUICK, weights="1,0.5,0.25").fit(data)
    model.update(browse("newcomer", 1, N_ITEMS, N_BLOCKS, count=3))
    back = reloaded(model, tmp_path / "blend.npz")
    assert back.names == model.names and back.params == model.params
    users = np.arange(len(model.user_ids))
    np.testing.assert_allclose(back.scores(users), model.scores(users), rtol=1e-5, atol=1e-5)
    back.update(browse("newcomer", 1, N_ITEMS, N_BLOCKS, count=3, offset=3))
    assert all(c.history.shape[0] == len(back.user_ids) for c in back.components)


def test_visual_component_gets_the_vectors(split):
    data, _ = split
    ids = data.items
    vectors = np.array([[1.0, 0.0] if i.startswith("b0") else [0.0, 1.0] for i in ids], np.float32)
    blend = Blend(models="visual,itemknn")
    assert blend.needs_vectors and not Blend(models="ease").needs_vectors
    with pytest.raises(ValueError, match="vectors"):
        Blend(models="visual,itemknn").fit(data)
    blend.with_vectors(ids, vectors).fit(data)
    assert blend.components[0].name == "visual"


def test_search_space_builds_valid_blends():
    for params in sampled_search_space(Blend):
        model = make_recommender("blend", **params)
        assert len(model.weights) == 3 and (model.weights >= 0).all() and model.weights.sum() > 0


@pytest.mark.parametrize(
    "params, message",
    [
        ({"models": ""}, "at least one"),
        ({"models": "ease,blend"}, "other than blend"),
        ({"models": "ease,ease"}, "distinct"),
        ({"models": "ease,nope"}, "registered"),
        ({"weights": "1,2"}, "2 weights for 3 models"),
        ({"weights": "1,-1,1"}, "non-negative"),
        ({"weights": "0,0,0"}, "at least one positive"),
        ({"weights": "a,b,c"}, "comma-separated numbers"),
        ({"params": "{not json"}, "JSON"),
        ({"params": {"itemknn": {}}}, "not in the blend"),
        ({"params": {"ease": 3}}, "parameter objects"),
    ],
)
def test_bad_parameters_are_refused(params, message):
    with pytest.raises(ValueError, match=message):
        Blend(**params)


def test_params_from_the_command_line_are_json():
    model = Blend(params=json.dumps({"ease": {"l2": 50.0}}))
    assert model.params["params"] == {"ease": {"l2": 50.0}}


def test_engine_gives_components_their_tuned_parameters(tmp_path):
    from stylesense.engine import StyleSense

    ss = StyleSense.init(tmp_path / "home")
    b = ss.behaviour
    b.tuned_dir.mkdir(parents=True)
    (b.tuned_dir / "ease-stratified.json").write_text(json.dumps({
        "model": "ease", "protocol": "stratified", "metric": "ndcg_at_k", "k": 10,
        "best_params": {"l2": 42.0, "binary": True, "max_items": 10000}, "best_value": 0.1,
        "default_value": 0.1, "trials": [], "seconds": 1.0,
    }))
    built = b._build("blend", {"models": "ease,itemknn"}, "stratified")
    assert built.params["params"] == {"ease": {"l2": 42.0, "binary": True, "max_items": 10000}, "itemknn": {}}
    mine = b._build("blend", {"models": "ease", "params": {"ease": {"l2": 7.0}}}, "stratified")
    assert mine.params["params"] == {"ease": {"l2": 7.0, "binary": True, "max_items": 10000}}  # l2 overridden
    assert b._build("blend", {"models": "ease"}, "stratified", tuned=False).params["params"] == {}


def test_similar_items_and_reasons_come_from_the_heaviest_component(split):
    data, _ = split
    blend = Blend(models="ease,itemknn", weights="1,3").fit(data)
    knn = blend.components[1]
    item = str(data.items[0])
    assert blend.similar_items(item, 5) == knn.similar_items(item, 5)
    user = str(data.users[0])
    recs = blend.recommend(user, 5)
    u = blend.user_index[user]
    expected = knn._reasons(u, np.array([blend.data.item_index[r.item_id] for r in recs]), None)
    assert [r.reason for r in recs] == expected and any(expected)


def test_fits_are_not_reused_for_other_data(split):
    """Same events under other user ids (or sessions) are other data: a component keyed by its
    own user index must not be borrowed."""
    from stylesense.recommenders import Interactions

    data, _ = split
    cache = FitCache()
    first = Blend(models="ease,itemknn").with_cache(cache).fit(data)
    events = pd.DataFrame({"user_id": np.char.add("x_", data.users[data.user]), "item_id": data.items[data.item],
                           "type": "view", "ts": data.ts})
    renamed = Interactions.from_frame(events)
    again = Blend(models="ease,itemknn").with_cache(cache).fit(renamed)
    assert all(a is not b for a, b in zip(first.components, again.components))
    sessions = Interactions.from_frame(events.assign(session_id=np.arange(len(events)) // 3))
    third = Blend(models="ease,itemknn").with_cache(cache).fit(sessions)
    assert all(a is not b for a, b in zip(again.components, third.components))


def test_an_uncached_blend_updates_its_components_in_place(split):
    data, _ = split
    blend = Blend(models="ease,itemknn").fit(data)
    components = list(blend.components)
    blend.update(browse("newcomer", 0, N_ITEMS, N_BLOCKS, count=3))
    assert all(a is b for a, b in zip(blend.components, components))
    assert components[0].history.shape[0] == len(blend.user_ids)


def test_tuned_weights_stay_with_their_components():
    from stylesense.behaviour import _with_tuned

    tuned = {"models": "ease,als,bpr", "weights": "0.9,0.05,0.05", "params": {}}
    assert _with_tuned(tuned, {})["weights"] == "0.9,0.05,0.05"
    assert _with_tuned(tuned, {"models": "ease,als,bpr"})["weights"] == "0.9,0.05,0.05"
    other = _with_tuned(tuned, {"models": "ease,itemknn"})
    assert other == {"models": "ease,itemknn", "params": {}}
    Blend(**other)  # equal weights: builds
    assert _with_tuned({"l2": 5.0}, {"binary": False}) == {"l2": 5.0, "binary": False}
