"""Integration on the real shared data (subsets, to keep the suite quick); skipped where absent."""

import csv
import json
from pathlib import Path

from typer.testing import CliRunner

from stylesense.cli import app

runner = CliRunner()


def subset(src: Path, dest: Path, n: int, every: int = 1) -> Path:
    with src.open(newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader)
        rows = [r for i, r in enumerate(reader) if i % every == 0][:n]
    with dest.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return dest


def run(home, *args):
    return runner.invoke(app, ["--home", str(home), "--threads", "2", *args])


def test_kaggle_subset_import_search_evaluate(shared_data, home, tmp_path):
    root = shared_data / "fashion-product-images"
    csv_path = subset(root / "styles.csv", tmp_path / "styles.csv", 400, every=20)
    r = run(home, "catalog", "import", str(csv_path), "--images", f"{root}/images/{{id}}.jpg")
    assert r.exit_code == 0, r.output
    assert "400 added" in r.output

    r = run(home, "search", "--item", "10000", "-k", "5", "--where", "gender=Women", "--json")
    hits = json.loads(r.output)
    assert len(hits) == 5 and all(h["attrs"]["gender"] == "Women" for h in hits)

    out = tmp_path / "eval.json"
    r = run(home, "evaluate", "retrieval", "--label", "masterCategory", "--json", str(out))
    assert r.exit_code == 0, r.output
    result = json.loads(out.read_text())
    # off-the-shelf ImageNet features separate apparel / footwear / accessories well
    assert result["items"] == 400 and result["precision_at_k"] > 0.85


def test_hm_subset_keeps_leading_zero_ids_and_finds_colour_variants(shared_data, home, tmp_path):
    root = shared_data / "hm"
    csv_path = subset(root / "articles.csv", tmp_path / "articles.csv", 300)
    r = run(home, "catalog", "import", str(csv_path), "--id-column", "article_id",
            "--images", f"{root}/images/{{article_id:.3}}/{{article_id}}.jpg")
    assert r.exit_code == 0, r.output
    r = run(home, "search", "--item", "0111565001", "-k", "3", "--json")
    hits = json.loads(r.output)
    assert len(hits) == 3 and all(len(h["item_id"]) == 10 and h["item_id"].startswith("0") for h in hits)
    out = tmp_path / "eval.json"
    r = run(home, "evaluate", "retrieval", "--label", "product_group_name", "--group", "product_code",
            "--json", str(out))
    result = json.loads(out.read_text())
    assert result["group"] == "product_code" and result["group_recall_at_k"] is not None
    assert result["precision_at_k"] > 0.5


def test_hm_purchases_temporal_evaluation_and_live_recommend(shared_data, tmp_path):
    """The whole behaviour path on the real H&M log: preset import (article ids keep their
    leading zero; repeat purchases kept), the preset's include-seen default, the 28-day temporal
    protocol with cold users in their own row, and a live event moving one shopper's list."""
    home = tmp_path / "home"
    r = run(home, "events", "import", str(shared_data / "hm" / "transactions.csv"), "--preset", "hm")
    assert r.exit_code == 0, r.output
    assert "30451 imported" in r.output
    report = tmp_path / "eval.json"
    r = run(home, "evaluate", "recommenders", "--protocol", "temporal", "--test-days", "28", "-k", "12",
            "--models", "popular,itemknn", "--json", str(report))
    assert r.exit_code == 0, r.output
    result = json.loads(report.read_text())
    assert result["exclude_seen"] is False  # the H&M preset's measured choice
    split = result["split"]
    assert split["train_events"] + split["test_events"] == 30451
    assert split["test_users"] > split["cold_users"] > 0
    assert set(result["cold"]) == {"popular", "itemknn"}
    assert result["models"]["popular"]["users"] == split["test_users"] - split["cold_users"]
    # personalised lists reach far more of the catalogue than one global list
    assert result["models"]["itemknn"]["coverage"] > 50 * result["models"]["popular"]["coverage"]
    assert all(row["hits"] > 0 for row in result["models"].values())

    assert run(home, "train", "--model", "itemknn").exit_code == 0
    before = json.loads(run(home, "recommend", "--user", "newcomer", "-k", "5", "--json").output)
    assert run(home, "events", "add", "--user", "newcomer", "--item", "0706016001", "--type", "cart").exit_code == 0
    after = json.loads(run(home, "recommend", "--user", "newcomer", "-k", "5", "--json").output)
    assert before != after and all(x["reason"].startswith("similar to 0706016001") for x in after)
