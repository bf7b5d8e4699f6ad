"""Explicit negative feedback (``dislike``, ``not_interested``) on real homes: it is no
interaction for any model (training, fold-in, popular and trending from the log, evaluation),
a disliked product leaves that shopper's recommendations on the next request with no retrain,
for every model, and its look-alikes come after every other product; anonymous sessions too;
the CLI and the API take the new event types."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from stylesense.cli import app
from stylesense.concurrency import file_stamp
from stylesense.errors import InvalidInput
from stylesense.serving.app import Settings, create_app
from stylesense.serving.keys import KeyStore
from stylesense.weights import NEGATIVE_TYPES

from recsys_fixtures import QUICK, look_of, looks_shop

MODELS = ("popular", "trending", "itemknn", "ease", "als", "visual")


@pytest.fixture
def shop(tmp_path):
    """Three looks of ten near-identical photos, look 0 the best sellers (recsys_fixtures.looks_shop)."""
    return looks_shop(tmp_path / "home")


def ids(recs) -> list[str]:
    return [r.item_id for r in recs]


def test_negative_types_weigh_nothing_and_cannot_be_made_to(shop):
    weights = shop.behaviour.weights
    assert {t: weights[t] for t in NEGATIVE_TYPES} == {"dislike": 0.0, "not_interested": 0.0}
    with pytest.raises(InvalidInput, match="negative feedback"):
        shop.behaviour.set_weights({"dislike": 3})
    shop.behaviour.set_weights({"purchase": 10, "dislike": 0})  # saying 0 again is harmless
    shop.update_config(lambda c: setattr(c, "event_weights", {"view": 1.0, "purchase": 10.0}))  # an older home's table
    assert shop.behaviour.weights["not_interested"] == 0.0
    assert shop.behaviour.add_event("s1", "l2_p0", "not_interested")


def test_no_model_learns_from_negative_feedback(shop):
    """Twenty shoppers dislike the least sold product: it stays last for popular and trending,
    from a trained model and from the log, and the dislikers are unknown to the models."""
    worst = "l2_p9"
    for u in range(20):
        shop.behaviour.add_event(f"hater{u}", worst, "dislike")
    before = {kind: ids(getattr(shop.behaviour, kind)(30)) for kind in ("popular", "trending")}
    for kind in ("popular", "trending"):
        assert before[kind][-1] == worst, kind  # from the log: 20 dislikes added nothing
        model, _ = shop.behaviour.train(kind)
        assert "hater0" not in model.user_index and model.data.n_events == 765  # purchases only
        assert ids(shop.behaviour.recommend("new-shopper", 30, model=kind))[-1] == worst
    split = shop.behaviour.evaluate("stratified", ["popular"], k=5).split
    assert split["train_events"] + split["test_events"] == 765  # no dislike is a held-out "hit"


@pytest.mark.parametrize("name", MODELS)
def test_a_disliked_product_leaves_the_list_at_once_for_every_model(shop, name):
    for item in ("l1_p0", "l1_p1"):
        shop.behaviour.add_event("me", item, "view")
    shop.behaviour.train(name, QUICK.get(name))
    trained = file_stamp(shop.behaviour.model_path(name))
    first = ids(shop.behaviour.recommend("me", 5))
    assert first
    shop.behaviour.add_event("me", first[0], "dislike")
    after = ids(shop.behaviour.recommend("me", 29))
    assert first[0] not in after
    assert file_stamp(shop.behaviour.model_path(name)) == trained  # no retrain
    assert "me" not in shop.behaviour.model(name).user_index or shop.behaviour.model(name).history[
        shop.behaviour.model(name).user_index["me"]].nnz == 2  # the dislike is no history


def test_look_alikes_of_a_disliked_product_come_after_everything_else(shop):
    shop.behaviour.train("popular")
    top = ids(shop.behaviour.recommend("me", 10))
    assert {look_of(i) for i in top} == {0}  # the best sellers are all one look
    shop.behaviour.add_event("me", "l0_p0", "not_interested")
    shown = ids(shop.behaviour.recommend("me", 10))
    assert "l0_p0" not in shown and {look_of(i) for i in shown} == {1}  # the next best look
    everything = ids(shop.behaviour.recommend("me", 30))
    assert len(everything) == 29 and [look_of(i) for i in everything] == [1] * 10 + [2] * 10 + [0] * 9
    assert everything[20:] == [f"l0_p{j}" for j in range(1, 10)]  # lowered, still in score order
    assert ids(shop.behaviour.recommend("someone-else", 10)) == top  # only the shopper who said no


def test_look_alikes_are_lowered_on_a_home_whose_index_is_in_a_database(tmp_path):
    """The same on a Milvus Lite home (no index file): the look-alikes come from the database index."""
    pytest.importorskip("milvus_lite", reason="milvus-lite is not installed")
    shop = looks_shop(tmp_path / "milvus-home", index_kind="milvus")
    assert shop.has_index and not shop.home.index_path.exists()
    shop.behaviour.train("popular")
    shop.behaviour.add_event("me", "l0_p0", "not_interested")
    assert {look_of(i) for i in ids(shop.behaviour.recommend("me", 10))} == {1}


def test_recommend_batch_honours_dislikes_as_recommend_does(shop, tmp_path):
    """The batch file and the single call agree for a shopper who said no; the others keep
    the batch's own rows."""
    import pandas as pd

    for u in ("me", "you"):
        shop.behaviour.add_event(u, "l1_p0", "view")
    shop.behaviour.train("itemknn")
    shop.behaviour.add_event("me", "l1_p1", "dislike")
    out = tmp_path / "recs.csv"
    shop.behaviour.recommend_batch(out, 10)
    table = pd.read_csv(out, dtype=str)
    mine = table[table.user_id == "me"].item_id.tolist()
    assert "l1_p1" not in mine and mine == ids(shop.behaviour.recommend("me", 10))
    assert "l1_p1" in table[table.user_id == "you"].item_id.tolist()  # only the shopper who said no


