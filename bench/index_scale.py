"""Index memory and build time at catalogue scale: 100k x 1280 and 1M x 256.

    python bench/index_scale.py [--threads 2] [--queries 200] [--only 100000]

For each (size, variant), in a fresh forked process (so one variant's freed memory does not
hide the next one's): build seconds (including nlist training and recall-knob tuning), the
resident memory the built index holds (RSS growth) and the peak during the build, bytes of its
saved file, save/load seconds, recall@10 against exact search on held-out queries, and
single-query latency. The parent never runs faiss (OpenMP is not fork-safe once started).
Variants are our kinds behind the same interface, including the IVF codecs that trade recall
for memory (``make_index("ivf", codec=...)``).

1M items use dim 256 (the adapter's output dimension): 1M x 1280 float32 is 5 GB before any
index, and k-means plus the HNSW graph over it do not fit "a few minutes on 2 shared cores".
HNSW is measured at 100k only for the same reason (its 1M build would take tens of minutes),
and IVF-PQ too: at 1M x 256 its 32-byte codes (68 B/item on disk) cost 3.8 minutes of build
for recall@10 0.35 (measured once), where sq8 keeps 0.97 at 292 B/item.
Prints a table, writes bench/results/index_scale.json.
"""

from __future__ import annotations

import argparse
import gc
import multiprocessing
import os
import resource
import tempfile
import time
from pathlib import Path

THREADS_DEFAULT = 2
os.environ.setdefault("OMP_NUM_THREADS", str(THREADS_DEFAULT))

import faiss  # noqa: E402
import numpy as np  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from stylesense.index import load_index, make_index  # noqa: E402
from stylesense.index.synthetic import clustered_unit_vectors  # noqa: E402
from stylesense.index.tuning import recall_at_k  # noqa: E402

from common import write_json

ROOT = Path(__file__).resolve().parents[1]
K = 10
VARIANTS = {  # name -> (kind, params)
    "flat": ("flat", {}),
    "ivf": ("ivf", {}),
    "ivf-fp16": ("ivf", {"codec": "fp16"}),
    "ivf-sq8": ("ivf", {"codec": "sq8"}),
    "ivf-pq": ("ivf", {"codec": "pq"}),
    "hnsw": ("hnsw", {}),
}
PLAN = [  # (n, dim, variants)
    (100_000, 1280, ["flat", "ivf", "ivf-fp16", "ivf-sq8", "ivf-pq", "hnsw"]),
    (1_000_000, 256, ["flat", "ivf", "ivf-sq8"]),
]


def rss_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def numpy_topk(queries: np.ndarray, x: np.ndarray, k: int, block: int = 100_000) -> np.ndarray:
    """Exact top-k ids by inner product, in numpy (keeps the parent process free of OpenMP)."""
    best_scores = np.empty((len(queries), 0), np.float32)
    best_ids = np.empty((len(queries), 0), np.int64)
    for lo in range(0, len(x), block):
        block_ids = np.arange(lo, min(lo + block, len(x)))
        scores = np.hstack([best_scores, queries @ x[block_ids].T])
        ids = np.hstack([best_ids, np.broadcast_to(block_ids, (len(queries), len(block_ids)))])
        top = np.argsort(-scores, axis=1)[:, :k]
        best_scores, best_ids = np.take_along_axis(scores, top, 1), np.take_along_axis(ids, top, 1)
    return best_ids


def in_child(name: str, n: int, dim: int, x: np.ndarray, queries: np.ndarray, truth: np.ndarray,
             threads: int) -> dict:
    """``measure`` in a forked process; the data is shared copy-on-write."""
    ctx = multiprocessing.get_context("fork")
    receive, send = ctx.Pipe(duplex=False)
    child = ctx.Process(target=lambda: send.send(measure(name, n, dim, x, queries, truth, threads)))
    child.start()
    row = receive.recv()
    child.join()
    return row


