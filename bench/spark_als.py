"""Spark ALS against the local (implicit) ALS on MovieLens-100K: the same factors,
regularisation, alpha and iterations, the same split (stratified 75/25, seed 42), k=10, seen
items excluded. Prints nDCG@10 (and recall@10, MAP@10) with both fit times; writes
bench/results/spark_als.json.

The Spark fit includes its per-fit overhead (the Parquet export, a Spark context on an already
started JVM, writing and reading the factors back); the JVM's own start is timed apart.

    python bench/spark_als.py [--master local[2]] [--factors 64 --regularization 10 ...]

``--scale 1e5,3e5,1e6,3e6`` instead times both fits on synthetic implicit events of those sizes
(no quality: there is no held-out truth worth the name in synthetic data) and fits
``seconds = a + b * events`` to each engine's times by least squares: ``a`` is the fixed cost
(Spark: jobs, shuffles and task start-up every iteration), ``b * 1e9 * cores`` the core-seconds
per billion events, which the capacity plan in docs/scaling.md divides over a cluster's cores
(an extrapolation: it assumes Spark keeps scaling linearly in events and in cores, and a
cluster's network shuffles cost more than local[2]'s in-process ones). Writes
bench/results/spark_als_scale.json; the driver gets ``--driver-memory`` (Spark's 1 GB default
does not hold 10M ratings' shuffle blocks).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from common import RESULTS, write_json

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("STYLESENSE_SHARED_DATA", ROOT / ".." / "shared" / "data"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--master", default="local[2]")
    ap.add_argument("--factors", type=int, default=64)
    ap.add_argument("--regularization", type=float, nargs="+", default=[30.0, 10.0],
                    help="one run per value (30: implicit's best of 1, 3, 10, 30, 100, 300 on this split; 10: the default)")
    ap.add_argument("--alpha", type=float, default=2.0)
    ap.add_argument("--iterations", type=int, default=15)
    ap.add_argument("--threads", type=int, default=2, help="implicit's solver threads (Spark: the master's cores)")
    ap.add_argument("--scale", default=None,
                    help="comma-separated event counts (e.g. 1e5,3e5,1e6,3e6): the fit-time scaling curve instead")
    ap.add_argument("--driver-memory", default="4g", help="the Spark driver's heap (local[N] runs the executors in it)")
    args = ap.parse_args()
    # before the JVM starts: the heap cannot change afterwards
    os.environ.setdefault("PYSPARK_SUBMIT_ARGS", f"--driver-memory {args.driver_memory} pyspark-shell")
    if args.scale:
        scaling_curve(args, [int(float(n)) for n in args.scale.split(",")])
        return

    from stylesense.engine import StyleSense
    from stylesense.evaluation.recommenders import evaluate_models
    from stylesense.evaluation.splits import split
    from stylesense.recommenders.als import ALS
    from stylesense.recommenders.engines.spark_als import SparkALS, session

    ss = StyleSense(RESULTS / "homes" / "movielens", threads=args.threads)
    ss.behaviour.import_events(DATA / "movielens-100k" / "ml-100k.inter", preset="movielens")
    events = ss.behaviour.events.frame()
    train, test = split(events, "stratified", ratio=0.75, seed=42)
    started = time.perf_counter()
    session(args.master).stop()  # the JVM starts once per process; every fit after reuses it
    jvm_seconds = time.perf_counter() - started

    runs = []
    for regularization in args.regularization:
        params = {"factors": args.factors, "regularization": regularization, "alpha": args.alpha,
                  "iterations": args.iterations, "threads": args.threads}
        models = {"als (implicit)": ALS(**params), f"als (spark {args.master})": SparkALS(args.master, **params)}
        result = evaluate_models(models, train, test, k=10, exclude_seen=True, weights=ss.behaviour.weights)
        rows = result.to_dict()["models"]
        local, spark = rows.values()
        runs.append({"params": params, "models": rows, "ndcg_gap": spark["ndcg_at_k"] - local["ndcg_at_k"]})

    print(f"MovieLens-100K, stratified 75/25, k=10, seen excluded; factors {args.factors}, alpha {args.alpha}, "
          f"{args.iterations} iterations; JVM start {jvm_seconds:.1f} s (once)")
    print(f"{'regularization':>14} {'model':<26} {'nDCG@10':>8} {'recall@10':>10} {'MAP@10':>8} {'fit s':>7}")
    for run in runs:
        for name, row in run["models"].items():
            print(f"{run['params']['regularization']:>14g} {name:<26} {row['ndcg_at_k']:>8.4f} "
                  f"{row['recall_at_k']:>10.4f} {row['map_at_k']:>8.4f} {row['fit_seconds']:>7.2f}")
        print(f"{'':>14} nDCG@10 gap (spark - implicit): {run['ndcg_gap']:+.4f} (target: within 0.02)")
    write_json(RESULTS / "spark_als.json", {
        "data": "movielens-100k", "protocol": "stratified", "k": 10, "master": args.master,
        "jvm_start_seconds": round(jvm_seconds, 2), "runs": runs, "split": result.split,
        "cpu_count": os.cpu_count(), "load_average": os.getloadavg()[0],
    })


def synthetic_events(n_events: int, seed: int = 0) -> Any:
    """Implicit events with a shop's shape, as :class:`Interactions`: ``n_events / 20`` shoppers
    and ``10 * sqrt(n_events)`` products (a catalogue grows slower than its traffic: 3k
    products at 100k events, 32k at 10M). A shopper's number of events is log-normal (sigma
    1.2: mean 20, median ~10, a tail of heavy shoppers, as in the H&M log: mean 23, median 9);
    a product's popularity follows rank^-0.9 (the top 1% of products get ~30% of the cells).
    Types are 70% views, 20% carts, 10% purchases; repeat (shopper, product) events merge into
    one cell, as a real log's repeat views do."""
    from stylesense.recommenders.data import Interactions

    rng = np.random.default_rng(seed)
    n_users, n_items = max(n_events // 20, 1), int(10 * np.sqrt(n_events))
    activity = rng.lognormal(0.0, 1.2, n_users)
    counts = np.maximum(1, np.round(activity * n_events / activity.sum())).astype(np.int64)
    user = rng.permutation(np.repeat(np.arange(n_users), counts))[:n_events]
    popularity = np.arange(1, n_items + 1, dtype=np.float64) ** -0.9
    item = rng.permutation(n_items)[rng.choice(n_items, len(user), p=popularity / popularity.sum())]
    types = rng.choice(np.array(["view", "cart", "purchase"]), len(user), p=[0.7, 0.2, 0.1])
    return Interactions(
        users=np.arange(n_users).astype(str), items=np.arange(n_items).astype(str), user=user, item=item,
        weight=np.select([types == "view", types == "cart"], [1.0, 4.0], 8.0).astype(np.float32),
        ts=np.arange(len(user), dtype=np.int64), price=np.full(len(user), np.nan, np.float32),
        session=np.full(len(user), "", dtype=str),
    )


def scaling_curve(args: argparse.Namespace, sizes: list[int]) -> None:
    """Both fits on each size, the table, and ``seconds = a + b * events`` per engine."""
    from stylesense.recommenders.als import ALS
    from stylesense.recommenders.engines.spark_als import SparkALS, session

    started = time.perf_counter()
    session(args.master).stop()
    jvm_seconds = time.perf_counter() - started
    params = {"factors": args.factors, "regularization": args.regularization[-1], "alpha": args.alpha,
              "iterations": args.iterations, "threads": args.threads}
    engines = {"implicit": lambda: ALS(**params), f"spark {args.master}": lambda: SparkALS(args.master, **params)}
    # One untimed fit first: the JVM's first ALS loads and JIT-compiles its classes (measured:
    # 85 s for a fit that then took 34 s), which would land on the smallest size and bend the line.
    started = time.perf_counter()
    engines[f"spark {args.master}"]().fit(synthetic_events(10_000))
    warmup_seconds = time.perf_counter() - started
    cores = args.threads
    rows: list[dict[str, Any]] = []
    out = RESULTS / "spark_als_scale.json"
    print(f"synthetic implicit events; factors {args.factors}, regularization {params['regularization']:g}, "
          f"alpha {args.alpha}, {args.iterations} iterations, {cores} cores each; JVM start {jvm_seconds:.1f} s, "
          f"warm-up fit {warmup_seconds:.1f} s (once each, untimed below)")
    print(f"{'events':>11} {'shoppers':>9} {'products':>9} {'cells':>11} "
          + " ".join(f"{e + ' s':>16}" for e in engines))
    for n in sizes:
        data = synthetic_events(n)
        row: dict[str, Any] = {"events": n, "users": data.n_users, "items": data.n_items, "cells": int(data.matrix.nnz)}
        for name, make in engines.items():
            started = time.perf_counter()
            make().fit(data)
            row[f"{name} s"] = round(time.perf_counter() - started, 2)
        row["load_average"] = round(os.getloadavg()[0], 1)
        rows.append(row)
        print(f"{n:>11,} {row['users']:>9,} {row['items']:>9,} {row['cells']:>11,} "
              + " ".join(f"{row[f'{e} s']:>16.1f}" for e in engines), flush=True)
        fits = linear_fits(rows, list(engines), cores)
        write_json(out, {"params": params, "master": args.master, "cores": cores,
                         "jvm_start_seconds": round(jvm_seconds, 2), "warmup_fit_seconds": round(warmup_seconds, 2),
                         "cpu_count": os.cpu_count(), "rows": rows, "fits": fits})
    for name, fit in fits.items():
        print(f"{name}: seconds = {fit['a_seconds']:.1f} + {fit['b_seconds_per_million_events']:.2f} per 1M events; "
              f"{fit['core_hours_per_billion_events']:.1f} core-hours per billion events (extrapolated)")


def linear_fits(rows: list[dict[str, Any]], engines: list[str], cores: int) -> dict[str, dict[str, float]]:
    """Per engine, least squares ``seconds = a + b * events`` over the sizes measured so far."""
    if len(rows) < 2:
        return {}
    events = np.array([r["events"] for r in rows], dtype=np.float64)
    fits = {}
    for name in engines:
        seconds = np.array([r[f"{name} s"] for r in rows])
        b, a = np.polyfit(events, seconds, 1)
        fits[name] = {"a_seconds": round(float(a), 2), "b_seconds_per_million_events": round(float(b) * 1e6, 3),
                      "core_hours_per_billion_events": round(float(b) * 1e9 * cores / 3600, 2),
                      "max_residual_seconds": round(float(np.max(np.abs(seconds - (a + b * events)))), 2)}
    return fits


if __name__ == "__main__":
    main()