def test_a_dislike_beside_a_filter_and_on_a_home_without_photos(shop, tmp_path):
    from stylesense.catalog.filters import Filters

    shop.behaviour.train("popular")
    shop.behaviour.add_event("me", "l2_p0", "dislike")
    look2 = ids(shop.behaviour.recommend("me", 10, filters=Filters.parse(["look=l2"])))
    assert look2 == [f"l2_p{j}" for j in range(1, 10)]  # the filter leaves only look-alikes: they fill the list

    from stylesense.engine import StyleSense

    bare = StyleSense(tmp_path / "bare", threads=1)  # events only: nothing to compare photos by
    bare.behaviour.events.import_frame(shop.behaviour.events.frame().drop(columns="pk"))
    bare.behaviour.train("popular")
    assert "l2_p0" not in ids(bare.behaviour.recommend("me", 30))
    assert len(bare.behaviour.recommend("me", 30)) == 29


def test_an_anonymous_sessions_dislikes_are_no_history(shop):
    shop.behaviour.train("visual")
    viewed = ids(shop.behaviour.recommend_session([("l1_p0", "view")], 5))
    assert {look_of(i) for i in viewed} == {1}  # more of what the session looked at
    session = [("l1_p0", "view"), ("l1_p1", "dislike")]
    assert {look_of(i) for i in ids(shop.behaviour.recommend_session(session, 12))} == {0, 2}
    everything = ids(shop.behaviour.recommend_session(session, 30))  # less l1_p0 (seen) and l1_p1
    assert len(everything) == 28 and sorted(everything[20:]) == [f"l1_p{j}" for j in range(2, 10)]
    only_no = ids(shop.behaviour.recommend_session([("l0_p0", "dislike")], 5))
    assert {look_of(i) for i in only_no} == {1}  # nothing liked: the cold-start list, less look 0


def test_cli_and_api_take_negative_feedback(shop):
    shop.behaviour.train("popular")
    runner = CliRunner()
    r = runner.invoke(app, ["--home", str(shop.home.root), "events", "add", "--user", "me", "--item", "l0_p0",
                            "--type", "dislike"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["--home", str(shop.home.root), "recommend", "--user", "me", "-k", "3", "--json"])
    assert r.exit_code == 0, r.output
    assert [look_of(x["item_id"]) for x in json.loads(r.output)] == [1, 1, 1]

    c = TestClient(create_app(shop.home.root, Settings(threads=1)))
    key = {"X-API-Key": KeyStore(shop.store.engine).create("write")[0]}
    r = c.post("/v1/events", json={"user_id": "you", "item_id": "l0_p0", "type": "not_interested"}, headers=key)
    assert r.status_code == 200, r.text
    items = c.get("/v1/users/you/recommendations", params={"k": 10}, headers=key).json()["items"]
    assert {look_of(x["item_id"]) for x in items} == {1}
