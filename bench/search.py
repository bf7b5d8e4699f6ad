"""Search speed and recall: our indexes vs the seed recipe, scikit-learn, and raw faiss.

    python bench/search.py [--n 100000] [--dim 1280] [--queries 1000] [--threads 2]
                           [--features FILE.npz] [--kinds flat kdtree ivf hnsw]

Data: clustered synthetic embeddings (stylesense.index.synthetic.clustered_unit_vectors: 1000
gaussian clusters in a 256-d power-law subspace + isotropic noise, normalised); queries are
held-out points of the same distribution. ``--features`` instead tiles real feature vectors
(an .npz whose first array is (n, dim)) with noise to the requested size.

Rows: the seed recipe (scikit-learn NearestNeighbors brute/cosine REFIT FOR EVERY QUERY, as the
reference app does: timed on a few queries and extrapolated), scikit-learn fit-once brute
force, scikit-learn KDTree on PCA-64 (the seed paper's structure, no re-ranking), our four
kinds, and for flat/ivf/hnsw the very same faiss object searched directly (same
nprobe/efSearch) to measure our wrapper's overhead. QPS is given for the whole query batch and
one query at a time (the app serves one query at a time). Then filtered search (10% and 1%
of the catalogue allowed) for our kinds. Prints tables, writes bench/results/search.json.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

THREADS_DEFAULT = 2
os.environ.setdefault("OMP_NUM_THREADS", str(THREADS_DEFAULT))

import faiss  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.decomposition import PCA  # noqa: E402
from sklearn.neighbors import KDTree, NearestNeighbors  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from stylesense.index import make_index  # noqa: E402
from stylesense.index.exact import exact_topk  # noqa: E402
from stylesense.index.filters import Filter  # noqa: E402
from stylesense.index.synthetic import clustered_unit_vectors  # noqa: E402
from stylesense.index.tuning import recall_at_k  # noqa: E402

from common import write_json

ROOT = Path(__file__).resolve().parents[1]
K = 10


def load_data(args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray]:
    """(catalogue, held-out queries), both (rows, dim) float32 L2-normalised."""
    total = args.n + args.queries
    if args.features is None:
        x = clustered_unit_vectors(total, args.dim, spread=args.spread, noise=args.noise, seed=args.seed)
    else:
        with np.load(args.features, allow_pickle=False) as archive:
            base = np.asarray(archive[archive.files[0]], dtype=np.float32)
        base /= np.linalg.norm(base, axis=1, keepdims=True)
        rng = np.random.default_rng(args.seed)
        x = base[rng.integers(0, len(base), total)]
        x += 0.3 * base.std(axis=0) * rng.standard_normal(x.shape, dtype=np.float32)  # tiles differ
        x /= np.linalg.norm(x, axis=1, keepdims=True)
    return np.ascontiguousarray(x[: args.n]), np.ascontiguousarray(x[args.n :])


def timed(fn: Callable[[], object]) -> tuple[object, float]:
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def single_qps(search_one: Callable[[np.ndarray], np.ndarray], queries: np.ndarray) -> tuple[float, np.ndarray]:
    """Queries per second one at a time (after 3 warm-up queries), and the ids found."""
    for q in queries[:3]:
        search_one(q[None])
    found, seconds = timed(lambda: np.vstack([search_one(q[None]) for q in queries]))
    return len(queries) / seconds, found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=1280)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--single", type=int, default=300, help="queries timed one at a time")
    parser.add_argument("--seed-queries", type=int, default=20, help="queries timed for the refit recipe")
    parser.add_argument("--threads", type=int, default=THREADS_DEFAULT)
    parser.add_argument("--features", type=Path, default=None)
    parser.add_argument("--kinds", nargs="+", default=["flat", "kdtree", "ivf", "hnsw"])
    parser.add_argument("--spread", type=float, default=0.7, help="cluster spread (1.0: clusters overlap more)")
    parser.add_argument("--noise", type=float, default=0.7, help="isotropic noise relative to the signal")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "search.json")
    args = parser.parse_args()
    faiss.omp_set_num_threads(args.threads)
    threadpool_limits(args.threads)
    load_before = os.getloadavg()[0]

    x, queries = load_data(args)
    ids = np.arange(len(x), dtype=np.int64)
    truth, _ = timed(lambda: exact_topk(queries, x, K)[1])
    rows: list[dict] = []

    def report(name: str, build_s: float, batch_qps: float | None, single: float, found: np.ndarray,
               n_truth: int, **extra: object) -> dict:
        row = {"method": name, "build_s": round(build_s, 2),
               "batch_qps": None if batch_qps is None else round(batch_qps, 1),
               "single_qps": round(single, 1), "recall@10": round(recall_at_k(found, truth[:n_truth]), 4),
               **extra}
        rows.append(row)
        print(f"  {name:34s} build {build_s:7.1f}s  batch {row['batch_qps'] or '-':>9} q/s  "
              f"single {row['single_qps']:>8} q/s  recall {row['recall@10']:.3f}  {extra or ''}", flush=True)
        return row

    print(f"{args.n} items x {args.dim} dims, {len(queries)} queries, k={K}, {args.threads} threads")
    seed = sklearn_rows(x, queries, args, report)
    for kind in args.kinds:
        our_rows(kind, ids, x, queries, args, report)

    for row in rows:
        row["speedup_vs_seed_single"] = round(row["single_qps"] / seed["single_qps"], 1)
    print_table(rows)
    result = {
        "config": {"n": args.n, "dim": args.dim, "queries": len(queries), "k": K, "threads": args.threads,
                   "data": str(args.features) if args.features
                   else f"clustered_unit_vectors (synthetic, spread={args.spread}, noise={args.noise})",
                   "single_queries_timed": args.single, "seed_queries_timed": args.seed_queries,
                   "machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
                   "loadavg_before": round(load_before, 2), "loadavg_after": round(os.getloadavg()[0], 2),
                   "faiss": faiss.__version__},
        "rows": rows,
    }
    write_json(args.out, result)


def sklearn_rows(x: np.ndarray, queries: np.ndarray, args: argparse.Namespace, report: Callable) -> dict:
    """The seed recipe (refit per query), fit-once brute force, KDTree on PCA-64; returns the seed row."""

    def refit_search(q: np.ndarray) -> np.ndarray:
        nn = NearestNeighbors(n_neighbors=K, algorithm="brute", metric="cosine").fit(x)
        return nn.kneighbors(q, return_distance=False)

    seed_qps, found = single_qps(refit_search, queries[: args.seed_queries])
    seed = report("seed recipe: sklearn refit/query", 0.0, None, seed_qps, found, args.seed_queries)

    nn, build_s = timed(lambda: NearestNeighbors(n_neighbors=K, algorithm="brute", metric="cosine").fit(x))
    found, batch_s = timed(lambda: nn.kneighbors(queries, return_distance=False))
    qps, _ = single_qps(lambda q: nn.kneighbors(q, return_distance=False), queries[: args.seed_queries])
    report("sklearn brute fit-once", build_s, len(queries) / batch_s, qps, found, len(queries))

    def fit_kdtree() -> tuple[PCA, KDTree]:
        sample = np.random.default_rng(0).choice(len(x), min(20_000, len(x)), replace=False)
        pca = PCA(64, random_state=0).fit(x[sample])
        return pca, KDTree(pca.transform(x))

    (pca, tree), build_s = timed(fit_kdtree)
    found, batch_s = timed(lambda: tree.query(pca.transform(queries), k=K, return_distance=False))
    qps, _ = single_qps(lambda q: tree.query(pca.transform(q), k=K, return_distance=False), queries[:100])
    report("sklearn KDTree on PCA-64", build_s, len(queries) / batch_s, qps, found, len(queries))
    return seed


def our_rows(kind: str, ids: np.ndarray, x: np.ndarray, queries: np.ndarray, args: argparse.Namespace,
             report: Callable) -> None:
    """Our index of ``kind``, the same faiss object searched raw, and filtered search."""
    index = make_index(kind, args.dim, n_expected=len(x))
    _, build_s = timed(lambda: index.build(ids, x))
    (_, found), batch_s = timed(lambda: index.search(queries, K))
    single_q = queries[: args.single]
    qps, _ = single_qps(lambda q: index.search(q, K)[1], single_q)
    knobs = {key: getattr(index, key) for key in ("nlist", "nprobe", "ef_search", "pool") if hasattr(index, key)}
    ours = report(f"ours: {kind}", build_s, len(queries) / batch_s, qps, found, len(queries), **knobs)
    raw = raw_faiss(index)
    if raw is not None:
        search, to_ids = raw
        labels, raw_batch_s = timed(lambda: search(queries))
        raw_qps, _ = single_qps(search, single_q)
        report(f"raw faiss: {kind}", build_s, len(queries) / raw_batch_s, raw_qps, to_ids(labels), len(queries))
        ours["overhead_batch"] = round(batch_s / raw_batch_s, 3)
        ours["overhead_single"] = round(raw_qps / ours["single_qps"], 3)
        print(f"  {'':34s} wrapper overhead: batch x{ours['overhead_batch']}  single x{ours['overhead_single']}")
    ours["filtered"] = filtered_rows(index, x, queries[:100])


def raw_faiss(index) -> tuple[Callable[[np.ndarray], np.ndarray], Callable[[np.ndarray], np.ndarray]] | None:
    """(search, labels -> ids): the wrapped faiss object's own search at our knob setting.

    Same object, same nprobe/efSearch, so the QPS ratio is exactly the wrapper's overhead
    (input checks, label translation, padding, short-row checks). None for kdtree (not faiss).
    """
    if index.kind == "ivf":
        index._index.nprobe = index.nprobe
        return (lambda q: index._index.search(q, K)[1]), (lambda labels: labels)
    if index.kind == "hnsw":
        index._index.hnsw.efSearch = max(index.ef_search, K)
    if index.kind in ("flat", "hnsw"):
        return (lambda q: index._index.search(q, K)[1]), index._to_ids
    return None


def filtered_rows(index, x: np.ndarray, queries: np.ndarray) -> list[dict]:
    """Recall and single-query QPS when only a random 10% / 1% of the catalogue is allowed."""
    out = []
    for fraction in (0.1, 0.01):
        allowed = np.sort(np.random.default_rng(1).choice(len(x), int(fraction * len(x)), replace=False))
        truth = allowed[exact_topk(queries, x[allowed], K)[1]]
        qps, found = single_qps(lambda q: index.search(q, K, where=Filter(ids=allowed))[1], queries)  # noqa: B023
        row = {"allowed_fraction": fraction, "single_qps": round(qps, 1),
               "recall@10": round(recall_at_k(found, truth), 4), "always_k": bool((found >= 0).all())}
        print(f"  {'':34s} filtered {fraction:>5.0%}: single {row['single_qps']:>8} q/s  "
              f"recall {row['recall@10']:.3f}  k always returned: {row['always_k']}", flush=True)
        out.append(row)
    return out


def print_table(rows: list[dict]) -> None:
    head = f"{'method':34s} {'build s':>8} {'batch q/s':>10} {'single q/s':>11} {'recall@10':>9} " \
           f"{'x seed':>8} {'ovh b/s':>11}"
    print("\n" + head + "\n" + "-" * len(head))
    for r in rows:
        ovh = f"{r['overhead_batch']}/{r['overhead_single']}" if "overhead_batch" in r else ""
        batch = "-" if r["batch_qps"] is None else f"{r['batch_qps']:.0f}"
        print(f"{r['method']:34s} {r['build_s']:8.1f} {batch:>10} {r['single_qps']:11.1f} "
              f"{r['recall@10']:9.3f} {r['speedup_vs_seed_single']:8.1f} {ovh:>11}")


if __name__ == "__main__":
    main()
