"""The catalogue decides what may be recommended: removed, hidden and out-of-stock products
never come back from any model, in any surface (recommend, batch, similar items, reasons,
evaluation of the live home); products known only from events stay recommendable unless the
home is catalogue-only."""

from __future__ import annotations

import csv
import json
import re

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from stylesense.catalog.store import Upsert, stock_value
from stylesense.cli import app
from stylesense.engine import StyleSense
from stylesense.recommenders import MODELS

from conftest import write_catalog
from recsys_fixtures import QUICK

N_ITEMS = 30
EVENT_ONLY = "x-legacy-sku"  # bought, never in a catalogue feed


def _popular_first_log() -> pd.DataFrame:
    """Shoppers who each buy a few catalogue products, item p0 most of all, p1 next, p2
    next, plus purchases of an item the catalogue has never had."""
    rng = np.random.default_rng(0)
    rows = []
    for u in range(60):
        picks = ["p0", "p1", "p2"][: 1 + u % 3] + [f"p{j}" for j in rng.choice(np.arange(3, N_ITEMS), 3, replace=False)]
        picks += [EVENT_ONLY] if u % 4 == 0 else []
        rows += [(f"u{u}", item, "purchase", pd.Timestamp("2024-03-01", tz="UTC") + pd.Timedelta(hours=u + j))
                 for j, item in enumerate(picks)]
    return pd.DataFrame(rows, columns=["user_id", "item_id", "type", "ts"])


@pytest.fixture
def shop(tmp_path) -> StyleSense:
    """A home whose catalogue rows and features go straight into the store (no CNN here:
    the rule under test is about ids), with an index and an event log."""
    ss = StyleSense(tmp_path / "home", threads=1)
    rng = np.random.default_rng(1)
    feats = rng.standard_normal((N_ITEMS, 32)).astype(np.float32)
    ss.store.upsert([Upsert(f"p{i}", {"articleType": "Bags" if i % 2 else "Shoes"}, None, f"h{i}", feats[i])
                     for i in range(N_ITEMS)])
    ss.sync_index()
    ss.behaviour.events.import_frame(_popular_first_log())
    return ss


def _blocked_everywhere(ss: StyleSense, model: str, blocked: set[str], tmp_path) -> None:
    """No list of ``model`` in the home names a blocked item: per shopper (known and
    unknown), in reasons, in the batch file and among similar items."""
    b = ss.behaviour
    users = [f"u{u}" for u in range(0, 60, 7)] + ["newbie"]
    for user in users:
        for exclude_seen in (True, False):
            recs = b.recommend(user, N_ITEMS + 1, model=model, exclude_seen=exclude_seen)
            assert recs and not {r.item_id for r in recs} & blocked, (user, recs)
            named = {w for r in recs for w in re.findall(r"[\w-]+", r.reason or "")}
            assert not named & blocked, recs
    for item in ("p3", "p4", "p5"):
        assert not {r.item_id for r in b.similar(item, N_ITEMS, model=model)} & blocked
    b.recommend_batch(tmp_path / "batch.csv", N_ITEMS + 1, model=model, exclude_seen=False)
    assert not set(pd.read_csv(tmp_path / "batch.csv", dtype=str)["item_id"]) & blocked


@pytest.mark.parametrize("name", sorted(MODELS))
def test_removed_hidden_and_sold_out_products_are_never_recommended(name, shop, tmp_path):
    shop.behaviour.train(name, QUICK.get(name, {}))
    before = {r.item_id for r in shop.behaviour.recommend("newbie", 5)}
    assert {"p0", "p1", "p2"} <= before  # the three best sellers lead the cold-start list

    shop.remove_items(["p0"])
    shop.set_hidden(["p1"])
    shop.store.upsert([Upsert("p2", {"articleType": "Shoes", "in_stock": "no"}, None, "h2", None)])
    _blocked_everywhere(shop, name, {"p0", "p1", "p2"}, tmp_path)
    # also after a retrain on the same events, which still name all three
    shop.behaviour.train(name, QUICK.get(name, {}))
    _blocked_everywhere(shop, name, {"p0", "p1", "p2"}, tmp_path)

    shop.set_hidden(["p1"], False)  # shown again: recommendable again
    assert "p1" in {r.item_id for r in shop.behaviour.recommend("newbie", 5)}


def test_event_only_products_are_recommendable_unless_the_home_is_catalogue_only(shop):
    shop.behaviour.train("popular")
    assert EVENT_ONLY in {r.item_id for r in shop.behaviour.recommend("newbie", 10)}
    shop.configure({"catalogue_only": "true"})
    again = StyleSense(shop.home.root)  # the setting is the home's, not this object's
    recs = {r.item_id for r in again.behaviour.recommend("newbie", N_ITEMS + 5)}
    assert EVENT_ONLY not in recs and recs == {f"p{i}" for i in range(N_ITEMS)}
    again.set_hidden(["p3"])
    assert "p3" not in {r.item_id for r in again.behaviour.recommend("newbie", N_ITEMS + 5)}


def test_evaluation_of_the_live_home_recommends_only_what_may_be_recommended(shop):
    shop.behaviour.train("popular")
    full = shop.behaviour.evaluate("stratified", ["popular"], k=10, exclude_seen=False)
    shop.set_hidden([f"p{i}" for i in range(3, N_ITEMS)])
    shop.remove_items(["p0"])
    narrow = shop.behaviour.evaluate("stratified", ["popular"], k=10, exclude_seen=False)
    universe = narrow.split["train_items"]
    # p1, p2 and the event-only item are all that is left to recommend
    assert narrow.models["popular"]["coverage"] * universe == pytest.approx(3)
    assert full.models["popular"]["coverage"] * universe > 3


