"""The Gorse-compatible API under /api: every route through FastAPI's test client on a real
home (Gorse's JSON shapes, keys and roles, bad input as problems, never a 500), then the
pygorse client from PyPI, unchanged, against a real uvicorn server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator

import gorse
import httpx
import numpy as np
import pytest
import uvicorn
from fastapi.testclient import TestClient

from stylesense.catalog.store import Upsert
from stylesense.engine import StyleSense
from stylesense.gorse import parse_time
from stylesense.serving.app import PROBLEM, Settings, create_app
from stylesense.serving.keys import KeyStore


@pytest.fixture
def home(tmp_path) -> StyleSense:
    """Two photographed catalogue items (p0, p1), as a CSV import leaves them; no events."""
    ss = StyleSense(tmp_path / "home", threads=1)
    feats = np.random.default_rng(0).standard_normal((2, 16)).astype(np.float32)
    ss.store.upsert([Upsert(f"p{i}", {"articleType": "Bags"}, None, f"h{i}", feats[i]) for i in range(2)])
    ss.sync_index()
    return ss


@pytest.fixture
def keys(home) -> dict[str, dict[str, str]]:
    store = KeyStore(home.store.engine)
    return {role: {"X-API-Key": store.create(role)[0]} for role in ("read", "write")}


def client(ss: StyleSense, **settings) -> TestClient:
    return TestClient(create_app(ss.home.root, Settings(threads=1, **settings)))


ITEMS = [{"ItemId": f"g{i}", "Categories": ["Shoes" if i % 2 else "Bags"], "Timestamp": f"2024-01-0{i + 1}",
          "Labels": {"brand": "acme"}, "Comment": f"item {i}"} for i in range(6)]
# Every shopper stars g1 and g3; u0 and u2 read g4, u1 and u3 read g2.
FEEDBACK = [{"FeedbackType": "star" if j < 2 else "read", "UserId": f"u{u}", "ItemId": item,
             "Timestamp": f"2024-02-01T0{u}:0{j}:00Z"}
            for u in range(4) for j, item in enumerate(["g1", "g3", "g2" if u % 2 else "g4"])]


def filled(ss: StyleSense, keys) -> TestClient:
    c = client(ss)
    assert c.post("/api/items", json=ITEMS, headers=keys["write"]).json() == {"RowAffected": 6}
    assert c.post("/api/feedback", json=FEEDBACK, headers=keys["write"]).json() == {"RowAffected": 12}
    return c


def problem(r, status: int, *words: str) -> None:
    """``r`` is a problem response of ``status`` whose detail says ``words``."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM and "Traceback" not in r.text
    assert all(w in r.json()["detail"] for w in words), r.json()["detail"]


def test_keys_and_roles(home, keys):
    c = client(home)
    problem(c.get("/api/items"), 401, "API key")
    assert c.get("/api/items", headers=keys["read"]).status_code == 200
    problem(c.post("/api/item", json={"ItemId": "g1"}, headers=keys["read"]), 403, "read")
    assert c.post("/api/item", json={"ItemId": "g1"}, headers=keys["write"]).status_code == 200
    problem(c.get("/api/recommend/u1", params={"write-back-type": "read"}, headers=keys["read"]), 403)
    assert c.get("/api/recommend/u1", params={"write-back-type": "read"}, headers=keys["write"]).status_code == 200
    public = client(home, public_reads=True)
    assert public.get("/api/items", headers={"X-API-Key": ""}).status_code == 200  # an empty key is none
    problem(public.post("/api/item", json={"ItemId": "g2"}, headers={"X-API-Key": ""}), 401)


