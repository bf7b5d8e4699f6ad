"""REST API throughput and latency under a real load generator, beside the same calls in-process.

    python bench/api.py [--duration 10] [--rounds 3] [--connections 16] [--workers 2]
                        [--only ROUTE ...] [--baseline SRC] [--out bench/results/api.json]

Needs `wrk` (Debian: `apt-get install wrk`; `make bench` installs it); the Lua scripts it runs
are in bench/wrk/.

The home (bench/results/homes/api, kept so a rerun skips the embedding) holds the shared
Kaggle catalogue (every photo embedded) and MovieLens-100K's 100,000 ratings with its 1,682
movies mapped one-to-one onto the first 1,682 Kaggle products (sorted ids), so that behaviour
and catalogue share their items; EASE is trained on them and is the default model. A run
starts by deleting the shoppers a previous run's event rows wrote, and retrains EASE then.

`stylesense serve --workers 2` runs on 127.0.0.1, each worker with one CPU thread (OMP,
OpenBLAS, MKL and the library's own setting), and wrk drives it with ``--connections`` (16)
keep-alive connections on 2 threads for ``--duration`` seconds per route: req/s, p50/p99
latency, errors (any non-2xx answer counts, and the first one is printed; a row with errors
misses its target), the CPU seconds each worker spent and the connections each held (``conns``,
read from /proc a second into the run: the workers share one listening socket, so wrk's 16
connections, opened at once, may split 8/8 or 4/12, and the busier worker's answers wait
longer). Every event a request
sends is new (an event id of its own), so each is inserted and committed before its answer.
Native and Gorse-compatible routes run side by side. Then the same route with one connection
(one request in flight), and the same call through the library in this process on one
thread: ``api_overhead`` is library calls/s over API req/s at one connection, the cost of
HTTP, keys, JSON and the app per call.

The machine's 2 cores are shared by wrk, both workers and this process (and whatever else
runs), so ``--rounds`` interleave the routes (reads' rounds, then writes', whose events the
reads would otherwise fold in) and each row keeps its median round; ``req/CPU-s`` (requests
per CPU second of the workers) is the figure least moved by other load. Each worker's
resident memory is read after the warm-up and at the end. The JSON records the load average.

``--baseline SRC`` compares versions in one run, since runs apart meet different loads: SRC is
another version's ``src`` folder (``git archive REV src | tar -x -C /tmp/base`` gives
/tmp/base/src), served beside this one from the same virtualenv (the same uvicorn, httptools
and uvloop) on the same home, and every loaded run is repeated on it in the same round. Its
rows give its req/s, latencies and req/CPU-s, and ``cpu_ratio_vs_baseline``: the median over
rounds of our req/CPU-s over the baseline's.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from stylesense.serving.process import THREADS, ServerProcess  # noqa: E402 - imports no numpy

os.environ.update(THREADS)  # before numpy loads: the in-process rows run on one thread too

import httpx  # noqa: E402

from common import RESULTS, ROOT, write_json  # noqa: E402

DATA = Path(os.environ.get("STYLESENSE_SHARED_DATA", ROOT / ".." / "shared" / "data"))
HOME = RESULTS / "homes" / "api"
LUA = ROOT / "bench" / "wrk"
MODEL = "ease"
BENCH_USERS = ("bench-", "library-")  # the shoppers whose events the event rows write
TARGETS = {  # issue 11, with 16 connections on 2 cores
    # p99 < 50 ms while 300 req/s are served: the saturated run says how many req/s the server
    # can do, the paced run (the 16 connections offering 300 req/s together) its p99 at that rate.
    "recommendations": {"rps": 300, "paced_p99_ms": 50},
    "search by item": {"rps": 300},
    "search by photo": {"single_p50_ms": 40},  # "p50 < 40 ms for one photo": one request in flight
    "events, single": {"rps": 300},
    "events, batches of 100": {"events_per_s": 5000},
}


def build_home(threads: int):
    """The benchmark's home (see the module docstring); each step is skipped when done."""
    from stylesense.datasets import kaggle_fashion, movielens_100k
    from stylesense.engine import StyleSense

    ss = StyleSense(HOME, threads=threads)
    source = kaggle_fashion(DATA / "fashion-product-images")
    if not ss.store.count():
        started = time.perf_counter()
        report = ss.import_catalog(source.csv, source.image_template, id_column=source.id_column)
        print(f"catalogue: {report.added} Kaggle products embedded in {time.perf_counter() - started:.0f} s")
    if ss.behaviour.events.count() < 100_000:
        ratings = movielens_100k(DATA / "movielens-100k")
        products = sorted((it.item_id for it in ss.items()), key=int)
        movies = sorted(ratings["item_id"].unique(), key=int)
        to_product = dict(zip(movies, products))
        ratings = ratings.assign(item_id=ratings["item_id"].map(to_product), type="rating",
                                 ts=ratings["timestamp"], value=ratings["rating"])
        counts = ss.behaviour.events.import_frame(ratings[["user_id", "item_id", "type", "ts", "value"]])
        print(f"events: {counts.inserted} MovieLens ratings stored")
    written = [u for u in ss.behaviour.events.users() if u.startswith(BENCH_USERS)]
    if written:  # a previous run's event rows: back to the built home
        from stylesense.gorse import Gorse

        gorse = Gorse(ss)
        for user in written:
            gorse.delete_user(user)
    if written or ss.config.recommender != MODEL:
        _, seconds = ss.behaviour.train(MODEL)
        print(f"{MODEL} trained in {seconds:.1f} s")
    return ss


