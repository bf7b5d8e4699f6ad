"""The behaviour routes of the native API through FastAPI's test client on real homes: events
in (one or a batch, idempotent, all or nothing) and out (newest first), recommendations for
shoppers known and unknown, anonymous sessions with events and/or a photo, popular and
trending from the log, training as a background job; every bad input a problem response."""

from __future__ import annotations

import io
import json
import random
import time

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from stylesense.catalog.store import Upsert
from stylesense.engine import StyleSense
from stylesense.serving.app import PROBLEM, Settings, create_app
from stylesense.serving.keys import KeyStore

from conftest import draw_product

T0 = pd.Timestamp("2024-01-01", tz="UTC")


@pytest.fixture
def home(tmp_path):
    """12 bags and shoes (random features: no CNN), 6 shoppers with 3 purchases each, popular trained."""
    ss = StyleSense(tmp_path / "home", threads=1)
    feats = np.random.default_rng(0).standard_normal((12, 16)).astype(np.float32)
    ss.store.upsert([Upsert(f"p{i}", {"articleType": "Bags" if i % 2 else "Shoes"}, None, f"h{i}", feats[i])
                     for i in range(12)])
    ss.sync_index()
    rows = [(f"u{u}", f"p{(u + j) % 12}", "purchase", T0 + pd.Timedelta(hours=u * 3 + j)) for u in range(6) for j in range(3)]
    ss.behaviour.events.import_frame(pd.DataFrame(rows, columns=["user_id", "item_id", "type", "ts"]))
    ss.behaviour.train("popular")
    return ss


def keys(ss: StyleSense) -> dict[str, dict[str, str]]:
    store = KeyStore(ss.store.engine)
    return {role: {"X-API-Key": store.create(role)[0]} for role in ("read", "write", "admin")}


def client(ss: StyleSense, **settings) -> TestClient:
    return TestClient(create_app(ss.home.root, Settings(threads=1, **settings)))


def problem_of(r, status: int) -> str:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM and "Traceback" not in r.text
    return r.json()["detail"]


# -- events ----------------------------------------------------------------------------------
def test_events_one_or_a_batch_committed_and_a_retry_stores_nothing_twice(home):
    c, key = client(home), keys(home)
    before = home.behaviour.events.count()
    r = c.post("/v1/events", json={"user_id": "u1", "item_id": "p5", "type": "cart"}, headers=key["write"])
    assert r.status_code == 200 and r.json() == {"inserted": 1, "duplicates": 0}
    batch = [{"user_id": "new", "item_id": "p1", "type": "view", "event_id": "e1"},
             {"user_id": "new", "item_id": "p2", "type": "purchase", "ts": "2024-02-01T10:00:00Z", "price": 19.5,
              "session_id": "s1", "event_id": "e2"},
             {"user_id": "new", "item_id": "p3", "type": "rating", "ts": 1706781600, "value": 4, "event_id": "e3"}]
    assert c.post("/v1/events", json=batch, headers=key["write"]).json() == {"inserted": 3, "duplicates": 0}
    assert c.post("/v1/events", json=batch, headers=key["write"]).json() == {"inserted": 0, "duplicates": 3}
    assert home.behaviour.events.count() == before + 4  # on the database when the answer came
    stored = {e.item_id: e for e in home.behaviour.events.latest("new").events}
    assert (stored["p2"].price, stored["p2"].session_id, stored["p3"].value) == (19.5, "s1", 4.0)
    assert stored["p3"].ts == pd.Timestamp(1706781600, unit="s", tz="UTC")


def test_a_bad_batch_is_refused_whole_naming_the_event_and_why(home):
    c, key = client(home, max_batch=5), keys(home)
    before = home.behaviour.events.count()
    ok = {"user_id": "u1", "item_id": "p1"}
    cases = [
        ([ok, {**ok, "type": "glance"}], "event 1: unknown event type 'glance'"),
        ([ok, ok, {**ok, "ts": "last tuesday"}], "event 2: time 'last tuesday' is not ISO 8601"),
        ([{**ok, "ts": 1.7e12}], "event 0: time 1.7e+12 s since 1970 is beyond the dates"),
        ([{**ok, "ts": "2090-01-01"}], "is outside 1970-01-01 .. now + 1 day"),
        ([{**ok, "price": -1}], "price must be a finite number >= 0"),
        ([ok, {"user_id": "u1"}], "body.1.item_id"),  # the schema's own checks name the index too
        ([{**ok, "timestamp": 5}], "timestamp: Extra inputs are not permitted"),
        ([{**ok, "user_id": " padded"}], "body.0.user_id"),
        ([{**ok, "event_id": "x" * 256}], "body.0.event_id"),
        ([{**ok, "ts": True}], "body.0.ts"),
        ([ok] * 6, "at most 5 events per request, got 6"),
        ("not a list of events", "body"),
    ]
    for body, reason in cases:
        assert reason in problem_of(c.post("/v1/events", json=body, headers=key["write"]), 422), body
    r = c.post("/v1/events", content=b"{not json", headers={**key["write"], "Content-Type": "application/json"})
    problem_of(r, 422)
    assert home.behaviour.events.count() == before