def test_stock_cells_people_write():
    for sold_out in (0, -1, 0.0, False, "0", "no", "False", " sold out ", "N"):
        assert not stock_value(sold_out), sold_out
    for available in (None, 1, 12, 2.5, True, "yes", "in stock", "3"):
        assert stock_value(available), available


def test_changing_the_stock_column_rereads_every_item(shop):
    shop.store.upsert([Upsert("p5", {"articleType": "Bags", "available": "false"}, None, "h5", None)])
    assert "p5" not in shop.store.blocked_ids()  # the home reads in_stock, not available
    shop.configure({"stock_column": "available"})
    assert shop.store.blocked_ids() == ["p5"]
    with pytest.raises(ValueError, match="settable"):
        shop.configure({"embedder": "lite2"})
    with pytest.raises(ValueError, match="true or false"):
        shop.configure({"catalogue_only": "maybe"})


def test_an_older_home_gains_the_hidden_and_stock_columns(tmp_path):
    import sqlite3

    db = tmp_path / "old.db"
    con = sqlite3.connect(db)  # the items table as the first release wrote it
    con.execute("CREATE TABLE items (pk INTEGER PRIMARY KEY, item_id VARCHAR(255) UNIQUE, attrs JSON, "
                "image_path VARCHAR(4096), image_hash VARCHAR(64), features BLOB, features_version INTEGER, "
                "indexed_version INTEGER, removed BOOLEAN, updated_at DATETIME)")
    con.execute("""INSERT INTO items VALUES (1, 'a', '{"in_stock": 0}', NULL, NULL, NULL, 0, NULL, 0, NULL)""")
    con.execute("""INSERT INTO items VALUES (2, 'b', '{}', NULL, NULL, NULL, 0, NULL, 0, NULL)""")
    con.commit()
    con.close()
    from stylesense.catalog.store import CatalogStore

    store = CatalogStore(f"sqlite:///{db}")
    assert store.blocked_ids() == ["a"] and not store.items(["b"])[0].hidden


# -- through the command line, on a catalogue imported from photos -------------------------
runner = CliRunner()


def run(home, *args):
    result = runner.invoke(app, ["--home", str(home), *args])
    return result


def test_cli_remove_hide_show(home, tmp_path):
    """The issue's repro: `catalog remove X; recommend --user newbie` put X first, also after
    `train --model popular`, and `recommend batch` kept it in nearly every list."""
    csv_path = write_catalog(tmp_path / "catalog")
    rows = list(csv.DictReader(csv_path.open()))
    for row in rows:
        row["in_stock"] = "0" if row["id"] == "3" else "1"
    with csv_path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    assert run(home, "catalog", "import", str(csv_path), "--images", "images/{id}.jpg").exit_code == 0
    events = tmp_path / "events.csv"
    pd.DataFrame([(f"u{u}", item, "purchase", f"2024-01-{1 + u:02d}") for u in range(12)
                  for item in ("1", "2", "3", str(4 + u % 8))],
                 columns=["user", "item", "type", "day"]).to_csv(events, index=False)
    assert run(home, "events", "import", str(events), "--user-column", "user", "--item-column", "item",
               "--time-column", "day", "--type-column", "type").exit_code == 0
    assert run(home, "train", "--model", "popular").exit_code == 0

    def top(user="newbie"):
        result = run(home, "recommend", "--user", user, "-k", "5", "--json")
        assert result.exit_code == 0, result.output
        return [r["item_id"] for r in json.loads(result.output)]

    assert top()[:2] == ["1", "2"] and "3" not in top()  # 3 is out of stock from its CSV row
    assert run(home, "catalog", "remove", "1").exit_code == 0
    assert "1" not in top()
    assert run(home, "train", "--model", "popular").exit_code == 0
    assert "1" not in top()
    result = run(home, "catalog", "hide", "2", "nope")
    assert result.exit_code == 1 and "hid 1 item(s)" in result.output and "nope" in result.output
    assert "2" not in top() and "2" not in top("u0")
    assert run(home, "recommend", "batch", "--out", str(tmp_path / "b.csv"), "-k", "30").exit_code == 0
    assert not {"1", "2", "3"} & set(pd.read_csv(tmp_path / "b.csv", dtype=str)["item_id"])
    listed = run(home, "catalog", "list", "-n", "30").output
    assert "(1 hidden)" in listed and "2 (hidden)" in listed

    search = run(home, "search", "--item", "4", "-k", "30", "--json")
    assert search.exit_code == 0 and "\"2\"" not in search.output  # hidden: out of search too
    assert "hidden" in run(home, "search", "--item", "2").output
    assert run(home, "catalog", "show", "2").exit_code == 0
    assert "\"2\"" in run(home, "search", "--item", "4", "-k", "30", "--json").output
    assert "2" in top()


def test_a_padded_shopper_id_is_refused_not_served_as_a_stranger(shop):
    shop.behaviour.train("popular")
    with pytest.raises(ValueError, match="whitespace"):
        shop.behaviour.recommend(" u1 ", 5)
    with pytest.raises(ValueError, match="whitespace"):
        shop.behaviour.similar("p3 ", 5)
