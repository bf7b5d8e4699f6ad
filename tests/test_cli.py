"""The command line end to end: init, import (exit codes), search --json, duplicates, evaluate."""

import json
import os
import shutil

from typer.testing import CliRunner

from stylesense.cli import app
from stylesense.engine import StyleSense

from conftest import within, write_catalog

runner = CliRunner()


def run(home, *args):
    return runner.invoke(app, ["--home", str(home), "--threads", "2", *args])


def test_cli_end_to_end(home, tmp_path):
    shop = tmp_path / "shop"
    csv_path = write_catalog(shop, n_per_class=5)
    shutil.copy(shop / "images" / "3.jpg", shop / "images" / "dup.jpg")
    with csv_path.open("a") as f:
        f.write("dup,Tshirts,Men,12.00,copy of 3\n")
        f.write("broken,Bags,Men,1.00,no photo\n")

    r = run(home, "catalog", "import", str(csv_path), "--images", "images/{id}.jpg")
    assert r.exit_code == 1, r.output
    assert "21 added" in r.output and "1 failed" in r.output and "broken" in r.output

    r = run(home, "search", "--item", "6", "-k", "3", "--where", "articleType=Shoes", "--json")
    assert r.exit_code == 0, r.output
    hits = json.loads(r.output)
    assert len(hits) == 3 and all(h["attrs"]["articleType"] == "Shoes" and h["item_id"] != "6" for h in hits)

    r = run(home, "search", str(shop / "images" / "12.jpg"), "-k", "1", "--json")
    assert json.loads(r.output)[0]["item_id"] == "12"  # the photo itself is its own best match

    r = run(home, "duplicates", "--threshold", "0.99", "--json")
    assert r.exit_code == 0, r.output
    pairs = json.loads(r.output)
    assert {"a": "3", "b": "dup"} == {k: pairs[0][k] for k in ("a", "b")} and pairs[0]["score"] > 0.999

    out = tmp_path / "eval.json"
    r = run(home, "evaluate", "retrieval", "--label", "articleType", "-k", "3", "--json", str(out))
    assert r.exit_code == 0, r.output
    result = json.loads(out.read_text())
    assert {"items", "k", "label", "precision_at_k", "map_at_k", "group", "group_recall_at_k",
            "embedder", "index"} <= set(result)
    assert result["items"] == 21 and result["k"] == 3 and result["group_recall_at_k"] is None
    assert result["precision_at_k"] > 0.8

    r = run(home, "catalog", "remove", "dup", "ghost")
    assert r.exit_code == 1 and "removed 1" in r.output

    r = run(home, "search", "--item", "1", "--where", "colour")
    assert r.exit_code == 2 and "COLUMN=VALUE" in r.output


def test_import_errors_exit_2_with_a_message(home, tmp_path):
    (tmp_path / "x.csv").write_text("sku;name\n1;a\n")
    r = run(home, "catalog", "import", str(tmp_path / "x.csv"), "--images", "{sku}.jpg")
    assert r.exit_code == 2 and "no id column 'id'" in r.output and "sku" in r.output


def test_adapt_then_init_a_home_with_the_adapter(home, tmp_path, model_cache):
    shop = tmp_path / "shop"
    csv_path = write_catalog(shop, n_per_class=6)
    assert run(home, "catalog", "import", str(csv_path), "--images", "images/{id}.jpg").exit_code == 0
    adapter = tmp_path / "adapter.npz"
    r = run(home, "adapt", "--label", "articleType", "--out", str(adapter))
    assert r.exit_code == 0, r.output
    assert adapter.exists()

    from stylesense.vision.adapter import Adapter

    assert Adapter.load(adapter).info["features"] == {"embedder": "lite0", "image_fit": "letterbox", "pooling": "gem"}
    adapted = tmp_path / "adapted"
    adapted.mkdir()
    (adapted / "models").symlink_to(model_cache, target_is_directory=True)
    r = run(adapted, "init", "--embedder", "lite2", "--adapter", str(adapter))
    assert r.exit_code == 2 and "trained on 'lite0' features" in r.output
    assert run(adapted, "init", "--adapter", str(adapter)).exit_code == 0
    assert run(adapted, "catalog", "import", str(csv_path), "--images", "images/{id}.jpg").exit_code == 0
    out = tmp_path / "eval.json"
    run(home, "evaluate", "retrieval", "--label", "articleType", "-k", "5", "--json", str(out))
    plain = json.loads(out.read_text())
    run(adapted, "evaluate", "retrieval", "--label", "articleType", "-k", "5", "--json", str(out))
    result = json.loads(out.read_text())
    assert plain["embedder"] == "lite0" and result["embedder"] == "lite0+adapter"
    assert result["precision_at_k"] >= plain["precision_at_k"]  # trained on these very labels

    # a filled home cannot silently switch models
    r = run(home, "init", "--adapter", str(adapter))
    assert r.exit_code == 2 and "already holds a catalogue" in r.output

    r = run(home, "evaluate", "retrieval", "--label", "articleType", "-k", "3", "--adapt", "--json", str(out))
    assert r.exit_code == 0, r.output
    result = json.loads(out.read_text())
    assert result["items"] < 24 and result["embedder"].endswith("adapter(split)")


