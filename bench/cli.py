"""CLI start-up: wall time of whole `stylesense` invocations, side by side with `python -c pass`.

    python bench/cli.py [--runs 10] [--threads 2] [--out bench/results/cli.json]

Every command a shop runs per request or per keystroke pays Python's start-up plus whatever the
command imports, so this measures whole processes, hyperfine-style: each invocation runs
``--runs`` times (after one untimed warm-up that fills the OS and bytecode caches), the
commands interleaved so that a burst of load on the machine hits them all alike; min and
median wall seconds, and the median's ratio to ``python -c pass`` in the same run.

The home is built here, in bench/results/cli-home: a synthetic catalogue of 300 items (random
feature vectors, so no CNN runs) and 12,000 events of 1,500 shoppers, with EASE and ALS
trained on them. `events add` appends one event per run, so each timed `recommend` also folds
newer events into the model, as in production. A probe run of each command lists which of the
heavy libraries (torch, faiss, ...) it imported: those are what start-up time is made of.
Targets (issue 10): `--help`, `events add` and `catalog hide` well under a second, `recommend`
with a light model within 1.5 s.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import RESULTS, write_json

HEAVY = ("torch", "sklearn", "faiss", "onnx", "onnxruntime", "openvino", "optuna", "matplotlib",
         "implicit", "scipy", "pandas", "sqlalchemy", "numpy", "PIL")
TARGETS = {"help": 1.0, "events add": 1.0, "catalog hide": 1.0, "catalog list": 1.0,
           "recommend ease": 1.5, "recommend als": 1.5}
N_ITEMS, N_USERS, N_EVENTS = 300, 1500, 12_000
PROBE = """
import atexit, sys
heavy = {heavy!r}
atexit.register(lambda: sys.stderr.write("MODULES " + ",".join(m for m in heavy if m in sys.modules) + "\\n"))
sys.argv = ["stylesense", *{args!r}]
from stylesense.cli import app
app()
"""


def build_home(home: Path, threads: int) -> None:
    """A home with a catalogue, events and trained EASE and ALS models, built in-process."""
    import numpy as np

    from stylesense.catalog.store import Upsert
    from stylesense.engine import StyleSense

    shutil.rmtree(home, ignore_errors=True)
    rng = random.Random(0)
    ss = StyleSense(home, threads=threads)
    feats = np.random.default_rng(0).standard_normal((N_ITEMS, 64)).astype(np.float32)
    ss.store.upsert([
        Upsert(item_id=f"i{i}", attrs={"category": f"c{i % 7}", "price": 10 + i % 50},
               image_path=None, image_hash=f"h{i}", features=feats[i])
        for i in range(N_ITEMS)
    ])
    ss.sync_index()
    log = home / "events.csv"
    with log.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["user", "item", "ts", "type"])
        for n in range(N_EVENTS):
            user = rng.randrange(N_USERS)
            item = (user % 30) * 10 + int(rng.paretovariate(1.2)) % 10  # each shopper keeps to a taste
            w.writerow([f"u{user}", f"i{item}", 1_700_000_000 + n * 60, rng.choice(["view", "cart", "purchase"])])
    ss.behaviour.import_events(log, user_column="user", item_column="item", time_column="ts", type_column="type")
    for model in ("ease", "als"):
        ss.behaviour.train(model)


def commands(exe: str, home: Path) -> dict[str, list[str]]:
    """Label -> argv. `catalog hide` where the CLI has it, else `catalog list` in its place."""
    cli = [exe, "--home", str(home)]
    has_hide = "hide" in subprocess.run([*cli, "catalog", "--help"], capture_output=True, text=True).stdout
    catalog = ("catalog hide", [*cli, "catalog", "hide", "i299"]) if has_hide else ("catalog list", [*cli, "catalog", "list"])
    return {
        "python -c pass": [sys.executable, "-c", "pass"],
        "help": [exe, "--help"],
        "events add": [*cli, "events", "add", "--user", "u1", "--item", "i3", "--type", "view"],
        catalog[0]: catalog[1],
        "recommend ease": [*cli, "recommend", "--user", "u1", "--model", "ease", "-k", "10"],
        "recommend als": [*cli, "recommend", "--user", "u1", "--model", "als", "-k", "10"],
    }


def timed(argv: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr[-2000:]}")
    return seconds


def imported(argv: list[str], env: dict[str, str]) -> list[str]:
    """Which heavy libraries the command loads (one extra, untimed run in a probe wrapper)."""
    if argv[0] == sys.executable:
        return []
    code = PROBE.format(heavy=HEAVY, args=argv[1:])
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    line = next((ln for ln in done.stderr.splitlines() if ln.startswith("MODULES ")), "MODULES ")
    return [m for m in line[len("MODULES "):].split(",") if m]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="timed runs per command")
    parser.add_argument("--threads", type=int, default=2, help="OMP/BLAS threads of every child process")
    parser.add_argument("--out", type=Path, default=RESULTS / "cli.json")
    args = parser.parse_args()

    threads = str(args.threads)
    env = {**os.environ, "OMP_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads,
           "MKL_NUM_THREADS": threads}
    os.environ.update({k: env[k] for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")})
    exe = shutil.which("stylesense", path=str(Path(sys.executable).parent)) or shutil.which("stylesense")
    if exe is None:
        raise SystemExit("no `stylesense` command: run `make setup` and use the virtualenv's python")
    home = RESULTS / "cli-home"
    started = time.perf_counter()
    build_home(home, args.threads)
    print(f"home built in {time.perf_counter() - started:.1f} s: {home}")

    cmds = commands(exe, home)
    load_before = os.getloadavg()[0]
    for argv in cmds.values():  # warm-up: caches, bytecode; not counted
        timed(argv, env)
    samples: dict[str, list[float]] = {label: [] for label in cmds}
    for _ in range(args.runs):
        for label, argv in cmds.items():
            samples[label].append(timed(argv, env))
    load_after = os.getloadavg()[0]
    modules = {label: imported(argv, env) for label, argv in cmds.items()}

    base = statistics.median(samples["python -c pass"])
    rows = []
    print(f"\n{args.runs} runs each, {threads} threads, load {load_before:.2f} -> {load_after:.2f}")
    print(f"{'command':<16} {'min s':>7} {'median s':>9} {'x pass':>7} {'target':>7}  heavy imports")
    for label, times in samples.items():
        median = statistics.median(times)
        target = TARGETS.get(label)
        row = {"command": label, "argv": cmds[label], "min_s": round(min(times), 4), "median_s": round(median, 4),
               "ratio_to_python": round(median / base, 1), "target_s": target,
               "meets_target": None if target is None else median <= target,
               "imports": modules[label], "samples_s": [round(t, 4) for t in times]}
        rows.append(row)
        verdict = "" if target is None else f"{'ok' if row['meets_target'] else 'MISS'} {target:g}"
        print(f"{label:<16} {min(times):7.3f} {median:9.3f} {row['ratio_to_python']:7.1f} {verdict:>7}  "
              f"{','.join(modules[label]) or '-'}")
    write_json(args.out, {"runs": args.runs, "threads": args.threads, "python": platform.python_version(),
                          "cpu_count": os.cpu_count(), "load_avg_before_after": [round(load_before, 2), round(load_after, 2)],
                          "rows": rows})


if __name__ == "__main__":
    main()
