"""`stylesense experiment create|list|stop|report|online` end to end on a real home: the
report's table, JSON file and chart; refusals as one error line with exit status 2."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from stylesense.cli import app
from stylesense.engine import StyleSense
from stylesense.events import NewEvent

from recsys_fixtures import block_shop

runner = CliRunner()


def run(home, *args):
    return runner.invoke(app, ["--home", str(home), *args])


def said(result) -> str:
    """The output with rich's line wrapping undone."""
    return " ".join(result.output.split())


def test_create_serve_report_stop(tmp_path):
    home = tmp_path / "home"
    ss = block_shop(home, 60, 40, 4, 6, seed=2)
    ss.behaviour.train("popular")
    ss.behaviour.train("itemknn", {"threads": 1})

    r = run(home, "experiment", "create", "cli-ab", "--arms", "popular,itemknn", "--split", "70,30",
            "--metric", "revenue", "--window-hours", "12")
    assert r.exit_code == 0, r.output
    assert "experiment cli-ab running: popular 70%, itemknn 30%; decided on revenue, window 12 h" in said(r)
    r = run(home, "experiment", "create", "again", "--arms", "popular,itemknn")
    assert r.exit_code == 2 and "error: experiment 'cli-ab' is running" in said(r)

    ss = StyleSense(home, threads=1)
    for n, user in enumerate(ss.behaviour.events.users()[:20]):
        served = ss.experiments.recommend_for(user, 4)
        if n == 0:  # the CLI's way of answering an impression
            r = run(home, "events", "add", "--user", user, "--item", served.items[0].item_id, "--type", "purchase",
                    "--price", "12.5", "--impression-id", served.impression_id)
            assert r.exit_code == 0, r.output
            assert ss.behaviour.events.events(user_id=user)[-1].impression_id == served.impression_id
            continue
        ss.behaviour.add_events([NewEvent(user, served.items[0].item_id, "purchase", price=12.5,
                                          impression_id=served.impression_id)])

    r = run(home, "experiment", "list", "--json")
    assert r.exit_code == 0, r.output
    assert [(e["name"], e["status"], e["split"]) for e in json.loads(r.output)] == [("cli-ab", "running", [0.7, 0.3])]
    out, png = tmp_path / "report.json", tmp_path / "report.png"
    r = run(home, "experiment", "report", "cli-ab", "--json", str(out), "--plot", str(png))
    assert r.exit_code == 0, r.output
    assert "revenue per shopper *" in said(r) and "shoppers per arm match the split" in said(r)
    report = json.loads(out.read_text())
    assert report == ss.experiments.report("cli-ab").to_dict() | {"as_of": report["as_of"]}
    assert sum(a["purchases"] for a in report["arms"]) == 20 and sum(a["revenue"] for a in report["arms"]) == 250.0
    assert png.read_bytes()[:4] == b"\x89PNG"
    r = run(home, "experiment", "online", "--json")
    assert r.exit_code == 0 and sum(m["positive"] for m in json.loads(r.output)) == 20

    r = run(home, "experiment", "stop", "cli-ab")
    assert r.exit_code == 0 and "experiment cli-ab stopped at" in said(r)
    r = run(home, "experiment", "list")
    assert r.exit_code == 0 and "0 running, 1 stopped" in said(r)
    r = run(home, "experiment", "report", "nope")
    assert r.exit_code == 2 and "error: experiment 'nope' not found" in said(r)
