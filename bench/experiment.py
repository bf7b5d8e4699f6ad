"""Offline winner vs online winner: a simulated A/B test on the shared H&M sample, through the API.

    python bench/experiment.py [--arms popular,visual] [--test-days 84] [-k 12]
                               [--base-click 0.01] [--base-buy 0.0005] [--seed 0]
                               [--out bench/results/experiment.json]

1. A copy of the H&M home (bench/results/homes/hm: its 4,116 embedded articles and 30,451
   purchases; built from ../shared/data/hm where missing) in bench/results/homes/experiment,
   made afresh each run: the original is never touched.
2. Offline: `evaluate recommenders` on it, temporal protocol (the last ``--test-days`` are the
   test), k 12, seen items included (the H&M preset's choice); the offline winner is the arm
   with the higher MAP@12.
3. The copy's test-window events are deleted (the replay sends them live), every arm is
   trained on the training side alone, and an experiment between the arms (the first is the
   control, 50/50, decided on conversion) is created through ``POST /v1/experiments``.
4. The replay (:mod:`stylesense.experiments.simulate`): each held-out shopper visits on each
   day they bought something, in calendar order, through a real `stylesense serve` (one worker,
   one thread) driven with httpx: a recommended product among their remaining held-out
   purchases is viewed, carted and bought at its real price; any other is viewed with
   probability ``--base-click`` and bought with ``--base-buy`` (priced at its median training
   price); what they bought that day and were not shown is bought anyway (organic).
5. The report (``GET /v1/experiments/{name}/report``): per arm, rates with 95 % intervals and
   p-values (z-test; Welch for revenue), the sample-ratio check; and whether the offline
   winner is the online one.

Prints the offline and online tables; writes everything to ``--out``.

Why 84 test days by default, not the 28 of docs/recommenders.md: the sample's last 28 days
hold 245 shoppers, of whom any model's top 12 reaches about 15; split in two arms, no real
difference between models can reach p < 0.05 there (``--test-days 28 --arms trending,visual``
measured p 0.80 on conversion, with visual ahead). The last 84 days hold 497 shoppers and 4,158
purchases.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

from stylesense.serving.process import THREADS, ServerProcess  # imports no numpy

os.environ.update(THREADS)  # before numpy loads

import httpx  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from common import RESULTS, ROOT, write_json  # noqa: E402

DATA = Path(os.environ.get("STYLESENSE_SHARED_DATA", ROOT / ".." / "shared" / "data"))
SOURCE = RESULTS / "homes" / "hm"
HOME = RESULTS / "homes" / "experiment"
NAME = "hm-replay"
OFFLINE = ("map_at_k", "recall_at_k", "hit_rate_at_k", "hits", "revenue_at_k")
ONLINE = ("ctr", "conversion_rate", "revenue_per_shopper", "revenue_per_impression")


def fresh_home() -> Path:
    """bench/results/homes/experiment: a copy of the H&M home, or one built from the shared data."""
    from stylesense.engine import StyleSense

    if HOME.exists():
        shutil.rmtree(HOME)
    if (SOURCE / "config.json").exists():
        shutil.copytree(SOURCE, HOME, symlinks=True)
        return HOME
    if not (DATA / "hm" / "transactions.csv").exists():
        sys.exit(f"bench/experiment.py needs {SOURCE} or the shared H&M sample under {DATA / 'hm'}")
    from stylesense.datasets import hm_articles

    ss = StyleSense(HOME, threads=1)
    source = hm_articles(DATA / "hm")
    ss.import_catalog(source.csv, source.image_template, id_column=source.id_column)
    ss.behaviour.import_events(DATA / "hm" / "transactions.csv", preset="hm")
    return HOME


def offline(ss, arms: list[str], k: int, test_days: float) -> dict:
    result = ss.behaviour.evaluate("temporal", arms, k=k, test_days=test_days, tuned=False)
    Console(width=160).print(result.table())
    return {"split": result.split, "exclude_seen": result.exclude_seen,
            "models": {m: {key: result.models[m][key] for key in OFFLINE} for m in arms}}


def hold_out(ss, test_days: float):
    """Delete the test window's events from the home (the replay sends them live); return them,
    with the training side's median price per article (what a base-rate purchase costs)."""
    from sqlalchemy import delete

    from stylesense.evaluation.splits import split
    from stylesense.events.store import EventRow

    events = ss.behaviour.events.frame()
    train, test = split(events, "temporal", test_days=test_days)
    cutoff_us = int(test["ts"].min().value // 1000)
    with ss.store.engine.begin() as conn:
        gone = conn.execute(delete(EventRow.__table__).where(EventRow.__table__.c.ts_us >= cutoff_us)).rowcount
    assert gone == len(events) - len(train), (gone, len(events), len(train))
    prices = train.groupby("item_id")["price"].median().dropna().to_dict()
    return train, test, prices


def online_table(report: dict) -> Table:
    table = Table(title=f"simulated A/B through the API: {report['experiment']['name']}, control {report['control']}, "
                        f"winner {report['winner']}")
    for col in ("arm", "shoppers", "impressions", "purchases", "revenue", "CTR", "conversion", "p (conv.)",
                "revenue/shopper", "p (Welch)", "revenue/impression"):
        table.add_column(col, justify="right")
    for a in report["arms"]:
        def est(key: str) -> str:
            e = a[key]
            return "-" if e["value"] is None else f"{e['value']:.4f} [{e['low']:.4f}, {e['high']:.4f}]"

        def p(key: str) -> str:
            return "-" if a[key]["p_value"] is None else f"{a[key]['p_value']:.3g}"

        table.add_row(a["arm"], str(a["shoppers"]), str(a["impressions"]), str(a["purchases"]), f"{a['revenue']:.3f}",
                      est("ctr"), est("conversion_rate"), p("conversion_rate"), est("revenue_per_shopper"),
                      p("revenue_per_shopper"), est("revenue_per_impression"))
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arms", default="popular,visual", help="two models, the control first")
    parser.add_argument("--test-days", type=float, default=84.0)
    parser.add_argument("-k", type=int, default=12)
    parser.add_argument("--base-click", type=float, default=0.01, help="chance a shown product is viewed anyway")
    parser.add_argument("--base-buy", type=float, default=0.0005, help="chance a shown product is bought anyway")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS / "experiment.json")
    args = parser.parse_args()
    arms = [a.strip() for a in args.arms.split(",") if a.strip()]

    from stylesense.engine import StyleSense
    from stylesense.experiments.simulate import replay_shoppers, simulate
    from stylesense.serving.keys import KeyStore

    started = time.perf_counter()
    home = fresh_home()
    ss = StyleSense(home, threads=1)
    before = offline(ss, arms, args.k, args.test_days)
    offline_winner = max(arms, key=lambda m: before["models"][m]["map_at_k"])
    train, test, prices = hold_out(ss, args.test_days)
    fits = {}
    for arm in arms:
        _, fits[arm] = ss.behaviour.train(arm)
    shoppers = replay_shoppers(test)
    keys = KeyStore(ss.store.engine)
    admin = {"X-API-Key": keys.create("admin", name="bench-experiment")[0]}
    ss.store.engine.dispose()

    server = ServerProcess(home, RESULTS / "experiment-server.log", workers=1)
    server.start()
    try:
        with httpx.Client(base_url=server.url, timeout=120) as client:
            r = client.post("/v1/experiments", json={"name": NAME, "arms": arms, "split": [50, 50],
                                                     "metric": "purchase", "window_hours": 24}, headers=admin)
            r.raise_for_status()
            sim = simulate(client, shoppers, k=args.k, base_click=args.base_click, base_buy=args.base_buy,
                           prices=prices, seed=args.seed, headers=admin)
            report = client.get(f"/v1/experiments/{NAME}/report", headers=admin).json()
            online_rates = client.get("/v1/online-evaluation", headers=admin).json()
    finally:
        server.stop()

    console = Console(width=200)
    console.print(online_table(report))
    by_arm = {a["arm"]: a for a in report["arms"]}
    treatment = arms[1]
    p_conv = by_arm[treatment]["conversion_rate"]["p_value"]
    p_rev = by_arm[treatment]["revenue_per_shopper"]["p_value"]
    online_leader = max(arms, key=lambda m: by_arm[m]["conversion_rate"]["value"] or 0.0)
    agree = online_leader == offline_winner
    console.print(f"offline winner (MAP@{args.k}): {offline_winner}; online leader on conversion: {online_leader} "
                  f"(significant winner: {report['winner']}); conversion p={p_conv:.3g}, revenue/shopper "
                  f"p={p_rev:.3g}; SRM p={report['srm']['p_value']:.3g}; "
                  f"{'the offline winner wins online' if agree else 'OFFLINE AND ONLINE DISAGREE'}", highlight=False)
    console.print(f"replay: {sim.shoppers} shoppers, {sim.visits} visits, {sim.events} events sent, "
                  f"{sim.organic} organic purchases, {sim.seconds:.0f} s; hits per arm "
                  f"{ {a: t.hits for a, t in sim.arms.items()} }", highlight=False)
    write_json(args.out, {
        "config": {"arms": arms, "test_days": args.test_days, "k": args.k, "base_click": args.base_click,
                   "base_buy": args.base_buy, "seed": args.seed, "experiment": NAME, "split": [0.5, 0.5],
                   "train_events": len(train), "test_events": len(test), "server_workers": 1},
        "offline": before, "offline_winner": offline_winner, "fit_seconds": {a: round(s, 2) for a, s in fits.items()},
        "simulation": sim.to_dict(), "report": report, "online_evaluation": online_rates,
        "online_leader": online_leader, "online_winner": report["winner"],
        "p_value_conversion": p_conv, "p_value_revenue_per_shopper": p_rev,
        "offline_winner_wins_online": agree, "seconds": round(time.perf_counter() - started, 1),
    })


if __name__ == "__main__":
    main()
