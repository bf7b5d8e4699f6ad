"""Experiments through the REST API (FastAPI's TestClient on a real home): recommendations
carry the experiment, arm and impression id while one runs (null fields otherwise), events
take the impression id back and are credited by it, experiments are created and stopped with
an admin key, reports and the online feedback rate are reads, and /metrics exports the rate."""

from __future__ import annotations

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from stylesense.engine import StyleSense
from stylesense.experiments.assign import choose_arm
from stylesense.serving.app import PROBLEM, Settings, create_app
from stylesense.serving.keys import KeyStore

T0 = pd.Timestamp("2024-01-01", tz="UTC")


@pytest.fixture
def home(tmp_path):
    """12 products, 8 shoppers with 3 purchases each; popular and itemknn trained."""
    ss = StyleSense(tmp_path / "home", threads=1)
    rows = [(f"u{u}", f"p{(u + j) % 12}", "purchase", T0 + pd.Timedelta(hours=u * 3 + j)) for u in range(8) for j in range(3)]
    ss.behaviour.events.import_frame(pd.DataFrame(rows, columns=["user_id", "item_id", "type", "ts"]))
    ss.behaviour.train("itemknn", {"threads": 1})
    ss.behaviour.train("popular")
    return ss


def keys(ss: StyleSense) -> dict[str, dict[str, str]]:
    store = KeyStore(ss.store.engine)
    return {role: {"X-API-Key": store.create(role)[0]} for role in ("read", "write", "admin")}


def client(ss: StyleSense) -> TestClient:
    return TestClient(create_app(ss.home.root, Settings(threads=1)))


def test_recommendations_carry_arm_and_impression_id_only_inside_an_experiment(home):
    c, key = client(home), keys(home)
    plain = c.get("/v1/users/u1/recommendations", params={"k": 3}, headers=key["read"]).json()
    assert plain["model"] == "popular" and len(plain["items"]) == 3
    assert (plain["experiment"], plain["arm"], plain["impression_id"]) == (None, None, None)

    r = c.post("/v1/experiments", json={"name": "ab1", "arms": ["popular", "itemknn"], "split": [50, 50],
                                        "metric": "click", "window_hours": 2}, headers=key["admin"])
    assert r.status_code == 201 and r.headers["location"] == "/v1/experiments/ab1/report"
    assert r.json()["split"] == [0.5, 0.5] and r.json()["status"] == "running" and r.json()["metric"] == "click"

    arms = {}
    for u in range(8):
        body = c.get(f"/v1/users/u{u}/recommendations", params={"k": 3}, headers=key["read"]).json()
        assert body["experiment"] == "ab1" and body["arm"] == body["model"]
        assert body["arm"] == choose_arm("ab1", f"u{u}", ("popular", "itemknn"), (0.5, 0.5))
        assert [i["item_id"] for i in body["items"]] == [
            r.item_id for r in home.behaviour.recommend(f"u{u}", 3, model=body["arm"])]
        assert len(body["impression_id"]) == 32
        arms[f"u{u}"] = body
    assert {b["arm"] for b in arms.values()} == {"popular", "itemknn"}
    named = c.get("/v1/users/u1/recommendations", params={"model": "itemknn"}, headers=key["read"]).json()
    assert (named["model"], named["arm"], named["impression_id"]) == ("itemknn", None, None)
    no_reasons = c.get("/v1/users/u1/recommendations", params={"explain": "false"}, headers=key["read"]).json()
    assert all(i["reason"] is None for i in no_reasons["items"]) and no_reasons["impression_id"]

    # Every shopper clicks the first product shown, naming the impression; u0 also buys one.
    events = [{"user_id": u, "item_id": b["items"][0]["item_id"], "type": "click", "impression_id": b["impression_id"]}
              for u, b in arms.items()]
    events.append({"user_id": "u0", "item_id": arms["u0"]["items"][1]["item_id"], "type": "purchase", "price": 30.0,
                   "impression_id": arms["u0"]["impression_id"]})
    assert c.post("/v1/events", json=events, headers=key["write"]).json() == {"inserted": 9, "duplicates": 0}
    stored = home.behaviour.events.latest("u0").events
    assert {e.impression_id for e in stored if e.impression_id} == {arms["u0"]["impression_id"]}
    bad = c.post("/v1/events", json={"user_id": "u0", "item_id": "p1", "impression_id": " x"}, headers=key["write"])
    assert bad.status_code == 422

    report = c.get("/v1/experiments/ab1/report", headers=key["read"]).json()
    by_arm = {a["arm"]: a for a in report["arms"]}
    shoppers = {arm: sum(b["arm"] == arm for b in arms.values()) for arm in by_arm}
    u1_arm = arms["u1"]["arm"]
    for arm, a in by_arm.items():
        assert a["shoppers"] == shoppers[arm]
        assert a["impressions"] == shoppers[arm] + (1 if arm == u1_arm else 0)  # u1's unexplained second answer
        assert a["clicks"] == shoppers[arm]
    assert by_arm[arms["u0"]["arm"]]["revenue"] == 30.0
    assert report["primary"] == "ctr" and report["experiment"]["window_hours"] == 2

    online = c.get("/v1/online-evaluation", headers=key["read"]).json()
    assert {m["model"]: m["positive"] for m in online["models"]} == shoppers
    metrics = c.get("/metrics").text
    for arm, a in by_arm.items():
        assert f'stylesense_online_impressions{{model="{arm}"}} {float(a["impressions"])}' in metrics
        assert f'stylesense_online_positive_feedback_rate{{model="{arm}"}}' in metrics

    assert c.post("/v1/experiments/ab1/stop", headers=key["admin"]).json()["status"] == "stopped"
    after = c.get("/v1/users/u1/recommendations", headers=key["read"]).json()
    assert (after["arm"], after["impression_id"]) == (None, None)
    listed = c.get("/v1/experiments", headers=key["read"]).json()["experiments"]
    assert [(e["name"], e["status"]) for e in listed] == [("ab1", "stopped")]


