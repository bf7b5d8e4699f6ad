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
