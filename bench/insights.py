"""How long each dashboard figure (stylesense.insights) takes on real and large event logs.

    python bench/insights.py [--rounds 5] [--events 1200000] [--only hm movielens large]

Three homes, kept under bench/results/homes/ so a rerun skips the imports:

- ``insights-hm``: the shared H&M sample, 30,451 priced purchases (the `hm` preset) and the
  4,116 articles' metadata as the catalogue (no photos: no figure reads them).
- ``insights-movielens``: MovieLens-100K's 100,000 ratings (the `movielens` preset) and its
  1,682 movies' metadata: no purchases, so revenue is None throughout.
- ``insights-large``: ``--events`` synthetic events on the H&M catalogue (views 80 %, carts 12 %,
  purchases 8 % priced as in the H&M log), 100,000 shoppers of Zipf-like activity, products
  drawn as often as H&M sells them, over two years: what a live shop's log grows to.

Each function runs once on a freshly opened home (``first``: the trending counts are made
then), then ``--rounds`` more times (``median``, ``min``). Single-threaded SQLite reads; the
JSON records the load average, since the machine's 2 cores are shared.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.update({k: "1" for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")})

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from common import RESULTS, ROOT, write_json  # noqa: E402

DATA = Path(os.environ.get("STYLESENSE_SHARED_DATA", ROOT / ".." / "shared" / "data"))
HOMES = RESULTS / "homes"


def catalogue(ss: Any, rows: pd.DataFrame, id_column: str) -> None:
    """Store ``rows`` as catalogue metadata without photos, typed as a catalogue import types
    them (ids and zero-padded codes stay text)."""
    from stylesense.catalog.csvtable import Table, column_types, typed
    from stylesense.catalog.store import Upsert

    records = rows.astype(str).to_dict("records")
    table = Table(list(rows.columns), [(i + 2, r) for i, r in enumerate(records)], [], ",")
    types = column_types(table, numeric=[ss.config.price_column])
    ss.store.upsert([Upsert(r[id_column], typed(r, types, {id_column})[0], None, None, None) for r in records])


def hm_home() -> Any:
    from stylesense.engine import StyleSense

    ss = StyleSense(HOMES / "insights-hm")
    if not ss.behaviour.events.count():
        ss.behaviour.import_events(DATA / "hm" / "transactions.csv", preset="hm")
    if not ss.store.count():
        catalogue(ss, pd.read_csv(DATA / "hm" / "articles.csv", dtype=str, keep_default_na=False), "article_id")
    return ss


def movielens_home() -> Any:
    from stylesense.datasets import read_atomic
    from stylesense.engine import StyleSense

    ss = StyleSense(HOMES / "insights-movielens")
    if not ss.behaviour.events.count():
        ss.behaviour.import_events(DATA / "movielens-100k" / "ml-100k.inter", preset="movielens")
    if not ss.store.count():
        catalogue(ss, read_atomic(DATA / "movielens-100k" / "ml-100k.item"), "item_id")
    return ss


def large_home(n: int) -> Any:
    """The synthetic log (see the module docstring), drawn with a fixed seed."""
    from stylesense.engine import StyleSense

    ss = StyleSense(HOMES / "insights-large")
    if ss.behaviour.events.count() < n:
        rng = np.random.default_rng(0)
        sold = pd.read_csv(DATA / "hm" / "transactions.csv", dtype={"article_id": str})
        items = sold["article_id"].to_numpy(str)[rng.integers(0, len(sold), n)]
        price = sold.groupby("article_id")["price"].median()
        users = rng.zipf(1.6, n) % 100_000
        kind = rng.choice(np.array(["view", "cart", "purchase"]), n, p=[0.80, 0.12, 0.08])
        start = pd.Timestamp("2022-01-01", tz="UTC").timestamp()
        events = pd.DataFrame({
            "user_id": pd.Series(users).map("u{}".format), "item_id": items, "type": kind,
            "ts": np.sort(start + rng.uniform(0, 730 * 86400, n)).round(),
            "price": np.where(kind == "purchase", price.reindex(items).to_numpy(), np.nan),
        })
        started = time.perf_counter()
        counts = ss.behaviour.events.import_frame(events)
        print(f"large: {counts.inserted} synthetic events stored in {time.perf_counter() - started:.0f} s")
        if not ss.store.count():
            catalogue(ss, pd.read_csv(DATA / "hm" / "articles.csv", dtype=str, keep_default_na=False), "article_id")
    return ss


def calls(category: str | None) -> dict[str, Callable[[Any], Any]]:
    from stylesense import insights

    out: dict[str, Callable[[Any], Any]] = {
        "summary": insights.summary,
        "activity W": lambda ss: insights.activity(ss, "W"),
        "activity M": lambda ss: insights.activity(ss, "M"),
        "events_by_type": insights.events_by_type,
        "sales_by_price_band": insights.sales_by_price_band,
        "top_products": insights.top_products,
        "top_products (all types)": lambda ss: insights.top_products(ss, type=None),
        "trending_products": insights.trending_products,
        "repurchase_rate": insights.repurchase_rate,
        "last_evaluation": insights.last_evaluation,
        "category_column": insights.category_column,
    }
    if category is not None:
        out["sales_by category"] = lambda ss: insights.sales_by(ss, category)
    return out


def measure(name: str, open_home: Callable[[], Any], rounds: int) -> dict:
    from stylesense import insights
    from stylesense.engine import StyleSense

    root = open_home().home.root
    ss = StyleSense(root)  # fresh: nothing counted yet
    facts = insights.summary(ss).to_dict()
    rows = {}
    for label, call in calls(insights.category_column(ss)).items():
        started = time.perf_counter()
        call(ss)
        first = time.perf_counter() - started
        times = []
        for _ in range(rounds):
            started = time.perf_counter()
            call(ss)
            times.append(time.perf_counter() - started)
        rows[label] = {"first_s": round(first, 4), "median_s": round(statistics.median(times), 4),
                       "min_s": round(min(times), 4)}
    return {"home": str(root.relative_to(ROOT)), "category_column": insights.category_column(ss),
            "summary": facts, "seconds": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--events", type=int, default=1_200_000, help="events of the large synthetic home")
    parser.add_argument("--only", nargs="*", choices=["hm", "movielens", "large"], default=["hm", "movielens", "large"])
    parser.add_argument("--out", type=Path, default=RESULTS / "insights.json")
    args = parser.parse_args()
    if not DATA.exists():
        sys.exit(f"no shared data at {DATA} (set STYLESENSE_SHARED_DATA)")
    homes = {"hm": hm_home, "movielens": movielens_home, "large": lambda: large_home(args.events)}
    load = [os.getloadavg()[0]]
    results = {name: measure(name, homes[name], args.rounds) for name in args.only}
    load.append(os.getloadavg()[0])

    names = list(args.only)
    labels = list(dict.fromkeys(label for r in results.values() for label in r["seconds"]))
    print(f"\nseconds, first call / median of {args.rounds} (load {load[0]:.2f} -> {load[1]:.2f})")
    heads = [f"{n} ({results[n]['summary']['events']:,} events)" for n in names]
    print(f"{'function':<28}" + "".join(f"{h:>30}" for h in heads))
    for label in labels:
        cells = []
        for n in names:
            row = results[n]["seconds"].get(label)
            cells.append(f"{row['first_s']:.3f} / {row['median_s']:.3f}" if row else "-")
        print(f"{label:<28}" + "".join(f"{c:>30}" for c in cells))
    write_json(args.out, {"rounds": args.rounds, "load_avg_before_after": [round(x, 2) for x in load],
                          "cpu_count": os.cpu_count(), "results": results})


if __name__ == "__main__":
    main()