def test_users(home, keys):
    c, w, r = client(home), keys["write"], keys["read"]
    assert c.post("/api/user", json={"UserId": "u1", "Labels": {"age": 30}, "Comment": "hi"}, headers=w).json() == {
        "RowAffected": 1}
    assert c.get("/api/user/u1", headers=r).json() == {"UserId": "u1", "Labels": {"age": 30}, "Comment": "hi",
                                                        "Subscribe": []}
    assert c.patch("/api/user/u1", json={"Comment": "patched"}, headers=w).json() == {"RowAffected": 1}
    assert c.get("/api/user/u1", headers=r).json()["Labels"] == {"age": 30}
    assert c.post("/api/users", json=[{"UserId": f"v{i}", "Subscribe": ["Shoes"]} for i in range(3)],
                  headers=w).json() == {"RowAffected": 3}
    first = c.get("/api/users", params={"n": 3}, headers=r).json()
    rest = c.get("/api/users", params={"n": 3, "cursor": first["Cursor"]}, headers=r).json()
    assert [u["UserId"] for u in first["Users"] + rest["Users"]] == ["u1", "v0", "v1", "v2"] and rest["Cursor"] == ""
    assert c.delete("/api/user/v0", headers=w).json() == {"RowAffected": 1}
    assert c.delete("/api/user/v0", headers=w).json() == {"RowAffected": 0}

    problem(c.get("/api/user/v0", headers=r), 404, "user v0 not found")
    problem(c.patch("/api/user/v0", json={"Comment": "x"}, headers=w), 404)
    problem(c.post("/api/user", json={"UserId": "u2", "Labels": ["a", 1]}, headers=w), 422, "only strings")
    problem(c.post("/api/user", json={"Labels": ["a"]}, headers=w), 422, "UserId")
    problem(c.post("/api/user", json={"UserId": " u2"}, headers=w), 422, "UserId")
    problem(c.post("/api/user", json={"UserId": "u2", "Subscribe": "Shoes"}, headers=w), 422, "Subscribe")
    problem(c.post("/api/users", json={"UserId": "u2"}, headers=w), 422)
    problem(c.get("/api/users", params={"cursor": "%%%"}, headers=r), 422, "cursor")
    problem(c.get("/api/users", params={"n": 0}, headers=r), 422, "n")
    problem(client(home, max_batch=2).post("/api/users", json=[{"UserId": f"x{i}"} for i in range(3)], headers=w),
            413, "most is 2")
    assert c.get("/api/user/u2", headers=r).status_code == 404  # nothing of a refused write was stored


def test_items(home, keys):
    c, w, r = client(home), keys["write"], keys["read"]
    assert c.post("/api/item", json=ITEMS[1], headers=w).json() == {"RowAffected": 1}
    assert c.get("/api/item/g1", headers=r).json() == {
        "ItemId": "g1", "IsHidden": False, "Categories": ["Shoes"], "Timestamp": "2024-01-02T00:00:00Z",
        "Labels": {"brand": "acme"}, "Comment": "item 1"}
    assert c.post("/api/items", json=ITEMS, headers=w).json() == {"RowAffected": 6}
    page = c.get("/api/items", params={"n": 5}, headers=r).json()
    rest = c.get("/api/items", params={"n": 5, "cursor": page["Cursor"]}, headers=r).json()
    assert [i["ItemId"] for i in page["Items"] + rest["Items"]] == ["p0", "p1", "g1", "g0", "g2", "g3", "g4", "g5"]
    assert rest["Cursor"] == "" and page["Items"][0]["Categories"] == [] and page["Items"][0]["Labels"] is None

    assert c.patch("/api/item/g1", json={"IsHidden": True, "Comment": "gone"}, headers=w).json() == {"RowAffected": 1}
    assert c.get("/api/item/g1", headers=r).json() | {"Labels": None} == {
        "ItemId": "g1", "IsHidden": True, "Categories": ["Shoes"], "Timestamp": "2024-01-02T00:00:00Z",
        "Labels": None, "Comment": "gone"}
    assert c.put("/api/item/g1/category/Sale", headers=w).json() == {"RowAffected": 1}
    assert c.delete("/api/item/g1/category/Shoes", headers=w).json() == {"RowAffected": 1}
    assert c.get("/api/item/g1", headers=r).json()["Categories"] == ["Sale"]
    assert c.post("/api/item", json={"ItemId": "p0", "Categories": ["Bags"]}, headers=w).status_code == 200
    assert home.item("p0").attrs["articleType"] == "Bags" and home.search(item="p1")[0].item_id == "p0"  # photo kept
    assert c.delete("/api/item/g1", headers=w).json() == {"RowAffected": 1}
    assert c.delete("/api/item/g1", headers=w).json() == {"RowAffected": 0}

    problem(c.get("/api/item/g1", headers=r), 404, "item g1 not found")
    problem(c.patch("/api/item/g1", json={"Comment": "x"}, headers=w), 404)
    problem(c.put("/api/item/g1/category/Sale", headers=w), 404)
    problem(c.post("/api/item", json={"ItemId": "g9", "Categories": "Shoes"}, headers=w), 422, "Categories")
    problem(c.post("/api/item", json={"ItemId": "g9", "Categories": [""]}, headers=w), 422, "categories")
    problem(c.post("/api/item", json={"ItemId": "g9", "Timestamp": "last week"}, headers=w), 422, "ISO 8601")
    problem(c.post("/api/item", json={"ItemId": "g9", "Labels": [True]}, headers=w), 422, "labels")
    problem(c.post("/api/item", json={"ItemId": "x" * 256}, headers=w), 422, "ItemId")
    problem(c.post("/api/items", json=[{"ItemId": "g9"}, {"ItemId": "g10", "Labels": {"a": [{}]}}], headers=w),
            422, "g10")
    problem(c.get("/api/items", params={"q": "red shoes"}, headers=r), 422, "not supported")
    problem(c.get("/api/items", params={"cursor": "bm9wZQ"}, headers=r), 422, "cursor")
    assert c.get("/api/item/g9", headers=r).status_code == 404