def test_homes_from_before_the_recorded_recipe_keep_embedding_their_way(tmp_path):
    """A config.json without image_fit/pooling was written by the square, mean-pooled recipe:
    loading it, or re-initialising the filled home, must not switch its vectors' recipe."""
    from stylesense.engine import StyleSense
    from stylesense.home import Home

    home = Home(tmp_path / "old")
    home.root.mkdir()
    home.config_path.write_text(json.dumps({"embedder": "lite0", "adapter": None, "index_kind": "auto"}))
    ss = StyleSense(home.root)
    assert (ss.config.image_fit, ss.config.pooling) == ("square", "mean")
    fresh = StyleSense.init(tmp_path / "new")
    assert (fresh.config.image_fit, fresh.config.pooling) == ("letterbox", "gem")


def test_bad_prices_are_reported_and_price_filters_keep_working(home, tmp_path):
    shop = tmp_path / "shop"
    csv_path = write_catalog(shop, n_per_class=4)
    text = csv_path.read_text().splitlines()
    for line, price in ((1, "N/A"), (2, "$12"), (6, '"12,50"')):  # ids 1, 2 and 6
        cells = text[line].split(",")
        text[line] = ",".join([*cells[:3], price, *cells[4:]])
    csv_path.write_text("\n".join(text) + "\n")

    r = run(home, "catalog", "import", str(csv_path), "--images", "images/{id}.jpg")
    assert r.exit_code == 1, r.output  # like failed rows: someone must look at them
    assert "16 added" in r.output and "0 failed" in r.output and "3 rows imported with a cell left empty" in r.output
    assert "row 7 (id 6): column 'price': '12,50' is not a number" in r.output

    r = run(home, "search", "--item", "9", "-k", "16", "--min-price", "15", "--max-price", "25", "--json")
    assert r.exit_code == 0, r.output
    prices = [h["attrs"]["price"] for h in json.loads(r.output)]
    assert len(prices) == 10 and all(15 <= p <= 25 for p in prices)  # it used to be []

    r = run(home, "search", "--item", "9", "--min-price", "nan")
    assert r.exit_code == 2 and "--min-price must be a finite number" in r.output
    r = run(home, "search", "--item", " 9 ")
    assert r.exit_code == 2 and "leading or trailing whitespace" in r.output


def test_devices_and_fifos_are_refused_not_read_forever(home, tmp_path):
    fifo = tmp_path / "photo.jpg"
    os.mkfifo(fifo)
    odd = tmp_path / "odd.csv"
    odd.write_text(f"id,photo\nz,/dev/zero\nf,{fifo}\n")
    r = within(60, lambda: run(home, "catalog", "import", str(odd), "--images", "{photo}"))
    assert r.exit_code == 1, r.output
    assert "(id z): cannot read /dev/zero: not a regular file (character device)" in r.output
    assert "(id f): cannot read" in r.output and "not a regular file (pipe (FIFO))" in r.output
    r = within(60, lambda: run(home, "catalog", "import", "/dev/zero", "--images", "{id}.jpg"))
    assert r.exit_code == 2 and "not a regular file (character device)" in r.output

    write_catalog(tmp_path / "shop", n_per_class=1)
    shop = tmp_path / "shop" / "styles.csv"
    assert run(home, "catalog", "import", str(shop), "--images", "images/{id}.jpg").exit_code == 0
    r = within(60, lambda: run(home, "search", "/dev/zero"))
    assert r.exit_code == 2 and "not a regular file (character device)" in r.output  # was "empty file"


def test_events_commands_check_what_they_are_given(tmp_path):
    home = tmp_path / "home"
    log = tmp_path / "log.csv"
    log.write_bytes("user,sku,when\nmüller,a,2024-01-01\n".encode("latin-1"))
    args = ("events", "import", str(log), "--user-column", "user", "--item-column", "sku",
            "--time-column", "when", "--type", "view")
    r = run(home, *args)
    assert r.exit_code == 2 and "pass --encoding" in r.output
    r = run(home, *args, "--encoding", "latin-1")  # the option the message recommends
    assert r.exit_code == 0 and "1 imported" in r.output, r.output

    r = run(home, "events", "add", "--user", "  padded  ", "--item", "a")
    assert r.exit_code == 2 and "user id '  padded  ' has leading or trailing whitespace" in r.output
    r = run(home, "events", "add", "--user", "alice", "--item", "a", "--price=-1")
    assert r.exit_code == 2 and "price must be a finite number >= 0" in r.output
    r = run(home, "events", "add", "--user", "alice", "--item", "a", "--type", "rating", "--value", "4")
    assert r.exit_code == 0, r.output
    events = StyleSense(home).behaviour.events.frame()
    assert events[["user_id", "item_id", "type"]].values.tolist() == [
        ["müller", "a", "view"], ["alice", "a", "rating"]]
    assert events["value"].isna().tolist() == [True, False] and events["value"].iloc[1] == 4.0

    r = run(home, "events", "weights", "purchse=10")
    assert r.exit_code == 2 and "unknown event type 'purchse'" in r.output and "did you mean 'purchase'?" in r.output
    assert "purchase=8" in run(home, "events", "weights").output  # nothing changed
    r = run(home, "events", "weights", "wishlist=3", "--new-type")
    assert r.exit_code == 0 and "wishlist=3" in r.output
