"""Where the API runs its reads (serving.app.read): on the event loop for a home on its SQLite
file, on the thread pool for a database across a network; writes always on the pool. Observed
from the database's side: the thread each SQL statement of a request runs on."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event

from stylesense.catalog.store import Upsert
from stylesense.engine import StyleSense
from stylesense.serving.app import Settings, create_app
from stylesense.serving.keys import KeyStore

POOL_THREAD = "AnyIO worker thread"  # anyio names its pool's threads so

READS = ["/v1/users/u1/recommendations?k=3", "/v1/items/p1", "/v1/items?n=3", "/v1/items/p1/similar?k=3",
         "/v1/popular?k=3", "/v1/trending?k=3", "/v1/users/u1/events"]


def make_home(root: Path, database_url: str | None = None) -> StyleSense:
    StyleSense.init(root, database_url=database_url)
    ss = StyleSense(root, threads=1)
    feats = np.random.default_rng(0).standard_normal((12, 16)).astype(np.float32)
    ss.store.upsert([Upsert(f"p{i}", {"articleType": "Bags"}, None, f"h{i}", feats[i]) for i in range(12)])
    ss.sync_index()
    rows = [(f"u{u}", f"p{(u + j) % 12}", "purchase", pd.Timestamp("2024-01-01", tz="UTC") + pd.Timedelta(hours=u + j))
            for u in range(6) for j in range(3)]
    ss.behaviour.events.import_frame(pd.DataFrame(rows, columns=["user_id", "item_id", "type", "ts"]))
    ss.behaviour.train("popular")
    return ss


@contextmanager
def served(ss: StyleSense) -> Iterator[tuple[TestClient, dict[str, str], list[str]]]:
    """A client of the app over ``ss``'s home, a write key's header, and the names of the
    threads the app's SQL statements ran on since the list was last cleared."""
    app = create_app(ss.home.root, Settings(threads=1))
    threads: list[str] = []
    engine = app.state.server.ss.store.engine
    listener = lambda *_: threads.append(threading.current_thread().name)  # noqa: E731
    event.listen(engine, "before_cursor_execute", listener)
    key, _ = KeyStore(engine).create("write")
    try:
        with TestClient(app) as client:
            yield client, {"X-API-Key": key}, threads
    finally:
        event.remove(engine, "before_cursor_execute", listener)


def statement_threads(client: TestClient, headers: dict[str, str], threads: list[str], path: str) -> set[str]:
    threads.clear()
    assert client.get(path, headers=headers).status_code == 200, path
    return {POOL_THREAD if name.startswith(POOL_THREAD) else "loop" for name in threads}


def test_reads_on_a_sqlite_home_run_on_the_event_loop_and_writes_on_the_pool(tmp_path):
    with served(make_home(tmp_path / "home")) as (client, headers, threads):
        assert client.app.state.server.inline_reads
        for path in READS:
            assert statement_threads(client, headers, threads, path) == {"loop"}, path
        threads.clear()
        sent = client.post("/v1/events", json={"user_id": "u9", "item_id": "p2", "type": "view"}, headers=headers)
        assert sent.status_code == 200
        assert POOL_THREAD in {n[: len(POOL_THREAD)] for n in threads}  # the insert and its commit
        assert client.get("/v1/users/u9/events", headers=headers).json()["events"][0]["item_id"] == "p2"


def test_reads_on_a_network_database_run_on_the_thread_pool(tmp_path, fresh_database):
    with served(make_home(tmp_path / "home", fresh_database)) as (client, headers, threads):
        assert not client.app.state.server.inline_reads
        for path in READS:
            # the key check stays on the loop; the library's own queries go to the pool
            assert POOL_THREAD in statement_threads(client, headers, threads, path), path