def test_feedback(home, keys):
    c, w, r = filled(home, keys), keys["write"], keys["read"]
    assert c.post("/api/feedback", json=FEEDBACK, headers=w).json() == {"RowAffected": 12}  # a retry
    assert home.behaviour.events.count() == 12
    seen, cursor = [], ""
    for _ in range(5):
        page = c.get("/api/feedback", params={"n": 5, "cursor": cursor}, headers=r).json()
        seen += page["Feedback"]
        if not (cursor := page["Cursor"]):
            break
    assert len(seen) == 12 and seen[0] == {
        "FeedbackType": "like", "UserId": "u0", "ItemId": "g1", "Value": 0.0, "Timestamp": "2024-02-01T00:00:00Z",
        "Updated": "2024-02-01T00:00:00Z", "Labels": None, "Comment": ""}
    stars = c.get("/api/feedback/star", params={"n": 100}, headers=r).json()
    assert len(stars["Feedback"]) == 8 and {f["FeedbackType"] for f in stars["Feedback"]} == {"star"}
    assert [f["ItemId"] for f in c.get("/api/user/u1/feedback", headers=r).json()] == ["g1", "g3", "g2"]
    assert [f["ItemId"] for f in c.get("/api/user/u1/feedback/read", headers=r).json()] == ["g2"]
    assert [f["UserId"] for f in c.get("/api/item/g2/feedback", headers=r).json()] == ["u1", "u3"]
    assert c.get("/api/item/g2/feedback/star", headers=r).json() == []
    assert [f["FeedbackType"] for f in c.get("/api/feedback/u1/g1", headers=r).json()] == ["like"]
    assert c.get("/api/feedback/star/u1/g1", headers=r).json()["ItemId"] == "g1"
    assert c.get("/api/feedback/read/u1/g1", headers=r).json() == {}  # Gorse's answer for none
    assert c.delete("/api/feedback/star/u1/g1", headers=w).json() == {"RowAffected": 1}
    assert c.delete("/api/feedback/u1/g3", headers=w).json() == {"RowAffected": 1}
    assert c.delete("/api/feedback/u1/g3", headers=w).json() == {"RowAffected": 0}
    assert home.behaviour.events.count() == 10

    one = {"FeedbackType": "star", "UserId": "u9", "ItemId": "g1"}
    problem(c.post("/api/feedback", json=[one, {**one, "FeedbackType": "stars"}], headers=w), 422,
            "unknown feedback type 'stars'", "gorse_feedback_types")
    problem(c.post("/api/feedback", json=one, headers=w), 422)  # Gorse takes a list
    problem(c.post("/api/feedback", json=[{**one, "Value": "lots"}], headers=w), 422, "Value")
    problem(c.post("/api/feedback", json=[{**one, "Timestamp": "2999-01-01"}], headers=w), 422, "time")
    problem(c.post("/api/feedback", content=b'[{"FeedbackType": "star", "UserId": "u9", "ItemId": "g1", "Value": NaN}]',
                   headers={**w, "Content-Type": "application/json"}), 422, "finite")
    problem(c.post("/api/feedback", content=b"[{", headers={**w, "Content-Type": "application/json"}), 422)
    problem(client(home, max_batch=2).post("/api/feedback", json=[one] * 3, headers=w), 413)
    problem(c.get("/api/feedback/stars", headers=r), 422, "unknown feedback type")
    problem(c.delete("/api/feedback/stars/u1/g1", headers=w), 422)
    problem(c.get("/api/feedback", params={"cursor": "eA=="}, headers=r), 422, "cursor")
    assert home.behaviour.events.count() == 10 and c.get("/api/user/u9", headers=r).status_code == 404


