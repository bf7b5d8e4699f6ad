"""The contract every registered recommender keeps, run over the whole registry (as the index
tests run every index kind): the allowed mask and exclude_seen honoured, an unknown shopper
answered, live events folded in by ``update``, and a save/load round trip that scores alike."""

from __future__ import annotations

import numpy as np
import pytest

from stylesense.recommenders import MODELS, Interactions, load_recommender, make_recommender

from recsys_fixtures import QUICK, block_events, browse

N_USERS, N_ITEMS, N_BLOCKS, K = 120, 48, 4, 8

NAMES = sorted(MODELS)


def test_quick_settings_name_registered_models():
    assert set(QUICK) <= set(MODELS)


@pytest.fixture(scope="module")
def data() -> Interactions:
    return Interactions.from_frame(block_events(N_USERS, N_ITEMS, N_BLOCKS, per_user=8, noise=0.1, seed=3))


def _vectors(ids: np.ndarray) -> np.ndarray:
    """Image-like vectors: one direction per block plus noise, so visual neighbours exist."""
    rng = np.random.default_rng(0)
    blocks = np.array([int(i.split("_", 1)[0][1:]) for i in ids])
    return np.eye(16, dtype=np.float32)[blocks] + 0.3 * rng.standard_normal((len(ids), 16)).astype(np.float32)


def _fresh(name: str, data: Interactions):
    model = make_recommender(name, **QUICK.get(name, {}))
    if model.needs_vectors:
        model.with_vectors(data.items, _vectors(data.items))
    return model.fit(data)


@pytest.fixture(scope="module")
def fitted(data):
    """One fitted model per name, shared by the read-only cases."""
    cache: dict = {}

    def get(name: str):
        if name not in cache:
            cache[name] = _fresh(name, data)
        return cache[name]

    return get


def _ids(recs) -> list[str]:
    return [r.item_id for r in recs]


@pytest.mark.parametrize("name", NAMES)
def test_allowed_mask_is_honoured_everywhere(name, fitted):
    model = fitted(name)
    allowed = np.random.default_rng(1).random(len(model.item_ids)) < 0.5
    ok = set(model.item_ids[allowed].tolist())
    top, scores = model.recommend_batch(np.arange(20), K, allowed=allowed)
    assert (top >= 0).any() and all(allowed[i] for i in top[top >= 0])
    for user in (model.user_ids[0], "nobody-knows-me"):
        recs = model.recommend(user, K, allowed=allowed)
        assert recs and set(_ids(recs)) <= ok
    similar = model.similar_items(model.item_ids[0], K, allowed=allowed)
    assert set(_ids(similar)) <= ok - {model.item_ids[0]}


@pytest.mark.parametrize("name", NAMES)
def test_seen_items_are_excluded_when_asked(name, fitted):
    model = fitted(name)
    users = np.arange(30)
    top, _ = model.recommend_batch(users, K, exclude_seen=True)
    for u, row in zip(users, top):
        assert not set(row[row >= 0].tolist()) & set(model.history[u].indices.tolist())
    assert (model.recommend_batch(users, K, exclude_seen=False)[0] >= 0).all()  # seen items count again


@pytest.mark.parametrize("name", NAMES)
def test_an_unknown_shopper_gets_a_full_list(name, fitted):
    recs = fitted(name).recommend("never-seen-before", K)
    ids = _ids(recs)
    assert len(ids) == K and len(set(ids)) == K and set(ids) <= set(fitted(name).item_ids.tolist())
    assert all(np.isfinite(r.score) for r in recs)


@pytest.mark.parametrize("name", NAMES)
def test_update_folds_in_live_events(name, data):
    model = _fresh(name, data)
    before = _ids(model.recommend("walk-in", K))
    viewed = browse("walk-in", 2, N_ITEMS, N_BLOCKS, count=3)
    assert model.update(viewed) == 3
    assert "walk-in" in model.user_index
    row = model.history[model.user_index["walk-in"]]
    assert set(model.item_ids[row.indices].tolist()) == set(viewed["item_id"])
    after = _ids(model.recommend("walk-in", K))
    assert len(after) == K and not set(after) & set(viewed["item_id"])  # the views are seen now
    if model.updatable:
        assert after != before


@pytest.mark.parametrize("name", NAMES)
def test_save_and_load_give_identical_scores(name, data, tmp_path):
    model = _fresh(name, data)
    model.update(browse("walk-in", 1, N_ITEMS, N_BLOCKS, count=2))
    model.save(tmp_path / f"{name}.npz")
    back = load_recommender(tmp_path / f"{name}.npz")
    users = np.arange(len(model.user_ids))  # fitted users and the one update() added
    np.testing.assert_array_equal(back.scores(users), model.scores(users))
    assert back.recommend("walk-in", K) == model.recommend("walk-in", K)
