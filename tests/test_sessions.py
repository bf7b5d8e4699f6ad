"""Anonymous sessions (POST /v1/sessions/recommend): a history that belongs to nobody is scored
as the model scores a shopper with that history, changes nothing in the model, keeps the
catalogue's rules, and combines with a photo's similarities."""

import numpy as np
import pandas as pd
import pytest

from stylesense.errors import InvalidInput, NotReady
from stylesense.recommenders import Interactions, make_recommender
from stylesense.recommenders.base import PHOTO_REASON

from recsys_fixtures import QUICK, block_events, block_of, block_shop

MODELS = ["popular", "trending", "itemknn", "ease", "als", "bpr", "visual", "gru4rec", "blend"]


@pytest.fixture(scope="module")
def data():
    events = block_events(n_users=80, n_items=40, n_blocks=4, per_user=6, types=("view", "purchase"), seed=7)
    return events, Interactions.from_frame(events)


def _fitted(name: str, data) -> object:
    events, interactions = data
    model = make_recommender(name, **QUICK.get(name, {}))
    if model.needs_vectors:
        rng = np.random.default_rng(0)
        centres = rng.standard_normal((4, 16))
        ids = interactions.items.tolist()
        model.with_vectors(ids, np.stack([centres[block_of(i)] + 0.3 * rng.standard_normal(16) for i in ids]))
    return model.fit(interactions)


@pytest.mark.parametrize("name", MODELS)
def test_a_session_scores_as_a_shopper_with_that_history_and_changes_nothing(name, data):
    events, interactions = data
    model = _fitted(name, data)
    user = "b1_u1"
    own = events[events["user_id"] == user]
    before = (len(model.user_ids), model.history.nnz, dict(model.user_index))
    seq = pd.Index(model.item_ids).get_indexer(own["item_id"])
    session = model.session_scores(seq, interactions.event_weights(own["type"]))
    assert session.shape == (interactions.n_items,) and (len(model.user_ids), model.history.nnz,
                                                         dict(model.user_index)) == before
    if name not in ("als", "bpr"):  # factor models fold the row in: close to the trained vector, not equal
        np.testing.assert_allclose(session, model.scores(np.array([model.user_index[user]]))[0], rtol=1e-4, atol=1e-4)
    recs = model.recommend_session(own["item_id"].tolist(), own["type"].tolist(), 5)
    assert len(recs) == 5 and not {r.item_id for r in recs} & set(own["item_id"])  # seen items hidden
    if name in ("itemknn", "ease", "als", "visual", "blend"):  # the rest, QUICK, have not learnt the blocks
        assert sum(block_of(r.item_id) == 1 for r in recs) >= 4, [r.item_id for r in recs]


def test_unknown_items_are_left_out_and_an_empty_history_is_cold_start(data):
    model = _fitted("itemknn", data)
    cold = model.recommend_session(["never-seen"], ["view"], 5)
    assert [r.item_id for r in cold] == [r.item_id for r in model.recommend("nobody", 5)]
    mixed = model.recommend_session(["never-seen", "b2_i2"], ["view", "purchase"], 5)
    assert mixed == model.recommend_session(["b2_i2"], ["purchase"], 5)
    assert "b2_i2" in {r.item_id for r in model.recommend_session(["b2_i2"], ["view"], 40, exclude_seen=False)}


def test_a_photo_row_pulls_its_lookalikes_up_and_says_so(data):
    model = _fitted("itemknn", data)
    photo = np.full(len(model.item_ids), -np.inf, np.float32)
    wanted = [i for i, item in enumerate(model.item_ids) if block_of(item) == 3][:3]
    photo[wanted] = [0.9, 0.8, 0.7]  # a photo like three items of block 3
    recs = model.recommend_session(["b1_i1", "b1_i5"], ["view", "view"], 6, photo=photo)
    by_photo = [r.item_id for r in recs if r.reason == PHOTO_REASON]
    assert set(by_photo) <= {model.item_ids[i] for i in wanted} and len(by_photo) >= 2
    assert any(block_of(r.item_id) == 1 for r in recs)  # and the session's own taste stays in


@pytest.fixture
def shop(tmp_path):
    ss = block_shop(tmp_path / "home", 40, 16, 2, 4, 1)
    ss.behaviour.train("itemknn")
    return ss


def test_behaviour_keeps_the_catalogue_rules_and_checks_its_input(shop):
    b = shop.behaviour
    session = [("b0_i0", "view"), ("b0_i2", "purchase")]
    first = b.recommend_session(session, 3)[0].item_id
    shop.set_hidden([first])
    assert first not in {r.item_id for r in b.recommend_session(session, 10)}
    assert all(r.item_id.startswith("b1_") for r in b.recommend_session(session, 5, filters=_where("block=b1")))
    assert b.recommend_session(session, 3, model="itemknn") == b.recommend_session(session, 3)
    for events, reason in [([], "needs its events, a photo, or both"), ([("b0_i0", "glance")], "event 0: unknown event type 'glance'"),
                           ([("b0_i0", "view"), (" x", "view")], "event 1: item id ' x' has leading"),
                           ([("b0_i0", "view")] * 1001, "at most 1000 events")]:
        with pytest.raises(InvalidInput, match=reason):
            b.recommend_session(events, 3)
    with pytest.raises(InvalidInput, match="unknown model 'nope'"):
        b.recommend_session(session, 3, model="nope")
    with pytest.raises(NotReady, match="no trained 'ease' model"):
        b.recommend_session(session, 3, model="ease")


def _where(*pairs: str):
    from stylesense.catalog.filters import Filters

    return Filters.parse(list(pairs))