def test_feedback_types_follow_the_homes_mapping(home, keys):
    from stylesense.gorse import Gorse

    c, w = client(home), keys["write"]
    problem(c.post("/api/feedback", json=[{"FeedbackType": "buy", "UserId": "u", "ItemId": "g"}], headers=w), 422)
    Gorse(home).set_feedback_types({"buy": "purchase"})
    assert c.post("/api/feedback", json=[{"FeedbackType": "buy", "UserId": "u", "ItemId": "g"}], headers=w).status_code == 200
    assert home.behaviour.events.events()[0].type == "purchase"


def test_overwriting_feedback_and_its_comment_and_labels(home, keys):
    c, w, r = filled(home, keys), keys["write"], keys["read"]
    put = {"FeedbackType": "star", "UserId": "u1", "ItemId": "g1", "Timestamp": "2024-03-01T00:00:00Z", "Value": 4,
           "Comment": "fits well", "Labels": ["size-40"]}
    assert c.put("/api/feedback", json=[put], headers=w).json() == {"RowAffected": 1}
    assert c.get("/api/feedback/star/u1/g1", headers=r).json() == {
        **put, "Value": 4.0, "Updated": "2024-03-01T00:00:00Z"}
    assert home.behaviour.events.count() == 12  # in place of u1's star on g1, not beside it
    assert c.put("/api/feedback", json=[{**put, "Value": 5, "Comment": ""}], headers=w).status_code == 200
    assert c.get("/api/feedback/star/u1/g1", headers=r).json()["Comment"] == ""
    assert [f["Value"] for f in c.get("/api/user/u1/feedback/star", headers=r).json()] == [0.0, 5.0]  # g3's, g1's

    posted = {**put, "UserId": "u7", "Comment": "gift", "Labels": {"channel": "app"}}
    assert c.post("/api/feedback", json=[posted], headers=w).json() == {"RowAffected": 1}
    assert c.get("/api/user/u7/feedback", headers=r).json()[0] | {"FeedbackType": "star"} == {
        **posted, "Value": 4.0, "Updated": "2024-03-01T00:00:00Z"}

    problem(c.put("/api/feedback", json=[put], headers=r), 403)
    problem(c.put("/api/feedback", json=[{**put, "Comment": "x" * 5000}], headers=w), 422, "Comment")
    problem(c.put("/api/feedback", json=[{**put, "Value": 1}, {**put, "UserId": "u2", "Labels": [True]}], headers=w),
            422, "labels")
    problem(c.put("/api/feedback", json=[{**put, "FeedbackType": "stars"}], headers=w), 422, "unknown feedback type")
    assert c.get("/api/feedback/star/u1/g1", headers=r).json()["Value"] == 5.0  # a refused overwrite changed nothing
    assert home.behaviour.events.count() == 13


