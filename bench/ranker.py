"""The ranker beside every single model and the repurchase heuristic (issue 13).

- H&M sample, protocol `temporal` (the last 28 days are the test), k=12, seen items included
  (the home's measured default): Recall@12 and MAP@12 of popular, trending, repurchase ("own
  purchases, most recent first, then this week's best sellers"), itemknn, als, bpr, ease,
  visual, neumf, gru4rec, blend and the ranker, each on the same split, with the parameters
  `bench/recommenders.py` tuned into the bench home where it has (else the defaults); the
  ranker's ratio to each; its candidate recall per source on the test (how many of the test
  purchases each source reaches), the feature importances and its fit report (windows, rows,
  each source's recall on the validation window).
- Serving: the ranker trained on every event through the home (`stylesense train --model
  ranker`), then single-shopper `recommend` calls as a front end makes them (candidates,
  features, the boosters, the checks for newer events and products), in one CPU thread as
  `stylesense serve` runs each worker: median and p95 ms; the fit's wall and CPU seconds.
- MovieLens-100K, its main protocol (stratified 75/25, seen items excluded, k=10) and temporal
  (the last 28 days), reported whatever they show: no photos and no product groups, so only the
  event sources run.

The homes are `bench/recommenders.py`'s (`bench/results/homes/hm`, `.../movielens`, made there
if missing: the H&M photos are embedded once). Writes bench/results/ranker.json.

    python bench/ranker.py [--only hm|movielens] [--threads 2] [--users 200] [--defaults]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
from threadpoolctl import threadpool_limits

from common import RESULTS, write_json
from recommenders import SETS, home_for

SINGLE = ["popular", "trending", "repurchase", "itemknn", "als", "bpr", "ease", "visual", "neumf", "gru4rec"]
KEYS = ("recall_at_k", "map_at_k", "ndcg_at_k", "hit_rate_at_k", "hits", "fit_seconds")


def evaluate(ss, name: str, tuned: bool, protocol: str | None = None, test_days: float | None = None) -> dict:
    """Every model and the ranker on one split (default: the data set's main one); the fitted
    ranker's candidate recall per source on the test, importances and report. The ranker reads
    the home's shopper profiles as `stylesense train` does (H&M: its customers.csv, imported by
    ``import_profiles``)."""
    from stylesense.evaluation.recommenders import run_protocol
    from stylesense.evaluation.splits import split
    from stylesense.recommenders import Interactions

    _, _, main, k, days, models = SETS[name]
    protocol, test_days = protocol or main, test_days or days
    b = ss.behaviour
    singles = [m for m in SINGLE if m in models or m == "repurchase"]
    if name == "movielens":
        singles = [m for m in singles if m != "visual"]
    ranker = b._build("ranker", b.tuned_params("ranker", protocol) if tuned else {}, protocol)
    specs = {**b._factories(singles + ["blend"], protocol, tuned), "ranker": ranker}
    events, seen = b._all_events(), b.exclude_seen
    started = time.perf_counter()
    result = run_protocol(events, protocol, specs, k=k, test_days=test_days, weights=b.weights,
                          items_universe=b._catalogue_ids(), exclude_seen=seen, recommendable=b.recommendable)
    seconds = time.perf_counter() - started
    rows = {m: {key: r[key] for key in KEYS} for m, r in result.models.items()}
    own = rows["ranker"]
    ratios = {m: {key: round(own[key] / r[key], 2) if r[key] else None for key in ("recall_at_k", "map_at_k")}
              for m, r in rows.items() if m != "ranker"}
    # candidate recall on the test, from the ranker evaluate fitted (same training side)
    train, test = split(events, protocol, test_days=test_days)
    data = Interactions.from_frame(train, b.weights, items=b._catalogue_ids())
    warm = test[test["user_id"].astype(str).isin(data.user_index)]
    pairs = warm.drop_duplicates(["user_id", "item_id"])
    users = pairs["user_id"].astype(str).map(data.user_index).to_numpy()
    found = dict(zip(np.unique(users).tolist(), ranker.candidates(np.unique(users))))
    reached = dict.fromkeys([*ranker.sources, "any"], 0)
    sizes = []
    for u, item in zip(users.tolist(), pairs["item_id"].astype(str)):
        i = data.item_index.get(item, -1)
        lists = found[u]
        for source in ranker.sources:
            reached[source] += int(i in set(lists[source][0].tolist()))
        reached["any"] += int(any(i in set(lists[s][0].tolist()) for s in ranker.sources))
    for lists in found.values():
        sizes.append(len(np.unique(np.concatenate([lists[s][0] for s in ranker.sources]))))
    recall = {s: round(n / max(1, len(pairs)), 4) for s, n in reached.items()}
    return {
        "protocol": protocol, "k": k, "test_days": test_days if protocol == "temporal" else None,
        "exclude_seen": seen, "tuned": tuned, "split": result.split, "models": rows, "ranker_ratio": ratios,
        "candidate_recall": {"test_pairs": len(pairs), "mean_candidates": round(float(np.mean(sizes)), 1), **recall},
        "importances": dict(list(ranker.feature_importances.items())[:25]), "ranker_report": ranker.report,
        "ranker_params": ranker.params, "seconds": round(seconds, 1),
    }


def import_profiles(ss, name: str) -> None:
    """The H&M customers' attributes (age, ...) into the home's shopper profiles, as
    `stylesense users import --preset hm customers.csv` does: what a shop knows of its
    shoppers beside their events. Re-importing changes nothing."""
    if name == "hm":
        ss.behaviour.import_profiles(SETS["hm"][1].parent / "customers.csv", id_column="customer_id")


def serving(ss, users: int, tuned: bool) -> dict:
    """Train on every event through the home, then time single-shopper recommendations."""
    b = ss.behaviour
    cpu = time.process_time()
    model, fit_seconds = b.train("ranker", b.tuned_params("ranker") if tuned else {})
    cpu = time.process_time() - cpu
    ids = model.user_ids[:users]
    times = []
    with threadpool_limits(1):  # as `stylesense serve` runs: one CPU thread per worker
        b.recommend(ids[0], 12, model="ranker")  # warm: the file is read once
        for user in ids:
            started = time.perf_counter()
            b.recommend(user, 12, model="ranker")
            times.append(1000 * (time.perf_counter() - started))
    return {"fit_seconds": round(fit_seconds, 1), "fit_cpu_seconds": round(cpu, 1),
            "recommend_ms_median": round(float(np.median(times)), 2),
            "recommend_ms_p95": round(float(np.percentile(times, 95)), 2), "users": len(ids),
            "report": model.report}


def table(name: str, run: dict) -> str:
    k = run["k"]
    lines = [f"{name}: {run['protocol']}, k={k}, exclude_seen={run['exclude_seen']}, "
             f"{run['split']['test_users']} test users ({run['split']['cold_users']} cold)",
             f"| model | Recall@{k} | MAP@{k} | nDCG@{k} | hits | fit s | ranker / model: recall, MAP |",
             "|---|---|---|---|---|---|---|"]
    for model, row in run["models"].items():
        ratio = run["ranker_ratio"].get(model)
        r = "" if ratio is None else f"{ratio['recall_at_k']}x, {ratio['map_at_k']}x"
        lines.append(f"| {model} | {row['recall_at_k']:.4f} | {row['map_at_k']:.4f} | {row['ndcg_at_k']:.4f} | "
                     f"{row['hits']} | {row['fit_seconds']:.1f} | {r} |")
    return "\n".join(lines)


def verdicts(results: dict) -> list[str]:
    out = []
    hm = results.get("hm", {}).get("main")
    if hm:
        worst = {key: min((r[key], m) for m, r in hm["ranker_ratio"].items() if m != "blend" and r[key] is not None)
                 for key in ("recall_at_k", "map_at_k")}
        for key, (ratio, model) in worst.items():
            out.append(f"H&M {key}: the ranker is {ratio}x the best single model or heuristic ({model}); "
                       "target >= 1.3x")
        serve = hm.get("serving")
        if serve:
            out.append(f"H&M ranker fit on every event {serve['fit_seconds']} s ({serve['fit_cpu_seconds']} s CPU); "
                       "target < 600 s on 2 cores")
            out.append(f"H&M ranker single-shopper recommend median {serve['recommend_ms_median']} ms, "
                       f"p95 {serve['recommend_ms_p95']} ms; target < 20 ms")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=sorted(SETS))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--users", type=int, default=200, help="shoppers timed one at a time")
    parser.add_argument("--defaults", action="store_true", help="ignore the parameters tuned into the bench homes")
    parser.add_argument("--serving-only", action="store_true",
                        help="H&M's fit and serving times alone (on a quiet machine); its evaluation kept from an earlier run")
    args = parser.parse_args()
    names = [args.only] if args.only else list(SETS)
    missing = [n for n in names if not SETS[n][1].is_file()]
    if missing:
        print(f"skipped: shared data for {', '.join(missing)} not found")
        names = [n for n in names if n not in missing]
        if not names:
            return 0
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    results: dict = {"threads": args.threads, "load_before": os.getloadavg()}
    out = RESULTS / "ranker.json"
    earlier = json.loads(out.read_text()) if out.exists() else {}
    if args.serving_only:
        if "main" not in earlier.get("hm", {}):
            sys.exit("--serving-only keeps an earlier H&M evaluation: run `bench/ranker.py --only hm` first")
        names = ["hm"]
    with threadpool_limits(args.threads):
        for name in names:
            ss = home_for(name, args.threads)
            import_profiles(ss, name)
            if args.serving_only:
                load = os.getloadavg()[0]
                results["hm"] = earlier["hm"]
                results["hm"]["main"]["serving"] = {**serving(ss, args.users, not args.defaults), "threads": args.threads,
                                                    "loadavg_before": round(load, 2),
                                                    "loadavg_after": round(os.getloadavg()[0], 2)}
                continue
            runs = {"main": evaluate(ss, name, not args.defaults)}
            if name == "movielens":  # the ranker's own kind of question: the next weeks
                runs["temporal"] = evaluate(ss, name, not args.defaults, "temporal", 28)
            if name == "hm":
                runs["main"]["serving"] = serving(ss, args.users, not args.defaults)
            results[name] = runs
            for label, run in runs.items():
                print(table(f"{name} ({label})", run))
                print("candidate recall on the test:", run["candidate_recall"])
                print("top importances:", list(run["importances"].items())[:10])
    results["load_after"] = os.getloadavg()
    # keep the other data set's results from an earlier run
    results = {**{n: earlier[n] for n in SETS if n in earlier and n not in results}, **results}
    results["verdicts"] = verdicts(results)
    print("\n".join(results["verdicts"]))
    write_json(out, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