def test_event_routes_need_the_right_key(home):
    c, key = client(home, public_reads=True), keys(home)
    event = {"user_id": "u1", "item_id": "p1"}
    assert c.post("/v1/events", json=event).status_code == 401  # writes always need a key
    assert c.post("/v1/events", json=event, headers=key["read"]).status_code == 403
    assert c.post("/v1/events", json=event, headers=key["admin"]).status_code == 200  # admin includes write
    assert c.get("/v1/users/u1/events").status_code == 200  # reads are public here
    assert client(home).get("/v1/users/u1/events").status_code == 401


def test_a_shoppers_events_newest_first_page_by_page(home):
    c, key = client(home, public_reads=True), keys(home)
    c.post("/v1/events", json=[{"user_id": "a/b", "item_id": f"p{k}", "ts": 1706781600 + k} for k in range(5)],
           headers=key["write"])
    seen, before = [], None
    while True:
        page = c.get("/v1/users/a%2Fb/events", params={"limit": 2, **({"before": before} if before else {})}).json()
        seen += [e["item_id"] for e in page["events"]]
        if not (before := page["next_before"]):
            break
    assert seen == ["p4", "p3", "p2", "p1", "p0"]
    page = c.get("/v1/users/a%2Fb/events", params={"before": "2024-02-01T10:00:02Z"}).json()
    assert [e["item_id"] for e in page["events"]] == ["p1", "p0"] and page["events"][0]["ts"] == "2024-02-01T10:00:01+00:00"
    assert c.get("/v1/users/stranger/events").json() == {"events": [], "next_before": None}
    assert "limit" in problem_of(c.get("/v1/users/u1/events", params={"limit": 0}), 422)
    assert "limit" in problem_of(c.get("/v1/users/u1/events", params={"limit": 1001}), 422)
    assert "not ISO 8601" in problem_of(c.get("/v1/users/u1/events", params={"before": "page two"}), 422)
    problem_of(c.get("/v1/users/%20u1/events"), 422)


# -- recommendations -------------------------------------------------------------------------
def test_an_unknown_shopper_gets_the_cold_start_list(home):
    c = client(home, public_reads=True)
    r = c.get("/v1/users/never-seen/recommendations", params={"k": 3})
    assert r.status_code == 200
    body = r.json()
    assert body["user_id"] == "never-seen" and body["model"] == "popular"
    assert [i["score"] for i in body["items"]] == [x.score for x in home.behaviour.popular(3)]  # ties in any order
    items = c.get("/v1/users/u1/recommendations", params={"explain": False}).json()["items"]
    assert items and all(i["reason"] is None for i in items)
    bags = c.get("/v1/users/u1/recommendations", params={"where": "articleType=Bags", "k": 12}).json()["items"]
    assert bags and all(int(i["item_id"][1:]) % 2 for i in bags)
    assert "unknown model 'nope'" in problem_of(c.get("/v1/users/u1/recommendations", params={"model": "nope"}), 422)
    assert "unknown model" in problem_of(c.get("/v1/users/u1/recommendations", params={"model": "../../etc"}), 422)
    problem_of(c.get("/v1/users/u1/recommendations", params={"k": 0}), 422)
    problem_of(c.get("/v1/users/u1/recommendations", params={"min_price": "cheap"}), 422)


def test_popular_and_trending_from_the_log_with_filters(home):
    c = client(home, public_reads=True)
    for route in ("/v1/popular", "/v1/trending"):
        items = c.get(route, params={"k": 4}).json()["items"]
        assert len(items) == 4 and items[0]["score"] >= items[-1]["score"]
        assert items[0]["reason"].startswith(route.rsplit("/", 1)[1])
        bags = c.get(route, params={"k": 12, "where": "articleType=Bags"}).json()["items"]
        assert bags and all(int(i["item_id"][1:]) % 2 for i in bags)
        assert "colour" in problem_of(c.get(route, params={"where": "colour=red"}), 422)
        problem_of(c.get(route, params={"k": 0}), 422)
        problem_of(c.get(route, params={"where": "no-equals-sign"}), 422)
    home.set_hidden(["p3"])
    assert "p3" not in {i["item_id"] for i in c.get("/v1/popular", params={"k": 12}).json()["items"]}


