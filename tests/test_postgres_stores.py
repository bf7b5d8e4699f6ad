"""The home's stores on PostgreSQL answer exactly as on SQLite: events (bulk import through
COPY, repeats, re-imports, live batches, pages), the catalogue, API keys and the dashboards'
SQL (stylesense.insights), each compared side by side on the same inputs."""

from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from stylesense import insights
from stylesense.catalog.store import make_engine
from stylesense.engine import StyleSense
from stylesense.events import EventStore, NewEvent
from stylesense.serving.keys import KeyStore

from recsys_fixtures import block_events
from test_insights import EVENTS, ITEMS, events_frame

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=timezone.utc)


@pytest.fixture
def urls(tmp_path: Path, fresh_database: str) -> dict[str, str]:
    """An empty SQLite file and an empty PostgreSQL database."""
    return {"sqlite": f"sqlite:///{tmp_path / 'home.db'}", "postgresql": fresh_database}


@pytest.fixture
def stores(urls: dict[str, str]) -> dict[str, EventStore]:
    opened = {kind: EventStore.open(url) for kind, url in urls.items()}
    yield opened
    for store in opened.values():
        store.engine.dispose()


def log() -> pd.DataFrame:
    """A realistic log: 1,200 events of 300 shoppers, with repeated rows (two units bought at
    one instant) and prices."""
    events = block_events(per_user=4, types=("view", "purchase"), seed=3)
    events = pd.concat([events, events.iloc[::50]]).sort_values("ts", kind="stable", ignore_index=True)
    events["price"] = np.where(events["type"] == "purchase", 9.99, np.nan)
    return events


def test_a_bulk_import_through_copy_stores_what_inserts_store(stores: dict[str, EventStore]) -> None:
    events = log()
    counts = {kind: store.import_frame(events).to_dict() for kind, store in stores.items()}
    assert counts["postgresql"] == counts["sqlite"] == {"inserted": len(events), "duplicates": 0}
    again = {kind: store.import_frame(events).to_dict() for kind, store in stores.items()}
    assert again["postgresql"] == again["sqlite"] == {"inserted": 0, "duplicates": len(events)}

    frames = {kind: store.frame() for kind, store in stores.items()}
    pd.testing.assert_frame_equal(frames["postgresql"], frames["sqlite"])  # pks too: file order kept
    assert frames["postgresql"]["pk"].tolist() == list(range(1, len(events) + 1))

    # half the file again plus new rows: only the new ones are stored, on both
    more = pd.concat([events.iloc[: len(events) // 2],
                      pd.DataFrame({"user_id": ["new"], "item_id": ["x"], "type": ["view"], "ts": [events["ts"].iloc[0]]})])
    assert {k: s.import_frame(more).inserted for k, s in stores.items()} == {"sqlite": 1, "postgresql": 1}


def test_live_batches_and_pages_agree(stores: dict[str, EventStore]) -> None:
    batch = [NewEvent("ann", f"i{i}", "view", T0 + timedelta(minutes=i), event_id=f"e{i}") for i in range(30)]
    for store in stores.values():
        assert store.add_many(batch).to_dict() == {"inserted": 30, "duplicates": 0}
        assert store.add_many(batch[:5] + [NewEvent("ann", "z", "cart", T0, event_id="e0")]).inserted == 0
        assert store.add("bob", "i1", "purchase", ts=T0) and not store.add("bob", "i1", "purchase", ts=T0)
    pages = {}
    for kind, store in stores.items():
        first = store.latest("ann", limit=20)
        second = store.latest("ann", limit=20, before=first.next_before)
        pages[kind] = [e.to_dict() for e in first.events + second.events]
    assert pages["postgresql"] == pages["sqlite"] and len(pages["sqlite"]) == 30
    assert pages["sqlite"][0]["item_id"] == "i29"
    assert {k: s.delete("ann", types=["view"]) for k, s in stores.items()} == {"sqlite": 30, "postgresql": 30}


def test_api_keys_on_postgres(fresh_database: str) -> None:
    engine = make_engine(fresh_database)
    try:
        keys = KeyStore(engine)
        key, info = keys.create("write", name="shop", rate=5.0)
        assert keys.authenticate(key).role == "write"
        assert [k.name for k in keys.list()] == ["shop"]
        keys.revoke("shop")
        assert KeyStore(engine).authenticate(key) is None  # another worker's store sees the revocation
    finally:
        engine.dispose()


def shop(root: Path, url: str | None) -> StyleSense:
    ss = StyleSense.init(root, database_url=url)
    for item_id, attrs in ITEMS.items():
        ss.put_item(item_id, attrs)
    ss.behaviour.events.import_frame(events_frame(EVENTS))
    return ss


def test_the_dashboards_sql_answers_the_same_on_postgres(tmp_path: Path, fresh_database: str) -> None:
    lite, pg = shop(tmp_path / "lite", None), shop(tmp_path / "pg", fresh_database)
    try:
        assert pg.store.blocked_ids() == lite.store.blocked_ids()
        assert insights.summary(pg).to_dict() == insights.summary(lite).to_dict()
        assert insights.repurchase_rate(pg).to_dict() == insights.repurchase_rate(lite).to_dict()
        for figure in (lambda ss: insights.activity(ss, "W"), lambda ss: insights.activity(ss, "D"),
                       insights.events_by_type, lambda ss: insights.sales_by(ss, "category"),
                       lambda ss: insights.sales_by_price_band(ss, 2), insights.top_products,
                       lambda ss: insights.top_products(ss, 3, None), insights.trending_products):
            pd.testing.assert_frame_equal(figure(pg), figure(lite))
    finally:
        pg.store.engine.dispose()
