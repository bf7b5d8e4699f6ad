"""Recommender benchmark: every model tuned the same way, then evaluated on one split per data set.

- MovieLens-100K, protocol `stratified` (per-user random 75/25, seed 42), k=10, seen items
  excluded: compares with the Microsoft Recommenders table (nDCG@10 BPR 0.442, NCF 0.396).
- H&M sample, protocol `temporal` (the last 28 days are the test), k=12 (the competition's
  MAP@12), with the home's measured exclude-seen choice; the catalogue's photos are imported
  so that `visual` can run and every model can recommend catalogue items nobody bought yet.

Each tunable model gets `--trials` Optuna trials on a validation split carved from the
*training* side (stylesense.evaluation.tuning); the test side is used once, by the final
evaluation. Both exclude-seen settings are evaluated to record which one each data set wants.
Homes are kept under bench/results/homes/ so a rerun skips the photo embedding.

    python bench/recommenders.py [--trials 20] [--only movielens|hm] [--protocol last-item]
                                 [--reuse-tuned] [--check-determinism] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from threadpoolctl import threadpool_limits

from common import RESULTS, write_json

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("STYLESENSE_SHARED_DATA", ROOT / ".." / "shared" / "data"))

CLASSIC = ["popular", "trending", "itemknn", "als", "bpr", "ease"]
NEURAL = ["neumf", "gru4rec"]
HYBRID = ["blend"]  # tuned last: its components use their own tuned parameters
# data set -> (events preset, events file, main protocol, k, test days, models)
SETS = {
    "movielens": ("movielens", DATA / "movielens-100k" / "ml-100k.inter", "stratified", 10, 7, CLASSIC + NEURAL + HYBRID),
    "hm": ("hm", DATA / "hm" / "transactions.csv", "temporal", 12, 28, CLASSIC + ["visual"] + NEURAL + HYBRID),
}
# Ablation rows (label -> (model, parameters over the tuned ones)) where the data set has photos:
# does NeuMF gain from the items' image embeddings?
VARIANTS = {"hm": {"neumf+vectors": ("neumf", {"use_vectors": True})}}
TIMING_KEYS = {"fit_seconds", "recommend_ms_per_user"}


def home_for(name: str, threads: int):
    from stylesense.datasets import hm_articles
    from stylesense.engine import StyleSense

    preset, events_path, *_ = SETS[name]
    ss = StyleSense(RESULTS / "homes" / name, threads=threads)
    report = ss.behaviour.import_events(events_path, preset=preset)
    print(f"{name}: {report.rows} events ({report.inserted} new)")
    if name == "hm" and not ss.store.count():
        source = hm_articles(DATA / "hm")
        started = time.perf_counter()
        imported = ss.import_catalog(source.csv, source.image_template, id_column=source.id_column)
        print(f"hm: {imported.added} catalogue items embedded in {time.perf_counter() - started:.0f} s")
    return ss


def run(name: str, protocol: str | None, trials: int, threads: int, reuse: bool = False,
        determinism: bool = False) -> dict:
    from stylesense.recommenders import MODELS

    _, _, main_protocol, k, test_days, models = SETS[name]
    protocol = protocol or main_protocol
    models = [m for m in models if m in MODELS]
    ss = home_for(name, threads)
    b = ss.behaviour
    tuned = {}
    for model in models:
        if model == "popular":
            continue
        started = time.perf_counter()
        saved = b.tuned_path(model, protocol)
        if reuse and saved.exists():
            from stylesense.evaluation.tuning import TuneResult

            result = TuneResult.from_json(saved)
        else:
            result = b.tune(model, protocol, trials=trials, k=k, test_days=test_days)
        tuned[model] = {"validation_ndcg": result.best_value, "default_validation_ndcg": result.default_value,
                        "params": result.best_params, "seconds": round(time.perf_counter() - started, 1)}
        print(f"  tuned {model}: validation nDCG {result.default_value:.4f} -> {result.best_value:.4f} "
              f"({tuned[model]['seconds']} s) {result.best_params}")
    # Serving latency does not depend on the protocol: measured with the main protocol's run.
    out = {"protocol": protocol, "k": k, "test_days": test_days if protocol == "temporal" else None,
           "trials": trials, "tuned": tuned, "runs": {},
           "serving": serving(b, models, protocol, k) if protocol == main_protocol else None}
    from rich.console import Console

    variants = VARIANTS.get(name, {})
    for exclude in (True, False):
        result = b.evaluate(protocol, models, k=k, test_days=test_days, exclude_seen=exclude, variants=variants)
        Console(width=160).print(result.table())
        result.plot(RESULTS / f"recommenders-{name}-{protocol}-{'exclude' if exclude else 'include'}-seen.png")
        out["runs"]["exclude_seen" if exclude else "include_seen"] = result.to_dict()
    if determinism:
        out["determinism"] = repeat_check(b, out, protocol, [m for m in models if m in NEURAL], k, test_days)
    return out


def repeat_check(b, out: dict, protocol: str, models: list[str], k: int, test_days: float) -> dict:
    """Evaluate the (seeded) neural models a second time on the same split: every metric but
    the timings must come out identical."""
    again = b.evaluate(protocol, models, k=k, test_days=test_days, exclude_seen=True).to_dict()["models"]
    first = out["runs"]["exclude_seen"]["models"]
    check = {}
    for model in models:
        differ = sorted(key for key, value in again[model].items()
                        if key not in TIMING_KEYS and first[model].get(key) != value)
        check[model] = {"identical": not differ, "differing_metrics": differ}
        print(f"  repeat {model}: {'identical metrics' if not differ else 'DIFFERS in ' + ', '.join(differ)}")
    return check


def serving(b, models: list[str], protocol: str, k: int, n_users: int = 200) -> dict:
    """Train each model on every event (parameters tuned for ``protocol``), then time
    single-user `recommend` calls the way a front end makes them: each call also folds in
    events newer than the model. ``train_cpu_seconds`` (process CPU time, all threads) is the
    fit's cost on a machine that other jobs share, where wall time is not."""
    out = {}
    for model in models:
        cpu = time.process_time()
        fitted, fit_seconds = b.train(model, b.tuned_params(model, protocol))
        cpu = time.process_time() - cpu
        users = fitted.user_ids[:n_users]
        b.recommend(users[0], k, model=model)  # warm: load the file once
        started = time.perf_counter()
        for user in users:
            b.recommend(user, k, model=model)
        out[model] = {"train_seconds": round(fit_seconds, 3), "train_cpu_seconds": round(cpu, 3),
                      "recommend_ms": round(1000 * (time.perf_counter() - started) / len(users), 3)}
        print(f"  serving {model}: fit {fit_seconds:.2f} s ({cpu:.2f} s CPU), "
              f"recommend {out[model]['recommend_ms']:.2f} ms/user")
    return out


