"""Spark ALS against the local (implicit) ALS on MovieLens-100K: the same factors,
regularisation, alpha and iterations, the same split (stratified 75/25, seed 42), k=10, seen
items excluded. Prints nDCG@10 (and recall@10, MAP@10) with both fit times; writes
bench/results/spark_als.json.

The Spark fit includes its per-fit overhead (the Parquet export, a Spark context on an already
started JVM, writing and reading the factors back); the JVM's own start is timed apart.

    python bench/spark_als.py [--master local[2]] [--factors 64 --regularization 10 ...]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

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
    args = ap.parse_args()

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


if __name__ == "__main__":
    main()