def query_photo() -> Path:
    """A shopper's photo: an H&M product shot (not in the Kaggle catalogue, portrait 360x540),
    else a Kaggle one."""
    hm = sorted((DATA / "hm" / "images").glob("*/*.jpg"))[:1]
    return hm[0] if hm else sorted((DATA / "fashion-product-images" / "images").glob("*.jpg"))[0]


class Server(ServerProcess):
    """The benchmarked server, and what the bench reads of its workers."""

    def __init__(self, workers: int, src: Path | None = None) -> None:
        """``src``: another version's ``src`` folder to serve instead of this one (its
        packages first on PYTHONPATH)."""
        super().__init__(HOME, RESULTS / ("api-baseline.log" if src else "api-server.log"), workers=workers,
                         env={"PYTHONPATH": str(src.resolve())} if src else None)

    def start(self) -> None:  # type: ignore[override]
        try:
            super().start(ready="/ready")
        except RuntimeError as e:
            sys.exit(str(e))

    def worker_pids(self) -> list[int]:
        """The worker processes: the supervisor's children that multiprocessing spawned (not
        its resource tracker)."""
        assert self.proc is not None
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
        return [int(pid) for pid in children if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()]

    def worker_rss_mb(self) -> list[float]:
        """Resident memory of each worker, MB."""
        out = []
        for pid in self.worker_pids():
            status = Path(f"/proc/{pid}/status").read_text()
            kb = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
            out.append(round(kb / 1024, 1))
        return out

    def connections_per_worker(self) -> list[int]:
        """Client connections each worker holds now: its sockets that /proc/net/tcp lists as
        established on the server's port. The workers share one listening socket and the first
        to wake accepts every connection waiting, so wrk's connections, opened at once, can
        land unevenly; the worker holding more answers each of them later."""
        port = int(self.url.rsplit(":", 1)[1])
        established = set()
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "01":  # 01: ESTABLISHED
                    established.add(f"socket:[{fields[9]}]")
        counts = []
        for pid in self.worker_pids():
            held = 0
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                try:
                    held += os.readlink(fd) in established
                except FileNotFoundError:  # closed meanwhile
                    pass
            counts.append(held)
        return counts

    def worker_cpu_s(self) -> list[float]:
        """CPU seconds (user + system) each worker has used so far."""
        ticks = os.sysconf("SC_CLK_TCK")
        return [sum(map(int, Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[11:13])) / ticks
                for pid in self.worker_pids()]


@dataclass
class Route:
    """One benchmarked call: the wrk script and its settings, and the same call in-process."""

    name: str
    script: str
    env: dict[str, str]
    library: Callable[[int], object]  # call number -> one call through the library
    events_per_request: int = 1
    gorse: bool = False