def test_popular_latest_several_categories_and_user_neighbours(home, keys):
    c, w, r = filled(home, keys), keys["write"], keys["read"]
    assert c.get("/api/popular", params={"n": 2}, headers=r).json() == [{"Id": "g1", "Score": 4.0},
                                                                       {"Id": "g3", "Score": 4.0}]
    assert c.get("/api/popular/", params={"n": 2}, headers=r).json() == c.get("/api/popular", params={"n": 2},
                                                                              headers=r).json()
    assert {s["Id"] for s in c.get("/api/popular/Bags", headers=r).json()} == {"g2", "g4"}
    assert [s["Id"] for s in c.get("/api/popular", params={"user-id": "u1"}, headers=r).json()] == ["g4"]
    detailed = c.get("/api/popular", params={"n": 1, "more-details": "true"}, headers=r).json()
    assert detailed == [{**c.get("/api/item/g1", headers=r).json(), "Score": 4.0}]

    latest = c.get("/api/latest", params={"n": 3}, headers=r).json()
    assert latest == [{"Id": f"g{i}", "Score": float(parse_time(f"2024-01-0{i + 1}").timestamp())} for i in (5, 4, 3)]
    assert [s["Id"] for s in c.get("/api/latest/Shoes", params={"n": 2, "offset": 1}, headers=r).json()] == ["g3", "g1"]
    assert [s["Id"] for s in c.get("/api/latest/", params={"user-id": "u0"}, headers=r).json()] == ["g5", "g2", "g0"]

    assert c.put("/api/item/g1/category/Sale", headers=w).status_code == 200
    assert c.put("/api/item/g4/category/Sale", headers=w).status_code == 200
    both = {"category": ["Shoes", "Sale"]}  # Gorse 0.5: every category given
    assert [s["Id"] for s in c.get("/api/latest", params=both, headers=r).json()] == ["g1"]
    assert [s["Id"] for s in c.get("/api/popular", params=both, headers=r).json()] == ["g1"]
    assert c.get("/api/recommend/new", params=both, headers=r).json() == ["g1"]
    assert c.get("/api/recommend/new", params={"category": ["Sale", ""]}, headers=r).json() == ["g1", "g4"]
    assert c.get("/api/recommend/new/Sale", params={"category": "Shoes"}, headers=r).json() == ["g1", "g4"]  # path's

    problem(c.get("/api/user/u0/neighbors", headers=r), 409, "no model")
    home.behaviour.train("itemknn")
    near = c.get("/api/user/u0/neighbors", headers=r).json()
    assert [u["Id"] for u in near] == ["u2", "u1", "u3"] and near[0]["Score"] == 1.0 and set(near[0]) == {"Id", "Score"}
    assert c.get("/api/user/u0/neighbors/", params={"n": 1, "offset": 1}, headers=r).json() == [near[1]]
    assert [s["Id"] for s in c.post("/api/session/recommend/", params={"category": both["category"]},
                                    json=[{"FeedbackType": "star", "ItemId": "g3"}], headers=r).json()] == ["g1"]
    problem(c.get("/api/user/nobody/neighbors", headers=r), 404, "user nobody not found")
    problem(c.get("/api/popular", params={"n": 0}, headers=r), 422, "n")
    problem(c.get("/api/latest", params={"user-id": " u1"}, headers=r), 422, "whitespace")
    problem(c.get("/api/latest", params={"category": [f"c{i}" for i in range(33)]}, headers=r), 422, "category")
    problem(c.get("/api/popular"), 401)