def test_sessions_by_their_events(home):
    home.behaviour.train("itemknn")
    c = client(home, public_reads=True)
    session = {"events": [{"item_id": "p1", "type": "view"}, {"item_id": "p2", "type": "purchase"}], "k": 3}
    r = c.post("/v1/sessions/recommend", json=session)
    assert r.status_code == 200
    body = r.json()
    assert body["model"] == "itemknn" and len(body["items"]) == 3
    assert not {"p1", "p2"} & {i["item_id"] for i in body["items"]}  # the session's own items are hidden
    assert {i["item_id"] for i in c.post("/v1/sessions/recommend", json={**session, "model": "popular"}).json()["items"]}
    explained = c.post("/v1/sessions/recommend", json={**session, "explain": False}).json()["items"]
    assert all(i["reason"] is None for i in explained)
    shoes = c.post("/v1/sessions/recommend", json={**session, "k": 12, "where": {"articleType": "Shoes"}}).json()
    assert shoes["items"] and all(int(i["item_id"][1:]) % 2 == 0 for i in shoes["items"])
    assert home.behaviour.events.latest("anyone").events == []  # nothing was stored
    for body, reason in [({"events": []}, "needs its events, a photo, or both"),
                         ({"events": [{"item_id": "p1", "type": "glance"}]}, "event 0: unknown event type 'glance'"),
                         ({"events": [{"item_id": "p1"}], "model": "nope"}, "unknown model 'nope'"),
                         ({"events": [{"item_id": "p1"}], "user": "x"}, "user: Extra inputs"),
                         ({"events": [{"item_id": ""}]}, "body.events.0.item_id"),
                         ({"events": [{"item_id": "p1"}] * 1001}, "body.events"),
                         ({"events": [{"item_id": "p1"}], "k": 0}, "body.k")]:
        assert reason in problem_of(c.post("/v1/sessions/recommend", json=body), 422), body
    r = c.post("/v1/sessions/recommend", content=b"p1,p2", headers={"Content-Type": "text/csv"})
    assert "send application/json or multipart/form-data" in problem_of(r, 415)
    problem_of(c.post("/v1/sessions/recommend", content=b"[", headers={"Content-Type": "application/json"}), 422)
    assert "no trained 'ease' model" in problem_of(c.post("/v1/sessions/recommend", json={**session, "model": "ease"}), 409)


# -- training --------------------------------------------------------------------------------
def test_training_runs_as_a_job_while_recommendations_keep_answering(home):
    c, key = client(home), keys(home)
    slow = {"params": {"epochs": 5000, "factors": 4, "threads": 1}}  # a couple of seconds
    r = c.post("/v1/models/bpr/train", json=slow, headers=key["admin"])
    assert r.status_code == 202 and r.headers["Location"] == f"/v1/jobs/{r.json()['job_id']}"
    assert r.json()["params"] == {"model": "bpr", "params": slow["params"]}
    answered_while_running, state = 0, r.json()["state"]
    deadline = time.monotonic() + 120
    while state in ("queued", "running") and time.monotonic() < deadline:
        recs = c.get("/v1/users/u1/recommendations", headers=key["read"])
        assert recs.status_code == 200 and recs.json()["items"]
        state = c.get(r.headers["Location"], headers=key["read"]).json()["state"]
        answered_while_running += state == "running"
    job = c.get(r.headers["Location"], headers=key["read"]).json()
    assert job["state"] == "done" and job["result"]["model"] == "bpr" and job["error"] is None
    assert answered_while_running >= 1
    after = c.get("/v1/users/u1/recommendations", headers=key["read"]).json()
    assert after["model"] == "bpr" and after["items"]  # swapped in, and the default now