def wrk(route: Route, url: str, key: str, connections: int, seconds: float, run: str,
        spread: Callable[[], list[int]] | None = None, rate: float | None = None) -> dict:
    """One wrk run of ``route``: its JSON summary with req/s added, and ``spread()`` (each
    worker's connections) read a second into the run. ``rate``: the req/s offered, open loop
    (a paced run: bench/wrk/common.lua), split evenly between wrk's threads."""
    out = RESULTS / "wrk-out.json"
    out.unlink(missing_ok=True)
    threads = min(2, connections)
    env = {**os.environ, "WRK_LUA_DIR": str(LUA), "WRK_KEY": key, "WRK_OUT": str(out), "WRK_RUN": run,
           **route.env, **({} if rate is None else {"WRK_RATE": f"{rate / threads:.3f}"})}
    load = subprocess.Popen(["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "10s",
                             "-s", str(LUA / route.script), url], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, cwd=ROOT)
    held = None
    if spread is not None:
        time.sleep(min(1.0, seconds / 3))
        held = spread()
    output, _ = load.communicate()
    if load.returncode:
        sys.exit(f"wrk failed ({load.returncode}): {output.decode(errors='replace')[-2000:]}")
    result = json.loads(out.read_text())
    if held is not None:
        result["connections_per_worker"] = held
    result["rps"] = round(result["requests"] / result["seconds"], 1)
    result["errors_total"] = sum(result["errors"].values())
    if result["errors_total"]:
        print(f"  {route.name}: {result['errors_total']} errors; the first answer that was not 2xx: "
              f"{result['first_error'] or '-'}", flush=True)
    return result


def in_process(call: Callable[[int], object], seconds: float) -> dict:
    """Calls/s and latency of ``call`` on this thread for about ``seconds`` (after 20 warm-up calls)."""
    for n in range(20):
        call(n)
    times: list[float] = []
    deadline = time.perf_counter() + seconds
    n = 20
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        call(n)
        times.append(time.perf_counter() - start)
        n += 1
    ms = sorted(t * 1e3 for t in times)
    return {"calls": len(ms), "calls_per_s": round(len(ms) / sum(times), 1), "p50_ms": round(statistics.median(ms), 3),
            "p99_ms": round(ms[min(len(ms) - 1, int(0.99 * len(ms)))], 3)}


def routes(ss, files: dict[str, Path], operations: set[str]) -> list[Route]:
    """Every benchmarked route the app serves (``operations``: "METHOD /path" from /openapi.json),
    reads first: the event rows add events, which later reads would fold in."""
    from stylesense.events import NewEvent
    from stylesense.gorse import Feedback, Gorse

    gorse = Gorse(ss)
    users, items, rated = (files[name].read_text().split() for name in ("users", "items", "rated"))
    photo = files["photo"].read_bytes()

    def events(n: int, size: int) -> list[NewEvent]:
        return [NewEvent(f"library-{(n * size + j) % 500}", items[(n * size + j) % len(items)], "view",
                         event_id=f"library-{time.time_ns()}-{j}") for j in range(size)]

    def feedback(n: int, size: int) -> list[Feedback]:
        return [Feedback("view", f"library-{(n * size + j) % 500}", items[(n * size + j) % len(items)])
                for j in range(size)]

    def get(path: str, ids: str) -> dict[str, str]:
        return {"WRK_IDS": str(files[ids]), "WRK_PATH": path}

    def writes(api: str, size: int) -> dict[str, str]:
        return {"WRK_IDS": str(files["items"]), "WRK_API": api, "WRK_BATCH": str(size)}

    candidates = [
        ("GET /v1/users/{user_id}/recommendations", Route(
            "recommendations", "get.lua", get("/v1/users/{id}/recommendations?k=10", "users"),
            lambda n: [r.to_dict() for r in ss.behaviour.recommend(users[n % len(users)], 10)])),
        ("GET /api/recommend/{user_id}", Route(
            "recommendations", "get.lua", get("/api/recommend/{id}?n=10", "users"),
            lambda n: [r.item_id for r in gorse.recommend(users[n % len(users)], 10)], gorse=True)),
        ("POST /v1/search", Route(
            "search by item", "search_item.lua", {"WRK_IDS": str(files["items"])},
            lambda n: [h.to_dict() for h in ss.search(item=items[n % len(items)], k=10)])),
        ("GET /v1/items/{item_id}/similar", Route(
            "similar items", "get.lua", get("/v1/items/{id}/similar?k=10", "items"),
            lambda n: [h.to_dict() for h in ss.search(item=items[n % len(items)], k=10)])),
        ("GET /api/item/{item_id}/neighbors", Route(
            "similar items", "get.lua", get("/api/item/{id}/neighbors?n=10", "rated"),
            lambda n: [r.to_dict() for r in gorse.neighbors(rated[n % len(rated)], 10)], gorse=True)),
        ("POST /v1/search", Route(
            "search by photo", "search_photo.lua", {"WRK_FILE": str(files["photo"])},
            lambda n: [h.to_dict() for h in ss.search(photo, k=10)])),
        ("POST /v1/events", Route(
            "events, single", "events.lua", writes("native", 1),
            lambda n: ss.behaviour.add_events(events(n, 1)))),
        ("POST /api/feedback", Route(
            "events, single", "events.lua", writes("gorse", 1),
            lambda n: gorse.insert_feedback(feedback(n, 1)), gorse=True)),
        ("POST /v1/events", Route(
            "events, batches of 100", "events.lua", writes("native", 100),
            lambda n: ss.behaviour.add_events(events(n, 100)), events_per_request=100)),
        ("POST /api/feedback", Route(
            "events, batches of 100", "events.lua", writes("gorse", 100),
            lambda n: gorse.insert_feedback(feedback(n, 100)), events_per_request=100, gorse=True)),
    ]
    return [route for operation, route in candidates if operation in operations]


