"""The whole CLI flow, the same commands and the same answers on every backend: SQLite with a
FAISS index file, PostgreSQL (catalogue, events, models and keys in the database), and
PostgreSQL with the vectors in pgvector. init, catalog import, index build, search, events
import (twice: nothing doubles), train, recommend, then `serve` with two workers answering
from the same database, a live event sent to one counted by the other."""

import json
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from stylesense.cli import app
from stylesense.serving.process import ServerProcess

from conftest import write_catalog

runner = CliRunner()
BACKENDS = {"sqlite+faiss": None, "postgres+faiss": "flat", "postgres+pgvector": "pgvector"}
# Shoppers who each bought three products of one kind (write_catalog, 4 per kind: Tshirts 1-4,
# Shoes 5-8, Bags 9-12, Dresses 13-16); ann bought two pairs of shoes.
PURCHASES = {"ann": ["5", "6"], "bob": ["5", "6", "7"], "cat": ["6", "7", "8"], "dan": ["5", "7", "8"],
             "eve": ["9", "10", "11"], "fay": ["10", "11", "12"], "gus": ["1", "2", "3"], "hal": ["2", "3", "4"]}


@pytest.fixture(params=list(BACKENDS))
def init_options(request) -> list[str]:
    index = BACKENDS[request.param]
    if index is None:
        return []
    return ["--database-url", request.getfixturevalue("fresh_database"), "--index", index]


def run(home: Path, *args: str):
    result = runner.invoke(app, ["--home", str(home), "--threads", "1", *args])
    return result


def test_the_cli_flow_answers_the_same_on_every_backend(home: Path, tmp_path: Path, init_options: list[str]) -> None:
    r = run(home, "init", *init_options)
    assert r.exit_code == 0, r.output
    csv_path = write_catalog(tmp_path / "shop", n_per_class=4)
    r = run(home, "catalog", "import", str(csv_path), "--images", "images/{id}.jpg")
    assert r.exit_code == 0 and "16 added" in r.output, r.output
    r = run(home, "index", "build")
    assert r.exit_code == 0, r.output

    r = run(home, "search", "--item", "6", "-k", "3", "--where", "articleType=Shoes", "--json")
    assert r.exit_code == 0, r.output
    hits = json.loads(r.output)
    assert len(hits) == 3 and {h["item_id"] for h in hits} <= {"5", "7", "8"}
    r = run(home, "search", str(tmp_path / "shop" / "images" / "12.jpg"), "-k", "1", "--json")
    assert json.loads(r.output)[0]["item_id"] == "12"

    log = tmp_path / "events.csv"
    rows = [f"{user},{item},2024-01-{day + 1:02d}" for user, items in PURCHASES.items() for day, item in enumerate(items)]
    log.write_text("user,item,day\n" + "\n".join(rows) + "\n")
    options = ["--user-column", "user", "--item-column", "item", "--time-column", "day", "--type", "purchase"]
    r = run(home, "events", "import", str(log), *options)
    assert r.exit_code == 0 and f"{len(rows)} rows: {len(rows)} imported, 0 already stored" in r.output, r.output
    r = run(home, "events", "import", str(log), *options)
    assert f"0 imported, {len(rows)} already stored" in r.output

    r = run(home, "train", "--model", "itemknn")
    assert r.exit_code == 0 and f"on {len(rows)} events (8 users" in r.output, r.output
    r = run(home, "recommend", "--user", "ann", "-k", "2", "--json")
    assert r.exit_code == 0, r.output
    assert {rec["item_id"] for rec in json.loads(r.output)} == {"7", "8"}  # the other shoes, bought with hers

    r = run(home, "keys", "create", "--role", "write")
    assert r.exit_code == 0, r.output
    key = r.stdout.strip()
    server = ServerProcess(home, tmp_path / "server.log", workers=2)
    try:
        server.start(timeout=120)
        with httpx.Client(base_url=server.url, headers={"X-API-Key": key}, timeout=30) as c:
            recs = c.get("/v1/users/ann/recommendations", params={"k": 2}).json()
            assert {r["item_id"] for r in recs["items"]} == {"7", "8"}
            found = c.post("/v1/search", json={"item_id": "6", "k": 3, "where": {"articleType": "Shoes"}}).json()
            assert {h["item_id"] for h in found["items"]} <= {"5", "7", "8"}
            sent = c.post("/v1/events", json={"user_id": "ivy", "item_id": "13", "type": "purchase", "event_id": "live-1"})
            assert sent.json() == {"inserted": 1, "duplicates": 0}
            # each request may reach either worker (a fresh connection each): all see the one event
            for _ in range(6):
                with httpx.Client(base_url=server.url, headers={"X-API-Key": key}, timeout=30) as fresh:
                    page = fresh.get("/v1/users/ivy/events").json()
                    assert [e["item_id"] for e in page["events"]] == ["13"]
    finally:
        server.kill()
