"""A home's behaviour side through the library: events -> train -> recommend (real time),
batch export, evaluation on both protocols, tuning that feeds train."""

import csv

import pandas as pd
import pytest

from stylesense.engine import StyleSense
from stylesense.errors import NotReady

from recsys_fixtures import block_events, block_of


@pytest.fixture
def shop(tmp_path):
    """A home holding a block-structured purchase log (blocks stand for categories)."""
    events = block_events(n_users=200, n_items=80, n_blocks=4, per_user=10, types=("view", "purchase"), seed=3)
    events["ts"] = pd.to_datetime(events["ts"], unit="s").dt.strftime("%Y-%m-%dT%H:%M:%S")
    path = tmp_path / "events.csv"
    events.to_csv(path, index=False)
    ss = StyleSense(tmp_path / "home")
    report = ss.behaviour.import_events(path, user_column="user_id", item_column="item_id",
                                        time_column="ts", type_column="type")
    assert (report.inserted, report.bad) == (len(events), [])
    return ss


def test_recommend_before_training_says_what_to_do(tmp_path):
    ss = StyleSense(tmp_path / "home")
    with pytest.raises(NotReady, match="no events"):
        ss.behaviour.train("itemknn")
    with pytest.raises(NotReady, match="train"):
        ss.behaviour.recommend("anyone")


@pytest.mark.parametrize("model", ["itemknn", "ease", "als"])
def test_live_views_move_the_next_recommendation_without_retraining(shop, model):
    shop.behaviour.train(model)
    path = shop.behaviour.model_path(model)
    stamp = path.stat().st_mtime_ns
    for i in (2, 6, 10, 14):  # items of block 2
        shop.behaviour.add_event("new-shopper", f"b2_i{i}", "view")
    fresh = StyleSense(shop.home.root)  # a new process: the model comes from disk
    recs = fresh.behaviour.recommend("new-shopper", 5)
    assert [block_of(r.item_id) for r in recs] == [2] * 5
    assert path.stat().st_mtime_ns == stamp  # no retrain happened

    # a block-0 shopper who now carts block-3 items gets block 3 into the top, where it had none
    before = fresh.behaviour.recommend("b0_u0", 5)
    assert 3 not in [block_of(r.item_id) for r in before]
    for i in (3, 7, 11, 15, 19, 23):
        shop.behaviour.add_event("b0_u0", f"b3_i{i}", "cart")
    top = fresh.behaviour.recommend("b0_u0", 5)
    assert 3 in [block_of(r.item_id) for r in top]


def test_recommend_batch_csv_covers_every_user(shop, tmp_path):
    shop.behaviour.train("ease")
    out = tmp_path / "recs.csv"
    assert shop.behaviour.recommend_batch(out, k=4) == 200
    rows = list(csv.DictReader(out.open()))
    assert list(rows[0]) == ["user_id", "item_id", "rank", "score"]
    assert len(rows) == 800 and {r["rank"] for r in rows} == {"1", "2", "3", "4"}
    # mostly inside the shopper's own block
    assert sum(block_of(r["user_id"]) == block_of(r["item_id"]) for r in rows) / len(rows) > 0.9


def test_evaluate_both_protocols_beats_popular(shop):
    for protocol in ("stratified", "temporal"):
        result = shop.behaviour.evaluate(protocol, ["popular", "ease"], k=5, test_days=5)
        assert set(result.models) == {"popular", "ease"}
        assert result.models["ease"]["ndcg_at_k"] > result.models["popular"]["ndcg_at_k"]


def test_tuned_parameters_feed_train_and_evaluate(shop):
    result = shop.behaviour.tune("ease", "stratified", trials=3, k=5)
    assert result.best_value >= result.default_value
    assert len(result.trials) == 3
    assert shop.behaviour.tuned_path("ease", "stratified").exists()
    model, _ = shop.behaviour.train("ease")
    assert model.params == result.best_params
    model, _ = shop.behaviour.train("ease", {"l2": "7.5"})  # explicit beats tuned
    assert model.params["l2"] == 7.5


def test_variants_add_ablation_rows_over_the_tuned_parameters(shop):
    result = shop.behaviour.evaluate("stratified", ["ease"], k=5,
                                     variants={"ease-l2-huge": ("ease", {"l2": 1e7})})
    assert set(result.models) == {"ease", "ease-l2-huge"}
    # a penalty that large flattens EASE's item-item weights: the row is a different model
    assert result.models["ease-l2-huge"]["ndcg_at_k"] != result.models["ease"]["ndcg_at_k"]
    with pytest.raises(ValueError, match="unknown model"):
        shop.behaviour.evaluate("stratified", ["ease"], variants={"x": ("nosuchmodel", {})})