def loaded_run(server: Server, route: Route, key: str, args: argparse.Namespace) -> dict:
    """``route`` with ``--connections`` for ``--duration`` on ``server``, with the CPU seconds
    and connections of each of its workers."""
    cpu_before = server.worker_cpu_s()
    loaded = wrk(route, server.url, key, args.connections, args.duration, run=f"r{time.time_ns()}",
                 spread=server.connections_per_worker)
    loaded["worker_cpu_s"] = [round(b - a, 1) for a, b in zip(cpu_before, server.worker_cpu_s())]
    return loaded


PACE_MARGIN = 1.03  # offered / judged rate of a paced run: the achieved rate must reach the judged one


def paced_run(route: Route, url: str, key: str, args: argparse.Namespace, rate: float) -> dict:
    """``--connections`` that together send ``rate`` req/s for ``--duration``, open loop: the
    send times follow a Poisson schedule whatever the answers' speed (bench/wrk/common.lua).
    wrk's latencies count from the request to its answer. ``rate`` is offered with a margin of
    ``PACE_MARGIN``: Poisson arrivals at 300 req/s for 10 s vary by about 2 % (one sigma)."""
    offered = rate * PACE_MARGIN
    result = wrk(route, url, key, args.connections, args.duration, run=f"p{time.time_ns()}", rate=offered)
    result["offered_rps"] = round(offered, 1)
    return result


