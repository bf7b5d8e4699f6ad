"""The replay simulator on a synthetic world where one arm is better by construction: shoppers
keep to one block of products, and their held-out purchases are more products of their block.
Item-kNN recommends a shopper's block; popularity is blind to blocks. Replayed through the API
(FastAPI's TestClient), the experiment's report must find item-kNN the winner with p < 0.05,
and its numbers must be the ones the simulator itself counted."""

from __future__ import annotations

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from stylesense.engine import StyleSense
from stylesense.experiments.simulate import replay_shoppers, simulate
from stylesense.serving.app import Settings, create_app
from stylesense.serving.keys import KeyStore

from recsys_fixtures import block_events, block_of, holdout_last

PRICE = 25.0


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A home trained on each shopper's first 6 events; their last 3 (unseen items of their
    own block) are the held-out purchases the replay follows."""
    log = block_events(n_users=160, n_items=80, n_blocks=4, per_user=9, types=("view", "purchase"), seed=4)
    log["ts"] = pd.to_datetime(log["ts"], unit="s", utc=True)
    train, held_out = holdout_last(log, n=3)
    held_out = held_out.assign(type="purchase", price=PRICE)
    ss = StyleSense(tmp_path_factory.mktemp("sim") / "home", threads=1)
    ss.behaviour.events.import_frame(train)
    ss.behaviour.train("popular")
    ss.behaviour.train("itemknn", {"threads": 1})
    assert all(block_of(u) == block_of(i) for u, i in zip(held_out["user_id"], held_out["item_id"]))
    return ss, replay_shoppers(held_out)


def test_replay_shoppers_are_their_held_out_days_in_order():
    held = pd.DataFrame({"user_id": ["u1", "u1", "u1", "u2", "u1"], "item_id": ["a", "b", "c", "a", "d"],
                         "type": ["purchase", "purchase", "purchase", "purchase", "view"],
                         "ts": pd.to_datetime(["2024-01-02 10:00", "2024-01-01 09:00", "2024-01-02 18:00",
                                               "2024-01-01 00:00", "2024-01-01 08:00"], utc=True),
                         "price": [1.0, 2.0, None, 4.0, 5.0]})
    shoppers = replay_shoppers(held)
    assert [s.user_id for s in shoppers] == ["u1", "u2"]
    assert shoppers[0].visits == ((("b", 2.0),), (("a", 1.0), ("c", None)))  # views are no purchases
    assert shoppers[1].visits == ((("a", 4.0),),)


def test_the_simulated_ab_test_finds_the_arm_that_is_better_by_construction(world):
    ss, shoppers = world
    store = KeyStore(ss.store.engine)
    admin, write = ({"X-API-Key": store.create(role)[0]} for role in ("admin", "write"))
    client = TestClient(create_app(ss.home.root, Settings(threads=1)))
    r = client.post("/v1/experiments", json={"name": "blocks", "arms": ["popular", "itemknn"], "split": [50, 50]},
                    headers=admin)
    assert r.status_code == 201, r.text

    with pytest.raises(ValueError, match="base_buy <= base_click"):
        simulate(client, shoppers, base_click=0.01, base_buy=0.5, headers=write)
    result = simulate(client, shoppers, k=5, base_click=0.05, base_buy=0.0, seed=1, headers=write)
    assert result.shoppers == 160 and result.visits == sum(len(s.visits) for s in shoppers)
    assert set(result.arms) == {"popular", "itemknn"}
    assert result.arms["itemknn"].hits > 2 * result.arms["popular"].hits  # what the construction promises

    report = client.get("/v1/experiments/blocks/report", headers=write).json()
    arms = {a["arm"]: a for a in report["arms"]}
    assert report["control"] == "popular" and report["primary"] == "conversion_rate"
    assert report["winner"] == "itemknn"
    assert arms["itemknn"]["conversion_rate"]["p_value"] < 0.05
    assert arms["itemknn"]["revenue_per_shopper"]["p_value"] < 0.05
    assert arms["itemknn"]["conversion_rate"]["diff"] > 0
    assert report["srm"]["mismatch"] is False
    # The report's numbers are the simulator's own: every visit one impression, every hit one
    # credited purchase at its price (no base-rate purchases here), every shopper assigned.
    for name, tally in result.arms.items():
        assert arms[name]["impressions"] == tally.visits
        assert arms[name]["revenue"] == pytest.approx(PRICE * tally.hits)
    assert sum(a["shoppers"] for a in arms.values()) == 160
    assert result.organic == sum(len(v) for s in shoppers for v in s.visits) - sum(t.hits for t in result.arms.values())