def test_recommend(home, keys):
    c, w, r = filled(home, keys), keys["write"], keys["read"]
    assert c.get("/api/recommend/new", headers=r).json()[:2] == ["g1", "g3"]  # no model: the popular items
    scored = c.get("/api/recommend/new/", params={"n": 2}, headers={**r, "X-API-Version": "2"}).json()
    assert [s["Id"] for s in scored] == ["g1", "g3"] and scored[0]["Score"] > 0
    assert c.get("/api/recommend/new", params={"n": 1, "offset": 1}, headers=r).json() == ["g3"]
    assert set(c.get("/api/recommend/new/Bags", headers=r).json()) <= {"g0", "g2", "g4"}
    assert set(c.get("/api/recommend/new", params={"category": "Bags"}, headers=r).json()) <= {"g0", "g2", "g4"}
    assert "g1" not in c.get("/api/recommend/u0", headers=r).json()
    home.behaviour.train("itemknn")
    shoes = c.get("/api/recommend/u0/Shoes", headers=r).json()
    assert shoes and set(shoes) <= {"g5"}  # u0 has g1 and g3 already
    before = home.behaviour.events.count()
    written = c.get("/api/recommend/u0", params={"n": 2, "write-back-type": "read", "write-back-delay": "10m"},
                    headers=w).json()
    assert home.behaviour.events.count() == before + len(written)

    problem(c.get("/api/recommend/u0", params={"n": 0}, headers=r), 422, "n")
    problem(c.get("/api/recommend/u0", params={"offset": -1}, headers=r), 422, "offset")
    problem(c.get("/api/recommend/u0", params={"write-back-type": "read", "write-back-delay": "soon"}, headers=w),
            422, "Go duration")
    problem(c.get("/api/recommend/u0", params={"write-back-type": "seen"}, headers=w), 422, "unknown feedback type")
    problem(c.get("/api/recommend/%20u0", headers=r), 422, "whitespace")


def test_neighbors_and_sessions(home, keys):
    c, r = filled(home, keys), keys["read"]
    session = [{"FeedbackType": "star", "UserId": "", "ItemId": "g1", "Timestamp": "2024-03-01"}]
    problem(c.get("/api/item/g1/neighbors", headers=r), 409, "no model")
    problem(c.post("/api/session/recommend", json=session, headers=r), 409, "no model")
    home.behaviour.train("itemknn")
    near = c.get("/api/item/g1/neighbors", params={"n": 2}, headers=r).json()
    assert near[0]["Id"] == "g3" and set(near[0]) == {"Id", "Score"}
    assert c.get("/api/item/g1/neighbors/", headers=r).json() == c.get("/api/item/g1/neighbors", headers=r).json()
    assert {n["Id"] for n in c.get("/api/item/g1/neighbors/Bags", headers=r).json()} <= {"g0", "g2", "g4"}
    assert c.get("/api/item/p0/neighbors", headers=r).json() == []  # nobody interacted with it yet
    problem(c.get("/api/item/nope/neighbors", headers=r), 404, "item nope not found")
    recs = c.post("/api/session/recommend", params={"n": 3}, json=session, headers=r).json()
    assert recs[0]["Id"] == "g3" and "g1" not in [x["Id"] for x in recs]
    assert {x["Id"] for x in c.post("/api/session/recommend/Bags", json=session, headers=r).json()} <= {"g0", "g2", "g4"}
    assert home.behaviour.events.count() == 12  # a session stores nothing

    problem(c.post("/api/session/recommend", json=[{**session[0], "FeedbackType": "stars"}], headers=r), 422)
    problem(c.post("/api/session/recommend", json=[], headers=r), 422, "session")
    problem(c.post("/api/session/recommend", json=[{"FeedbackType": "star"}], headers=r), 422, "ItemId")