def verdicts(results: dict) -> list[str]:
    lines = []
    if results.get("movielens", {}).get("protocol") == "last-item":
        run = results["movielens"]["runs"]["exclude_seen"]["models"]
        lines += determinism_verdicts(results)
        if "gru4rec" in run:
            lines.append(f"MovieLens last-item HR@10: gru4rec {run['gru4rec']['hit_rate_at_k']:.4f} vs "
                         f"itemknn {run['itemknn']['hit_rate_at_k']:.4f}; target gru4rec > itemknn")
        return lines
    lines += determinism_verdicts(results)
    if "movielens" in results:
        run = results["movielens"]["runs"]["exclude_seen"]["models"]
        best = max(run, key=lambda m: run[m]["ndcg_at_k"])
        lines.append(f"MovieLens best nDCG@10 {run[best]['ndcg_at_k']:.4f} ({best}) target >= 0.50")
        for m, target in (("als", 0.44), ("bpr", 0.44), ("neumf", 0.42)):
            if m in run:
                lines.append(f"MovieLens {m} nDCG@10 {run[m]['ndcg_at_k']:.4f} target >= {target}")
        serve = results["movielens"]["serving"]
        for group, limit in ((CLASSIC, 60), (NEURAL, 120)):
            timed = [m for m in group if m in serve]
            if timed:
                slowest = max(timed, key=lambda m: serve[m]["train_seconds"])
                lines.append(f"MovieLens slowest fit on all events {serve[slowest]['train_seconds']:.2f} s "
                             f"({slowest}) target < {limit} s")
        worst = max(serve, key=lambda m: serve[m]["recommend_ms"])
        lines.append(f"MovieLens slowest single-user recommend {serve[worst]['recommend_ms']:.2f} ms ({worst}) target < 5")
    if "hm" in results and results["hm"]["protocol"] == "temporal":
        for key, run in results["hm"]["runs"].items():
            models = run["models"]
            pop = models["popular"]["recall_at_k"]
            best = max(models, key=lambda m: models[m]["recall_at_k"])
            ratio = models[best]["recall_at_k"] / pop if pop else float("inf")
            lines.append(f"H&M {key}: best Recall@12 {models[best]['recall_at_k']:.4f} ({best}) = "
                         f"{ratio:.2f}x popular's {pop:.4f}; target >= 2x")
    return lines


def determinism_verdicts(results: dict) -> list[str]:
    return [f"{name} {model}: same seed twice -> {'identical' if check['identical'] else 'DIFFERENT'} metrics"
            for name, run in results.items() if isinstance(run, dict)
            for model, check in run.get("determinism", {}).items()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--only", choices=sorted(SETS))
    parser.add_argument("--protocol", help="instead of each data set's main protocol (e.g. last-item)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reuse-tuned", action="store_true", help="use parameters an earlier run tuned (saved in the bench homes)")
    parser.add_argument("--check-determinism", action="store_true",
                        help="evaluate the neural models twice with the same seed and compare the metrics")
    args = parser.parse_args()
    names = [args.only] if args.only else list(SETS)
    missing = [n for n in names if not SETS[n][1].is_file()]
    if missing:
        print(f"skipped: shared data for {', '.join(missing)} not found under {DATA}")
        names = [n for n in names if n not in missing]
        if not names:
            return 0
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    results = {}
    with threadpool_limits(args.threads):
        for name in names:
            results[name] = run(name, args.protocol, args.trials, args.threads, args.reuse_tuned,
                                args.check_determinism)
    out = RESULTS / f"recommenders{'-' + args.protocol if args.protocol else ''}.json"
    if args.only and out.exists():  # keep the other data set's results from an earlier run
        results = {**json.loads(out.read_text()), **results}
    results["verdicts"] = verdicts(results)
    print("\n".join(results["verdicts"]))
    write_json(out, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