def measure(name: str, n: int, dim: int, x: np.ndarray, queries: np.ndarray, truth: np.ndarray,
            threads: int) -> dict:
    faiss.omp_set_num_threads(threads)
    kind, params = VARIANTS[name]
    gc.collect()
    before = rss_bytes()
    start = time.perf_counter()
    index = make_index(kind, dim, n_expected=n, **params)
    index.build(np.arange(n, dtype=np.int64), x)
    build_s = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    gc.collect()
    held = rss_bytes() - before
    _, found = index.search(queries, K)
    start = time.perf_counter()
    for q in queries[:100]:
        index.search(q[None], K)
    single_ms = (time.perf_counter() - start) / min(100, len(queries)) * 1e3
    with tempfile.TemporaryDirectory(dir=ROOT / "bench" / "results") as tmp:
        path = Path(tmp) / "index.idx"
        start = time.perf_counter()
        index.save(path)
        save_s = time.perf_counter() - start
        file_bytes = path.stat().st_size
        del index
        gc.collect()
        start = time.perf_counter()
        loaded = load_index(path)
        load_s = time.perf_counter() - start
        assert len(loaded) == n
    knobs = {key: getattr(loaded, key) for key in ("nlist", "nprobe", "ef_search", "codec", "pq_m")
             if hasattr(loaded, key)}
    row = {"n": n, "dim": dim, "variant": name, "build_s": round(build_s, 1),
           "rss_held_mb": round(held / 2**20, 1), "build_peak_extra_mb": round((peak - before) / 2**20, 1),
           "file_mb": round(file_bytes / 2**20, 1),
           "bytes_per_item": round(file_bytes / n, 1), "save_s": round(save_s, 2), "load_s": round(load_s, 2),
           "recall@10": round(recall_at_k(found, truth), 4), "single_query_ms": round(single_ms, 3), **knobs}
    print(f"  {name:9s} build {row['build_s']:7.1f}s  RSS +{row['rss_held_mb']:8.1f} MB "
          f"(peak +{row['build_peak_extra_mb']:.0f})  file {row['file_mb']:8.1f} MB "
          f"({row['bytes_per_item']:.0f} B/item)  recall {row['recall@10']:.3f}  "
          f"{row['single_query_ms']:.2f} ms/query  {knobs}", flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=THREADS_DEFAULT)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--only", type=int, default=None, help="run only this catalogue size")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "index_scale.json")
    args = parser.parse_args()
    threadpool_limits(args.threads)
    load_before = os.getloadavg()[0]
    rows = []
    for n, dim, variants in PLAN:
        if args.only is not None and n != args.only:
            continue
        data = clustered_unit_vectors(n + args.queries, dim, seed=0)
        x, queries = data[:n], data[n:]
        truth = numpy_topk(queries, x, K)
        print(f"{n} items x {dim} dims ({x.nbytes / 2**20:.0f} MB of float32 vectors), {args.threads} threads")
        for name in variants:
            rows.append(in_child(name, n, dim, x, queries, truth, args.threads))
        del data, x, queries
        gc.collect()
    head = f"{'n':>9} {'dim':>5} {'variant':9s} {'build s':>8} {'RSS MB':>8} {'file MB':>8} {'B/item':>7} " \
           f"{'recall':>7} {'ms/query':>9}"
    print("\n" + head + "\n" + "-" * len(head))
    for r in rows:
        print(f"{r['n']:9d} {r['dim']:5d} {r['variant']:9s} {r['build_s']:8.1f} {r['rss_held_mb']:8.1f} "
              f"{r['file_mb']:8.1f} {r['bytes_per_item']:7.0f} {r['recall@10']:7.3f} {r['single_query_ms']:9.2f}")
    result = {"config": {"threads": args.threads, "queries": args.queries, "k": K,
                         "data": "clustered_unit_vectors (synthetic)", "cpus": os.cpu_count(),
                         "loadavg_before": round(load_before, 2), "loadavg_after": round(os.getloadavg()[0], 2),
                         "faiss": faiss.__version__},
              "rows": rows}
    write_json(args.out, result)


if __name__ == "__main__":
    main()