def test_training_is_refused_before_it_starts(home):
    c, key = client(home), keys(home)
    for name, body, reason in [("nope", None, "unknown model 'nope'"),
                               ("als", {"params": {"factorz": 8}}, "unknown parameter(s) factorz"),
                               ("als", {"params": {"factors": "lots"}}, "als: parameter factors"),
                               ("trending", {"params": {"half_life_days": -1}}, "half_life_days must be a positive"),
                               ("als", {"parameters": {}}, "parameters: Extra inputs"),
                               ("als", {"params": [1, 2]}, "body.params")]:
        assert reason in problem_of(c.post(f"/v1/models/{name}/train", json=body, headers=key["admin"]), 422), name
    assert "role (write) may not admin" in problem_of(c.post("/v1/models/als/train", headers=key["write"]), 403)
    assert problem_of(c.post("/v1/models/als/train"), 401)
    assert "no job" in problem_of(c.get("/v1/jobs/" + "0" * 32, headers=key["read"]), 404)
    assert "no job" in problem_of(c.get("/v1/jobs/nope", headers=key["read"]), 404)
    empty = StyleSense(home.home.root.parent / "empty")
    assert "no events yet" in problem_of(client(empty).post("/v1/models/popular/train", headers=keys(empty)["admin"]), 409)


# -- sessions with a photo (the real CNN) ------------------------------------------------------
@pytest.fixture(scope="module")
def shop(tmp_path_factory, model_cache, catalog_dir):
    """The drawn catalogue (ids 1-6 T-shirts, 7-12 shoes, 13-18 bags, 19-24 dresses), embedded,
    with shoppers who each stay in one class, and an item-kNN model."""
    root = tmp_path_factory.mktemp("photoshop") / "home"
    root.mkdir()
    (root / "models").symlink_to(model_cache, target_is_directory=True)
    ss = StyleSense(root, threads=1)
    assert ss.import_catalog(catalog_dir / "styles.csv", "images/{id}.jpg").ok
    rows = [(f"{c}-{u}", str(c * 6 + 1 + (u + j) % 6), "purchase", T0 + pd.Timedelta(hours=u * 4 + j))
            for c in range(4) for u in range(5) for j in range(3)]
    ss.behaviour.events.import_frame(pd.DataFrame(rows, columns=["user_id", "item_id", "type", "ts"]))
    ss.behaviour.train("itemknn")
    return ss


def _png(kind: str) -> bytes:
    out = io.BytesIO()
    draw_product(kind, random.Random(99)).save(out, "PNG")
    return out.getvalue()


def test_sessions_with_a_photo(shop):
    c = client(shop, public_reads=True)
    kinds = {it.item_id: it.attrs["articleType"] for it in shop.items()}
    r = c.post("/v1/sessions/recommend", files={"photo": ("bag.png", _png("Bags"), "image/png")}, data={"k": "5"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] is None  # a photo alone needs no model
    assert sum(kinds[i["item_id"]] == "Bags" for i in body["items"]) >= 4
    assert all(i["reason"] == "looks like your photo" for i in body["items"])
    # Shoes bought, a bag photographed: both tastes come back, the bags because of the photo.
    events = json.dumps([{"item_id": "7", "type": "purchase"}, {"item_id": "8", "type": "purchase"}])
    mixed = c.post("/v1/sessions/recommend", files={"photo": ("bag.png", _png("Bags"), "image/png")},
                   data={"events": events, "k": "8"}).json()
    assert mixed["model"] == "itemknn"
    got = {kinds[i["item_id"]] for i in mixed["items"]}
    assert {"Shoes", "Bags"} <= got
    assert all(i["reason"] == "looks like your photo" for i in mixed["items"] if kinds[i["item_id"]] == "Bags")
    dresses = c.post("/v1/sessions/recommend", files={"photo": ("bag.png", _png("Bags"), "image/png")},
                     data={"where": "articleType=Dresses", "k": "3"}).json()["items"]
    assert [kinds[i["item_id"]] for i in dresses] == ["Dresses"] * 3

    def post(files, data=None):
        return c.post("/v1/sessions/recommend", files=files, data=data or {})

    assert "image" in problem_of(post({"photo": ("x.png", b"%PDF-1.4 not a photo", "image/png")}), 415).lower()
    problem_of(post({"photo": ("x.png", _png("Bags")[:200], "image/png")}), 422)  # truncated
    assert "events: not valid JSON" in problem_of(post({"photo": ("b.png", _png("Bags"), "image/png")},
                                                       {"events": "[{"}), 422)
    assert "colour: unknown field" in problem_of(post({"photo": ("b.png", _png("Bags"), "image/png")},
                                                      {"colour": "red"}), 422)
    assert "photo: a photo file is needed" in problem_of(post({"photo": (None, "not a file")}), 422)
    assert "needs its events, a photo, or both" in problem_of(post({"k": (None, "3")}), 422)
    by_events = post({"events": (None, events), "k": (None, "3")}).json()  # multipart without a photo
    assert by_events["model"] == "itemknn" and {kinds[i["item_id"]] for i in by_events["items"]} == {"Shoes"}