def median_run(runs: list[dict], rate: str) -> dict:
    """The run with the median ``rate`` (the lower middle one of an even count), whole: its
    latencies belong to its own rate."""
    return sorted(runs, key=lambda run: run[rate])[(len(runs) - 1) // 2]


def cpu_per_request(run: dict) -> float | None:
    """Requests per CPU second of the workers in a loaded run."""
    cpu = sum(run["worker_cpu_s"])
    return round(run["requests"] / cpu, 1) if cpu else None


def row_of(route: Route, rounds: list[tuple[dict, dict, dict, dict | None, dict | None]]) -> dict:
    """One table row from every round of a route: the median round of each measurement."""
    loaded = median_run([r[0] for r in rounds], "rps")
    single = median_run([r[1] for r in rounds], "rps")
    library = median_run([r[2] for r in rounds], "calls_per_s")
    errors = sum(r[0]["errors_total"] + r[1]["errors_total"] for r in rounds)
    row = {"route": route.name, "api": "gorse" if route.gorse else "native",
           "rps": loaded["rps"], "p50_ms": round(loaded["p50_ms"], 2), "p99_ms": round(loaded["p99_ms"], 2),
           "errors": errors, "single_rps": single["rps"], "single_p50_ms": round(single["p50_ms"], 2),
           "single_p99_ms": round(single["p99_ms"], 2),
           "library_calls_per_s": library["calls_per_s"], "library_p50_ms": library["p50_ms"],
           "api_overhead": round(library["calls_per_s"] / single["rps"], 2) if single["rps"] else None,
           "requests_per_worker_cpu_s": cpu_per_request(loaded),
           "connections_per_worker": loaded.get("connections_per_worker"),
           "rps_by_round": [r[0]["rps"] for r in rounds], "wrk": loaded, "wrk_single": single, "library": library}
    if all(r[3] is not None for r in rounds):  # the baseline's loaded runs, interleaved with ours
        base = median_run([r[3] for r in rounds], "rps")  # type: ignore[misc]
        row["baseline"] = {"rps": base["rps"], "p50_ms": round(base["p50_ms"], 2), "p99_ms": round(base["p99_ms"], 2),
                           "errors": sum(r[3]["errors_total"] for r in rounds),  # type: ignore[index]
                           "requests_per_worker_cpu_s": cpu_per_request(base), "wrk": base}
        # Median over rounds of (our requests per CPU second / the baseline's) in the same round.
        ratios = [a / b for r in rounds if (a := cpu_per_request(r[0])) and (b := cpu_per_request(r[3]))]  # type: ignore[arg-type]
        row["cpu_ratio_vs_baseline"] = round(statistics.median(ratios), 2) if ratios else None
    if all(r[4] is not None for r in rounds):  # paced runs: the p99 at the target's rate
        paced = median_run([r[4] for r in rounds], "p99_ms")  # type: ignore[misc]
        row.update(paced_rps=paced["rps"], paced_p50_ms=round(paced["p50_ms"], 2),
                   paced_p99_ms=round(paced["p99_ms"], 2), paced_offered_rps=paced["offered_rps"], wrk_paced=paced)
        row["errors"] += sum(r[4]["errors_total"] for r in rounds)  # type: ignore[index]
    if route.name.startswith("events"):
        row["events_per_s"] = round(loaded["rps"] * route.events_per_request)
    target = {} if route.gorse else TARGETS.get(route.name, {})
    row["target"] = target
    row["meets_target"] = row["errors"] == 0 and all(
        (row[k] < v if k.endswith("_ms") else row[k] >= v) for k, v in target.items())
    if "paced_p99_ms" in target:  # the paced run must have offered the rate it is judged at
        row["meets_target"] = row["meets_target"] and row["paced_rps"] >= target["rps"]
    return row


def print_table(rows: list[dict], memory: dict) -> None:
    head = (f"{'route':24s} {'api':6s} {'req/s':>7s} {'p50 ms':>7s} {'p99 ms':>7s} {'events/s':>8s} {'err':>4s} "
            f"{'req/CPU-s':>9s} {'conns':>5s} {'1-conn p50':>10s} {'library/s':>9s} {'overhead':>8s}  target")
    print(head)
    print("-" * len(head))
    for r in rows:
        ok = "" if not r["target"] else ("met" if r["meets_target"] else "MISSED")
        print(f"{r['route']:24s} {r['api']:6s} {r['rps']:7.0f} {r['p50_ms']:7.2f} {r['p99_ms']:7.2f} "
              f"{r.get('events_per_s', ''):>8} {r['errors']:4d} {r['requests_per_worker_cpu_s'] or 0:9.0f} "
              f"{'/'.join(map(str, r['connections_per_worker'] or [])):>5s} "
              f"{r['single_p50_ms']:10.2f} {r['library_calls_per_s']:9.0f} {r['api_overhead']:8.2f}x  {ok}")
        if "paced_rps" in r:
            print(f"{'  paced (offered rate)':31s} {r['paced_rps']:7.0f} {r['paced_p50_ms']:7.2f} {r['paced_p99_ms']:7.2f}"
                  f"   ({r['paced_offered_rps']:.0f} req/s offered, open loop)")
        if "baseline" in r:
            b = r["baseline"]
            print(f"{'  baseline':31s} {b['rps']:7.0f} {b['p50_ms']:7.2f} {b['p99_ms']:7.2f} {'':>8} {b['errors']:4d} "
                  f"{b['requests_per_worker_cpu_s'] or 0:9.0f}   (req/CPU-s x{r['cpu_ratio_vs_baseline']} of the baseline's)")
    print(f"worker RSS, MB: after warm-up {memory['after_warmup_mb']}, at the end {memory['at_end_mb']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of wrk per route, 16 connections")
    parser.add_argument("--single-duration", type=float, default=5.0, help="seconds of wrk per route, 1 connection")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of wrk per route before timing, "
                        "repeated (up to 5 times) until its p99 is under a second")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds over the routes; the median is kept")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--only", nargs="+", default=None, help="route names to run (default: all)")
    parser.add_argument("--out", type=Path, default=RESULTS / "api.json")
    parser.add_argument("--baseline", type=Path, default=None, metavar="SRC",
                        help="another version's src folder (e.g. from `git archive REV src`), served beside this one; "
                             "each loaded run is repeated on it in the same round")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("bench/api.py needs wrk, the HTTP load generator: apt-get install wrk")
    if not (DATA / "fashion-product-images" / "styles.csv").exists() or not (DATA / "movielens-100k").is_dir():
        sys.exit(f"bench/api.py needs the shared Kaggle catalogue and MovieLens-100K under {DATA}")
    load_before = os.getloadavg()[0]

    from stylesense.serving.keys import KeyStore

    ss = build_home(threads=1)
    keys = KeyStore(ss.store.engine)
    key, info = keys.create("write", name=f"bench-{time.time_ns()}")
    files = {name: RESULTS / f"api-{name}.txt" for name in ("items", "users", "rated")}
    files["items"].write_text("\n".join(it.item_id for it in ss.items()) + "\n")
    files["users"].write_text("\n".join(ss.behaviour.events.users()) + "\n")
    files["rated"].write_text("\n".join(sorted(set(ss.behaviour.events.frame()["item_id"]))) + "\n")
    files["photo"] = query_photo()

    server = Server(args.workers)
    baseline = Server(args.workers, args.baseline) if args.baseline else None
    try:
        for running in (server, baseline):
            if running is not None:
                running.start()
        spec = httpx.get(f"{server.url}/openapi.json").json()
        operations = {f"{method.upper()} {path}" for path, ops in spec["paths"].items() for method in ops}
        if baseline is not None:  # only what both serve
            spec = httpx.get(f"{baseline.url}/openapi.json").json()
            operations &= {f"{method.upper()} {path}" for path, ops in spec["paths"].items() for method in ops}
        chosen = [r for r in routes(ss, files, operations) if args.only is None or r.name in args.only]
        rounds: list[list[tuple[dict, dict, dict, dict | None, dict | None]]] = [[] for _ in chosen]
        # Rounds interleave the routes, so that a burst of load elsewhere hits them alike: the
        # reads' rounds first, then the writes' (whose events the reads would otherwise fold in).
        reads = [(r, runs) for r, runs in zip(chosen, rounds) if not r.name.startswith("events")]
        writes = [(r, runs) for r, runs in zip(chosen, rounds) if r.name.startswith("events")]
        memory: dict[str, list[float]] = {}
        for group in (reads, writes):
            for route, _ in group:  # warm-up: every worker loads the model, index and embedder
                for running in (r for r in (server, baseline) if r is not None):
                    for _ in range(5):
                        if wrk(route, running.url, key, args.connections, args.warmup, run=f"w{time.time_ns()}")["p99_ms"] < 1000:
                            break
            memory.setdefault("after_warmup_mb", server.worker_rss_mb())
            for n, (route, runs) in ((n, entry) for n in range(args.rounds) for entry in group):
                loaded = loaded_run(server, route, key, args)
                base = None if baseline is None else loaded_run(baseline, route, key, args)
                single = wrk(route, server.url, key, 1, args.single_duration, run=f"s{time.time_ns()}")
                rate = None if route.gorse else TARGETS.get(route.name, {}).get("rps")
                paced = (paced_run(route, server.url, key, args, rate)
                         if rate and "paced_p99_ms" in TARGETS[route.name] else None)
                runs.append((loaded, single, in_process(route.library, args.single_duration), base, paced))
                print(f"  round {n + 1}, {route.name} ({'gorse' if route.gorse else 'native'}): "
                      f"{loaded['rps']:.0f} req/s, p99 {loaded['p99_ms']:.1f} ms"
                      + ("" if base is None else f" (baseline {base['rps']:.0f} req/s, p99 {base['p99_ms']:.1f} ms)")
                      + ("" if paced is None else f"; paced {paced['rps']:.0f} req/s, p99 {paced['p99_ms']:.1f} ms"),
                      flush=True)
        rows = [row_of(route, runs) for route, runs in zip(chosen, rounds)]
        memory["at_end_mb"] = server.worker_rss_mb()
    finally:
        for running in (server, baseline):
            if running is not None:
                running.stop()
        keys.revoke(info.key_id)
    print_table(rows, memory)
    write_json(args.out, {
        "config": {"connections": args.connections, "wrk_threads": 2, "duration_s": args.duration, "rounds": args.rounds,
                   "single_duration_s": args.single_duration, "workers": args.workers,
                   "threads_per_worker": 1, "model": MODEL, "items": ss.store.count(),
                   "events_before": 100_000, "machine": platform.processor() or platform.machine(),
                   "cpus": os.cpu_count(), "loadavg_before": round(load_before, 2),
                   "loadavg_after": round(os.getloadavg()[0], 2),
                   "baseline_src": None if args.baseline is None else str(args.baseline)},
        "rows": rows, "worker_rss_mb": memory,
    })


if __name__ == "__main__":
    main()