def test_experiment_routes_check_keys_and_input(home):
    c, key = client(home), keys(home)
    body = {"name": "ab", "arms": ["popular", "itemknn"]}
    assert c.post("/v1/experiments", json=body).status_code == 401
    assert c.post("/v1/experiments", json=body, headers=key["write"]).status_code == 403
    assert c.get("/v1/experiments/ab/report", headers=key["read"]).status_code == 404
    for bad, where in [({**body, "arms": ["popular"]}, "arms"), ({**body, "name": "a b"}, "name"),
                       ({**body, "window_hours": 0}, "window_hours"), ({**body, "extra": 1}, "extra")]:
        r = c.post("/v1/experiments", json=bad, headers=key["admin"])
        assert r.status_code == 422 and r.headers["content-type"] == PROBLEM and where in r.text
    r = c.post("/v1/experiments", json={**body, "metric": "likes"}, headers=key["admin"])
    assert r.status_code == 422 and "unknown metric" in r.json()["detail"]
    r = c.post("/v1/experiments", json={**body, "arms": ["popular", "ease"]}, headers=key["admin"])
    assert r.status_code == 409 and "no trained model" in r.json()["detail"]
    assert c.post("/v1/experiments", json=body, headers=key["admin"]).status_code == 201
    r = c.post("/v1/experiments", json={**body, "name": "other"}, headers=key["admin"])
    assert r.status_code == 409 and "'ab' is running" in r.json()["detail"]
    assert c.post("/v1/experiments/ab/stop", headers=key["write"]).status_code == 403
    assert c.post("/v1/experiments/nope/stop", headers=key["admin"]).status_code == 404
    assert c.get("/v1/online-evaluation", params={"window_hours": 0}, headers=key["read"]).status_code == 422
