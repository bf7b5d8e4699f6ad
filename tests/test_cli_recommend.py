"""The behaviour commands end to end: events import/add, train, recommend (--json, batch),
evaluate recommenders (JSON + plot), tune; exit codes on bad input."""

import csv
import json

import pandas as pd
from typer.testing import CliRunner

from stylesense.cli import app

from recsys_fixtures import block_events, block_of

runner = CliRunner()


def run(home, *args):
    return runner.invoke(app, ["--home", str(home), *args])


def write_log(path, **kw):
    events = block_events(n_users=120, n_items=60, n_blocks=3, per_user=8, types=("view", "cart", "purchase"), **kw)
    events["day"] = pd.to_datetime(events["ts"], unit="s").dt.strftime("%Y-%m-%d %H:%M:%S")
    events.rename(columns={"user_id": "shopper", "item_id": "sku", "type": "action"})[
        ["shopper", "sku", "action", "day"]
    ].to_csv(path, index=False)
    return events


def test_events_train_recommend_evaluate(tmp_path):
    home = tmp_path / "home"
    log = tmp_path / "log.csv"
    write_log(log)
    args = ("events", "import", str(log), "--user-column", "shopper", "--item-column", "sku",
            "--time-column", "day", "--type-column", "action")
    r = run(home, *args)
    assert r.exit_code == 0, r.output
    assert "960 imported" in r.output
    r = run(home, *args)
    assert "0 imported, 960 already stored" in r.output

    r = run(home, "train", "--model", "itemknn", "--param", "neighbours=20")
    assert r.exit_code == 0, r.output
    assert '"neighbours": 20' in r.output

    for i in (1, 4, 7, 10):
        assert run(home, "events", "add", "--user", "walk-in", "--item", f"b1_i{i}").exit_code == 0
    r = run(home, "recommend", "--user", "walk-in", "-k", "4", "--json")
    assert r.exit_code == 0, r.output
    recs = json.loads(r.output)
    assert len(recs) == 4 and all(block_of(x["item_id"]) == 1 for x in recs)
    assert all(x["reason"].startswith("similar to b1_i") for x in recs)

    out = tmp_path / "batch.csv"
    r = run(home, "recommend", "batch", "--model", "itemknn", "-k", "3", "--out", str(out))
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 121 * 3 and rows[0]["rank"] == "1"

    report, plot = tmp_path / "eval.json", tmp_path / "eval.png"
    r = run(home, "evaluate", "recommenders", "--protocol", "stratified", "--models", "popular,itemknn",
            "-k", "5", "--json", str(report), "--plot", str(plot))
    assert r.exit_code == 0, r.output
    result = json.loads(report.read_text())
    assert result["protocol"] == "stratified" and result["k"] == 5
    assert result["models"]["itemknn"]["ndcg_at_k"] > result["models"]["popular"]["ndcg_at_k"]
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    r = run(home, "tune", "--model", "trending", "--protocol", "temporal", "--trials", "2", "--test-days", "3")
    assert r.exit_code == 0, r.output
    assert "half_life_days" in r.output


def test_bad_input_exits_cleanly(tmp_path):
    home = tmp_path / "home"
    log = tmp_path / "log.csv"
    log.write_text("shopper,sku,day\nu1,i1,2024-01-01\nu2,,2024-01-02\nu3,i3,someday\n")
    r = run(home, "events", "import", str(log), "--user-column", "shopper", "--item-column", "sku",
            "--time-column", "day", "--type", "purchase")
    assert r.exit_code == 1
    assert "1 imported" in r.output and "2 failed" in r.output and "line 3" in r.output

    r = run(home, "events", "import", str(log), "--user-column", "customer", "--item-column", "sku",
            "--time-column", "day", "--type", "purchase")
    assert r.exit_code == 2 and "customer" in r.output

    r = run(home, "events", "import", str(log))
    assert r.exit_code == 2 and "--preset" in r.output

    assert run(home, "events", "add", "--user", "u", "--item", "i", "--type", "teleport").exit_code == 2
    assert run(home, "recommend", "--user", "u1").exit_code == 2  # nothing trained yet
    r = run(home, "train", "--model", "als", "--param", "factors=many")
    assert r.exit_code == 2 and "factors" in r.output
    assert run(home, "train", "--model", "nonsense").exit_code == 2
    assert run(home, "evaluate", "recommenders", "--protocol", "sideways", "--models", "popular").exit_code == 2


def test_event_weights_are_configurable(tmp_path):
    home = tmp_path / "home"
    assert "purchase=8" in run(home, "events", "weights").output
    assert run(home, "events", "add", "--user", "u", "--item", "i", "--type", "wishlist").exit_code == 2
    r = run(home, "events", "weights", "purchase=20", "wishlist=3", "--new-type")
    assert r.exit_code == 0 and "purchase=20" in r.output and "wishlist=3" in r.output
    assert run(home, "events", "add", "--user", "u", "--item", "i", "--type", "wishlist").exit_code == 0
    assert run(home, "events", "add", "--user", "u", "--item", "j", "--type", "purchase").exit_code == 0
    assert run(home, "train", "--model", "popular").exit_code == 0
    from stylesense.engine import StyleSense

    matrix = StyleSense(home).behaviour.model("popular").data.matrix
    assert sorted(matrix.data.tolist()) == [3.0, 20.0]
    assert run(home, "events", "weights", "view=abc").exit_code == 2
