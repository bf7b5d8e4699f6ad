"""The app around the routes: errors as RFC 9457 problems, API keys and their roles and rates,
body limits, health, readiness and metrics (FastAPI's test client over a real home)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from fastapi import Request
from fastapi.testclient import TestClient

from stylesense.catalog.store import Upsert
from stylesense.engine import StyleSense
from stylesense.serving.app import PROBLEM, WRITE, Settings, create_app
from stylesense.serving.keys import KeyStore


@pytest.fixture
def home(tmp_path):
    ss = StyleSense(tmp_path / "home", threads=1)
    feats = np.random.default_rng(0).standard_normal((12, 16)).astype(np.float32)
    ss.store.upsert([Upsert(f"p{i}", {"articleType": "Bags"}, None, f"h{i}", feats[i]) for i in range(12)])
    ss.sync_index()
    rows = [(f"u{u}", f"p{(u + j) % 12}", "purchase", pd.Timestamp("2024-01-01", tz="UTC") + pd.Timedelta(hours=u * 3 + j))
            for u in range(6) for j in range(3)]
    ss.behaviour.events.import_frame(pd.DataFrame(rows, columns=["user_id", "item_id", "type", "ts"]))
    ss.behaviour.train("popular")
    return ss


async def _probe(request: Request) -> dict:
    """A write route of the test's own that reads its whole body, as the real ones do."""
    return {"written": len(await request.body())}


def client(ss: StyleSense, **settings) -> TestClient:
    app = create_app(ss.home.root, Settings(threads=1, **settings))
    app.add_api_route("/probe-write", _probe, methods=["POST"], dependencies=[WRITE])
    return TestClient(app)


def test_library_errors_are_problems_with_the_libraries_message(home):
    c = client(home, public_reads=True)
    r = c.get("/v1/users/u1/recommendations", params={"model": "als"})
    assert r.status_code == 409 and r.headers["content-type"] == PROBLEM
    assert r.json()["title"] == "NotReady" and "stylesense train --model als" in r.json()["detail"]
    r = c.get("/v1/users/u1/recommendations", params={"where": "colour=red"})
    assert r.status_code == 422 and "colour" in r.json()["detail"]
    r = c.get("/v1/users/u1/recommendations", params={"k": "lots"})
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["query", "k"]
    r = c.get("/v1/no-such-route")
    assert r.status_code == 404 and r.headers["content-type"] == PROBLEM
    assert "Traceback" not in r.text


def test_keys_roles_and_rates(home):
    keys = KeyStore(home.store.engine)
    read, _ = keys.create("read")
    write, _ = keys.create("write")
    slow, _ = keys.create("read", rate=1.0)
    keyed = client(home)
    assert keyed.get("/v1/users/u1/recommendations").status_code == 401
    assert keyed.get("/v1/users/u1/recommendations", headers={"X-API-Key": "ss_nope"}).status_code == 401
    assert keyed.get("/v1/users/u1/recommendations", headers={"X-API-Key": read}).status_code == 200
    assert keyed.post("/probe-write", headers={"X-API-Key": read}).status_code == 403
    assert keyed.post("/probe-write", headers={"X-API-Key": write}).json() == {"written": 0}
    assert keyed.post("/probe-write").status_code == 401
    public = client(home, public_reads=True)
    assert public.get("/v1/users/u1/recommendations").status_code == 200
    assert public.post("/probe-write").status_code == 401  # writes always need a key
    first = keyed.get("/v1/users/u1/recommendations", headers={"X-API-Key": slow})
    second = keyed.get("/v1/users/u1/recommendations", headers={"X-API-Key": slow})
    assert first.status_code == 200 and second.status_code == 429 and int(second.headers["Retry-After"]) >= 1
    keys.revoke(next(k.key_id for k in keys.list() if k.role == "read" and k.rate is None))
    assert keyed.get("/v1/users/u1/recommendations", headers={"X-API-Key": read}).status_code == 401


def test_bodies_over_the_limit_are_refused_before_they_are_read(home):
    keys = KeyStore(home.store.engine)
    write, _ = keys.create("write")
    c = client(home, max_body_bytes=1000)
    r = c.post("/probe-write", content=b"x" * 5000, headers={"X-API-Key": write, "Content-Type": "application/json"})
    assert r.status_code == 413 and r.headers["content-type"] == PROBLEM

    def chunks():  # no Content-Length: counted as it arrives
        for _ in range(10):
            yield b"y" * 500

    r = c.post("/probe-write", content=chunks(), headers={"X-API-Key": write, "Content-Type": "application/json"})
    assert r.status_code == 413


def test_health_ready_and_metrics(home, tmp_path):
    c = client(home, public_reads=True)
    assert c.get("/health").json() == {"status": "ok"}
    assert c.get("/ready").json() == {"ready": True, "checks": {"database": "ok", "index": "ok", "model": "ok"}}
    c.get("/v1/users/u1/recommendations")
    c.get("/v1/users/u1/recommendations", params={"model": "als"})
    text = c.get("/metrics").text
    assert 'stylesense_requests_total{method="GET",route="/v1/users/{user_id:path}/recommendations",status="200"} 1.0' in text
    assert 'status="409"' in text and "stylesense_request_seconds_bucket" in text
    empty = client(StyleSense(tmp_path / "empty"))
    r = empty.get("/ready")
    assert r.status_code == 503 and r.json()["checks"]["index"].startswith("no index yet")


def test_a_client_that_leaves_mid_body_is_not_a_server_error(home):
    """A timeout or a load generator stopping closes the connection half-way through a body:
    the app answers 400 (to nobody) and counts no 5xx, instead of logging an unhandled error."""
    import asyncio

    write, _ = KeyStore(home.store.engine).create("write")
    app = client(home).app
    arrivals = iter([{"type": "http.request", "body": b'{"half', "more_body": True}, {"type": "http.disconnect"}])
    sent: list[dict] = []

    async def receive() -> dict:
        return next(arrivals)

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
             "scheme": "http", "path": "/probe-write", "raw_path": b"/probe-write", "root_path": "",
             "query_string": b"", "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 80),
             "headers": [(b"x-api-key", write.encode()), (b"content-type", b"application/json"),
                         (b"content-length", b"100")]}
    asyncio.run(app(scope, receive, send))
    assert sent[0]["type"] == "http.response.start" and sent[0]["status"] == 400
    assert 'status="500"' not in TestClient(app).get("/metrics").text