@pytest.mark.parametrize("method, path, words", [
    ("get", "/api/user/%20u1", "whitespace"), ("delete", "/api/user/%20u1", "whitespace"),
    ("patch", "/api/user/%20u1", "whitespace"), ("get", "/api/item/%20g1", "whitespace"),
    ("delete", "/api/item/%20g1", "whitespace"), ("patch", "/api/item/%20g1", "whitespace"),
    ("put", "/api/item/%20g1/category/Sale", "whitespace"), ("delete", "/api/item/g1/category/Sale", "not found"),
    ("get", "/api/feedback/%20u1/g1", "whitespace"), ("delete", "/api/feedback/u1/%20g1", "whitespace"),
    ("get", "/api/feedback/stars/u1/g1", "unknown feedback type"), ("get", "/api/user/%20u1/feedback", "whitespace"),
    ("get", "/api/user/u1/feedback/star%3E3", "unknown feedback type"), ("get", "/api/item/%20g1/feedback", "whitespace"),
    ("get", "/api/item/g1/feedback/stars", "unknown feedback type"), ("get", "/api/item/g1/neighbors?n=0", "n"),
    ("get", "/api/item/%20g1/neighbors", "whitespace"), ("get", "/api/feedback/star?n=100000", "n"),
    ("post", "/api/session/recommend?offset=-1", "offset"), ("get", "/api/user/%20u1/neighbors", "whitespace"),
    ("get", "/api/popular?n=0", "n"), ("get", "/api/latest/Shoes?user-id=%20u1", "whitespace"),
    ("get", "/api/popular/Bags?offset=-1", "offset"),
])
def test_bad_ids_types_and_numbers_in_paths_are_problems(home, keys, method, path, words):
    body = {"json": {}} if method == "patch" else {"json": []} if method == "post" else {}
    problem(getattr(client(home), method)(path, headers=keys["write"], **body), 404 if "not found" in words else 422,
            words)


def test_every_route_is_in_the_openapi_schema(home):
    paths = client(home).get("/openapi.json").json()["paths"]
    gorse_paths = {p for p in paths if p.startswith("/api/")}
    assert {"/api/feedback", "/api/recommend/{user_id}", "/api/recommend/{user_id}/{category}",
            "/api/session/recommend", "/api/item/{item_id}/neighbors", "/api/items", "/api/users", "/api/popular",
            "/api/popular/{category}", "/api/latest", "/api/latest/{category}",
            "/api/user/{user_id}/neighbors"} <= gorse_paths
    assert "put" in paths["/api/feedback"]


