"""Style clusters and shopper segments on the shared catalogues: what HDBSCAN finds, and how
long it takes in a new process (cold: UMAP's import and compiled code included) and from the
home's cache.

    python bench/clusters.py [--only kaggle hm] [--threads 1]

Homes under bench/results/homes/: the shared Kaggle catalogue is read from ``api`` where
bench/api.py built it (every photo embedded), else ``kaggle`` is built; H&M from ``hm`` (the
4,116 articles with photos and the 30,451 purchases, as bench/recommenders.py builds it), built
where missing. Each timing runs in a fresh process: ``cold`` computes afresh (``--refresh``),
``warm`` computes afresh again in that process (no import, nothing left to compile: the
difference is what a new process pays once), ``cached`` opens the home in another new process
and reads the result, and ``cli`` is the wall time of a whole `stylesense clusters` reading it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.update({k: "1" for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")})

from common import RESULTS, ROOT, write_json  # noqa: E402

DATA = Path(os.environ.get("STYLESENSE_SHARED_DATA", ROOT / ".." / "shared" / "data"))
HOMES = RESULTS / "homes"
TOP = 12  # clusters described per catalogue


def home_for(name: str, threads: int) -> Path:
    """The catalogue's home, built (photos embedded, H&M's purchases imported) where missing."""
    from stylesense.datasets import hm_articles, kaggle_fashion
    from stylesense.engine import StyleSense

    if name == "kaggle" and (HOMES / "api" / "config.json").exists():
        return HOMES / "api"
    ss = StyleSense(HOMES / name, threads=threads)
    source = kaggle_fashion(DATA / "fashion-product-images") if name == "kaggle" else hm_articles(DATA / "hm")
    if not ss.store.count():
        started = time.perf_counter()
        report = ss.import_catalog(source.csv, source.image_template, id_column=source.id_column)
        print(f"{name}: {report.added} photos embedded in {time.perf_counter() - started:.0f} s")
    if name == "hm" and not ss.behaviour.events.count():
        ss.behaviour.import_events(DATA / "hm" / "transactions.csv", preset="hm")
    return HOMES / name


def measure(home: str, kind: str, threads: int, cold: bool) -> dict:
    """One process's timings of ``kind`` (styles or segments), as JSON on stdout."""
    started = time.perf_counter()
    from stylesense.clusters import shopper_segments, style_clusters
    from stylesense.engine import StyleSense

    ss = StyleSense(home, threads=threads)
    call = style_clusters if kind == "styles" else shopper_segments
    opened = time.perf_counter()
    result = call(ss, refresh=cold)
    first = time.perf_counter() - opened
    out = {"open_s": round(opened - started, 3), "first_s": round(first, 3), "cached": result.cached}
    if cold:
        again = time.perf_counter()
        call(ss, refresh=True)
        out["warm_s"] = round(time.perf_counter() - again, 3)
        out["result"] = result.to_dict(**({"points": False} if kind == "styles" else {"members": False}))
    return out


def in_new_process(home: Path, kind: str, threads: int, cold: bool) -> dict:
    args = [sys.executable, __file__, "--measure", str(home), kind, "--threads", str(threads)]
    args += ["--cold"] if cold else []
    done = subprocess.run(args, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def cli_seconds(home: Path, kind: str) -> float:
    started = time.perf_counter()
    subprocess.run([str(Path(sys.executable).parent / "stylesense"), "--home", str(home), "clusters",
                    *(["--segments"] if kind == "segments" else [])], capture_output=True, check=True)
    return round(time.perf_counter() - started, 3)


def run(name: str, threads: int) -> dict:
    home = home_for(name, threads)
    out: dict = {"home": str(home.relative_to(ROOT))}
    for kind in ("styles", "segments"):
        cold = in_new_process(home, kind, threads, cold=True)
        cached = in_new_process(home, kind, threads, cold=False)
        result = cold.pop("result")
        out[kind] = {"cold_s": cold["first_s"], "warm_s": cold["warm_s"],
                     "new_process_s": round(cold["first_s"] - cold["warm_s"], 3), "cached_s": cached["first_s"],
                     "cached_hit": cached["cached"], "open_s": cached["open_s"], "cli_cached_s": cli_seconds(home, kind),
                     "result": result}
    return out


def report(name: str, row: dict) -> None:
    styles, segments = row["styles"], row["segments"]
    r = styles["result"]
    print(f"\n{name}: {r['n_clusters']} style clusters of {r['items']} items, {r['noise']} unassigned "
          f"({r['noise'] / r['items']:.1%}); min_cluster_size {r['min_cluster_size']}")
    for c in r["clusters"][:TOP]:
        labels = ", ".join(f"{t['column']}={t['value']} ({t['purity']:.0%})" for t in c["top_labels"]) or "mixed"
        print(f"  {c['id']:>3} {c['size']:>5}  {labels}")
    s = segments["result"]
    print(f"{name}: {s['n_segments']} shopper segments of {s['shoppers']} shoppers by {s['category']!r} "
          f"({s['unassigned']} unassigned), silhouette {s['silhouette']}")
    for g in s["segments"]:
        favourites = ", ".join(f"{f['category']} {f['share']:.0%}" for f in g["favourite_categories"][:3])
        print(f"  {g['id']:>3} {g['size']:>5}  {favourites}")
    print(f"\n{'seconds':<10} {'cold':>7} {'warm':>7} {'new proc':>9} {'cached':>7} {'cli cached':>11}")
    for kind in ("styles", "segments"):
        t = row[kind]
        print(f"{kind:<10} {t['cold_s']:>7.2f} {t['warm_s']:>7.2f} {t['new_process_s']:>9.2f} "
              f"{t['cached_s']:>7.3f} {t['cli_cached_s']:>11.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=["kaggle", "hm"], default=["kaggle", "hm"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--measure", nargs=2, metavar=("HOME", "KIND"), help=argparse.SUPPRESS)
    parser.add_argument("--cold", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure[0], args.measure[1], args.threads, args.cold)))
        return
    rows = {}
    for name in args.only:
        rows[name] = run(name, args.threads)
        report(name, rows[name])
    write_json(RESULTS / "clusters.json", {"threads": args.threads, "loadavg": os.getloadavg(), "catalogues": rows})


if __name__ == "__main__":
    main()