# -- the pygorse client over a real server -------------------------------------------------
@pytest.fixture
def live(home) -> Iterator[str]:
    """The app served by uvicorn on 127.0.0.1 (a free port) in a thread, for real HTTP clients."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(home.home.root, Settings(threads=1)), host="127.0.0.1",
                                           port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("uvicorn did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


def test_pygorse_round_trip(home, keys, live):
    g = gorse.Gorse(live, keys["write"]["X-API-Key"], timeout=30)
    for item in ITEMS:
        assert g.insert_item(item) == {"RowAffected": 1}
    assert g.insert_user({"UserId": "u0", "Labels": ["vip"], "Comment": "first"}) == {"RowAffected": 1}
    assert g.insert_users([{"UserId": "u9"}]) == {"RowAffected": 1}
    assert g.insert_feedbacks(FEEDBACK[1:]) == {"RowAffected": 11}
    assert g.insert_feedback("star", "u0", "g1", "2024-02-01T00:00:00Z") == {"RowAffected": 1}

    # lists, page by page with Gorse's cursors
    items, cursor = g.get_items(4)
    more, end = g.get_items(4, cursor)
    assert [i["ItemId"] for i in items + more] == ["p0", "p1", *(f"g{i}" for i in range(6))] and end == ""
    users, cursor = g.get_users(3)
    assert [u["UserId"] for u in users] == ["u0", "u1", "u2"] and users[0]["Labels"] == ["vip"]
    assert [u["UserId"] for u in g.get_users(3, cursor)[0]] == ["u3", "u9"]
    feedback, cursor = g.get_feedbacks(10)
    assert len(feedback) == 10 and len(g.get_feedbacks(10, cursor)[0]) == 2
    assert [f["ItemId"] for f in g.list_feedbacks("star", "u1")] == ["g1", "g3"]
    assert g.get_item("g3")["Categories"] == ["Shoes"] and g.get_user("u0")["Comment"] == "first"

    # recommendations: the popular items before a model, the model's after
    assert [s.id for s in g.get_recommend("new", n=2)] == ["g1", "g3"]
    home.behaviour.train("itemknn")  # another process's training: the server picks the model file up
    assert {s.id for s in g.get_recommend("u0", category="Shoes")} <= {"g5"}
    assert g.get_neighbors("g1", n=2)[0]["Id"] == "g3"
    session = g.session_recommend([{"FeedbackType": "star", "UserId": "", "ItemId": "g1",
                                    "Timestamp": "2024-03-01T00:00:00Z"}], n=3)
    assert session[0]["Id"] == "g3"
    assert asyncio.run(gorse.AsyncGorse(live, keys["read"]["X-API-Key"]).get_recommend("u0", n=3))

    # changes and deletions
    assert g.update_item("g3", is_hidden=True) == {"RowAffected": 1}
    assert g.get_item("g3")["IsHidden"] and "g3" not in [s.id for s in g.get_recommend("new")]
    assert g.delete_feedback("u1", "g1") == {"RowAffected": 1}
    assert g.delete_item("g5") == {"RowAffected": 1} and g.delete_user("u9") == {"RowAffected": 1}
    with pytest.raises(gorse.GorseException) as missing:
        g.get_item("g5")
    assert missing.value.status_code == 404 and "item g5 not found" in missing.value.message
    with pytest.raises(gorse.GorseException) as refused:
        gorse.Gorse(live, keys["read"]["X-API-Key"]).insert_item({"ItemId": "g7"})
    assert refused.value.status_code == 403
    with pytest.raises(gorse.GorseException) as unknown:
        g.insert_feedback("stars", "u1", "g1", "2024-02-01")
    assert unknown.value.status_code == 422


def test_the_routes_pygorse_lacks_as_the_go_and_js_clients_call_them(home, keys, live):
    """pygorse 0.5.1 has no call for overwriting feedback, the popular and latest items, user
    neighbours or several categories: these are the requests gorse-go and gorse-js make for
    them (paths with an empty category end in "/"), over real HTTP."""
    with httpx.Client(base_url=live, headers={**keys["write"], "Content-Type": "application/json"}, timeout=30) as c:
        assert c.post("/api/items", json=ITEMS).json() == {"RowAffected": 6}
        assert c.post("/api/feedback", json=FEEDBACK).json() == {"RowAffected": 12}
        put = {"FeedbackType": "star", "UserId": "u1", "ItemId": "g1", "Timestamp": "2024-03-01T00:00:00Z",
               "Value": 3, "Comment": "again"}
        assert c.put("/api/feedback", json=[put]).json() == {"RowAffected": 1}
        assert c.get("/api/feedback/star/u1/g1").json()["Comment"] == "again"

        popular = c.get("/api/popular/?n=3&offset=0&user-id=u1").json()  # gorse-go GetPopularItems
        assert popular == [{"Id": "g4", "Score": 2.0}]
        assert c.get("/api/latest/", params={"n": 2, "offset": 0}).json()[0]["Id"] == "g5"  # gorse-js getLatest
        assert [s["Id"] for s in c.get("/api/latest?category=Shoes&category=Shoes&n=9").json()] == ["g5", "g3", "g1"]
        assert c.get("/api/recommend/new/?n=2&offset=0", headers={"X-API-Version": "2"}).json()[0]["Id"] in {"g1", "g3"}

        home.behaviour.train("itemknn")
        assert [u["Id"] for u in c.get("/api/user/u0/neighbors?n=2&offset=0").json()] == ["u2", "u1"]  # gorse-go
        assert {s["Id"] for s in c.get("/api/item/g1/neighbors/Shoes?n=5&offset=0").json()} <= {"g3", "g5"}
        assert c.post("/api/session/recommend/?n=2", json=[{"FeedbackType": "star", "UserId": "", "ItemId": "g1",
                                                             "Timestamp": ""}]).json()[0]["Id"] == "g3"  # gorse-js
        refused = c.get("/api/user/nobody/neighbors")
        assert refused.status_code == 404 and "user nobody not found" in refused.json()["detail"]
