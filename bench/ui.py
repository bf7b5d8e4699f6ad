"""How long each page of the web app takes to become interactive in a real browser, and the
README's screenshots.

    python bench/ui.py [--loads 5] [--only kaggle hm] [--pages search shopper ...]
                       [--recluster] [--browser-cache] [--no-screenshots] [--out bench/results/ui.json]

Issue 12 asks that each page be interactive within 2 s on the shared Kaggle catalogue after
the first load. Two homes, kept under bench/results/homes/ so a rerun reuses them:

- ``ui-kaggle``: a copy of ``bench/api.py``'s home (``homes/api``: the 9,583 Kaggle products
  embedded, MovieLens-100K's ratings mapped onto the first 1,682, EASE trained; run
  bench/api.py once first), with itemknn and visual trained too, so the shopper page shows
  three models side by side. The original is never written to.
- ``ui-hm``: the shared H&M sample built with the CLI as a user would (``stylesense init``,
  ``catalog import`` of the 4,116 articles and their photos, ``events import --preset hm`` of
  the 30,451 priced purchases), popular, itemknn and visual trained and one offline
  evaluation run, so the dashboards have sales, revenue and an evaluation to show.

For every page, a fresh ``stylesense ui`` server (one process, one CPU thread: OMP, OpenBLAS
and MKL at 1, as ``ServerProcess`` sets them) and Debian's headless chromium driven by
Playwright. The first load is that server's first visit (Python imports, opening the home,
thumbnails and any clustering not cached yet); then ``--loads`` more, each in a fresh browser
context (a new Streamlit session; ``--browser-cache``: new tabs of one context, a returning
visitor). A load is timed on the page's own clock, from the start of navigation to the later
of (a) the page's ready text shown and (b) the end of the script's last run (Streamlit's
``data-test-script-state`` back at ``notRunning``, its status widget gone, and no new run
within ``QUIET_S``). ``start`` is when the script's first run began: before it, the browser
loads Streamlit's frontend and connects. After each load one interaction, timed the same way
from the action: search uploads a photo until the result cards show, shopper chooses a
shopper until their history and recommendations show, dashboards switch the period to
months, clusters choose another cluster, near-duplicates search at the default threshold.
Beside each time, the CPU seconds the server and the page's renderer process spent on it: on
2 shared cores a time over the sum of those is spent waiting for a core. The JSON also holds
when the last product photo arrived (resource timing of ``/media/``) and the renderer's main
thread alone. ``target``: the median load after the first, and the median interaction, within
2 s.

Screenshots (1280x800 viewports, and the search page at a phone's 390x844) go to
docs/screenshots/, from the last load of each page: every page on the Kaggle home, the
dashboards and clusters on the H&M home too (``*-hm.png``). The machine's 2 cores are shared,
so the JSON records the load average before and after each home.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stylesense.serving.process import THREADS, ServerProcess  # noqa: E402 - imports no numpy

os.environ.update(THREADS)

from PIL import Image  # noqa: E402

from common import RESULTS, ROOT, write_json  # noqa: E402

DATA = Path(os.environ.get("STYLESENSE_SHARED_DATA", ROOT / ".." / "shared" / "data"))
HOMES = RESULTS / "homes"
API_HOME = HOMES / "api"
SHOTS = ROOT / "docs" / "screenshots"
CHROMIUM = os.environ.get("STYLESENSE_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
STYLESENSE = Path(sys.executable).with_name("stylesense")
TARGET_S = 2.0
QUIET_S = 1.0  # a run is over once no other starts within this long
WAIT_S = 300.0  # the longest a cold load (clustering 9,583 photos) may take
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
KAGGLE_MODELS = ("ease", "itemknn", "visual")
HM_MODELS = ("popular", "itemknn", "visual")
HM_ARTICLES = 4116
QUERY_HM = "0301656026"  # an H&M denim shirt dress: the shopper's photo searched on the Kaggle home
QUERY_KAGGLE = "10360"  # a Kaggle black dress: the one searched on the H&M home
QUERIES = {"kaggle": DATA / "hm" / "images" / QUERY_HM[:3] / f"{QUERY_HM}.jpg",
           "hm": DATA / "fashion-product-images" / "images" / f"{QUERY_KAGGLE}.jpg"}

WATCH = """
performance.setResourceTimingBufferSize(10000);
window.__runs = [];
new MutationObserver(records => {
  for (const r of records) window.__runs.push([r.target.getAttribute('data-test-script-state'), performance.now()]);
}).observe(document, {subtree: true, attributes: true, attributeFilter: ['data-test-script-state']});
"""
"""Logs every change of Streamlit's script state (``running``, ``notRunning``, ...) with the
page's clock, from before the app's own scripts run."""

STATE = """() => ({runs: window.__runs, now: performance.now(),
  busy: document.querySelector('[data-testid="stStatusWidget"]') !== null,
  errors: document.querySelectorAll('[data-testid="stException"], [data-testid="stAlertContentError"]').length})"""
PHOTOS = """since => Math.max(0, ...performance.getEntriesByType('resource')
  .filter(e => new URL(e.name).pathname.startsWith('/media/') && e.startTime >= since).map(e => e.responseEnd))"""


# -- homes -------------------------------------------------------------------------------------


def cli(home: Path, *args: str, check: bool = True) -> None:
    """One ``stylesense`` command on ``home``, on one thread, as a user would type it."""
    print(f"  stylesense {' '.join(args)}", flush=True)
    done = subprocess.run([str(STYLESENSE), "--home", str(home), "--threads", "1", *args], env=os.environ)
    if check and done.returncode:
        sys.exit(f"stylesense {' '.join(args)} failed with {done.returncode}")


def copy_home(source: Path, target: Path) -> None:
    """``source`` copied to ``target``: files as they are, the SQLite database through
    SQLite's backup (a consistent copy even while another process has it open). Into a
    temporary folder first, so an interrupted copy is never taken for a home."""
    partial = target.with_name(f".{target.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    shutil.copytree(source, partial, symlinks=True, ignore=shutil.ignore_patterns("stylesense.db*", ".*.lock"))
    with sqlite3.connect(source / "stylesense.db") as src, sqlite3.connect(partial / "stylesense.db") as dst:
        src.backup(dst)
    partial.rename(target)


def train_missing(home: Path, models: tuple[str, ...]) -> None:
    from stylesense.engine import StyleSense

    ss = StyleSense(home, threads=1)
    trained = set(ss.behaviour.trained())
    ss.store.engine.dispose()
    for name in models:
        if name not in trained:
            cli(home, "train", "--model", name)


def kaggle_home() -> Path:
    home = HOMES / "ui-kaggle"
    if not (home / "stylesense.db").exists():
        if not (API_HOME / "stylesense.db").exists():
            sys.exit(f"no {API_HOME}: run `python bench/api.py` once first (it builds the shared Kaggle home)")
        print(f"copying {API_HOME.relative_to(ROOT)} to {home.relative_to(ROOT)}", flush=True)
        copy_home(API_HOME, home)
    train_missing(home, KAGGLE_MODELS)
    return home


def hm_home() -> Path:
    from stylesense.engine import StyleSense

    home = HOMES / "ui-hm"
    hm = DATA / "hm"
    if not (home / "config.json").exists():
        cli(home, "init")
    ss = StyleSense(home, threads=1)
    items, events = ss.store.count(), ss.behaviour.events.count()
    evaluated = ss.behaviour.last_evaluation_path.exists()
    ss.store.engine.dispose()
    if items < HM_ARTICLES:
        started = time.perf_counter()
        cli(home, "catalog", "import", str(hm / "articles.csv"), "--id-column", "article_id",
            "--images", "images/{article_id:.3}/{article_id}.jpg", check=False)  # exit 1 lists warned rows
        ss = StyleSense(home, threads=1)
        items = ss.store.count()
        ss.store.engine.dispose()
        if not items:
            sys.exit(f"no H&M article was imported into {home}: see the import's report above")
        print(f"  {items} H&M articles imported in {time.perf_counter() - started:.0f} s")
    if not events:
        cli(home, "events", "import", str(hm / "transactions.csv"), "--preset", "hm")
    train_missing(home, HM_MODELS)
    if not evaluated:
        cli(home, "evaluate", "recommenders", "--protocol", "temporal", "--test-days", "28",
            "--models", ",".join(HM_MODELS))
    return home


def shoppers(home: Path, n: int) -> list[str]:
    """``n`` shoppers whose 12 latest events are all on catalogue products (a full history
    strip), and whose id no other id contains (typing it picks them alone)."""
    from stylesense.engine import StyleSense

    ss = StyleSense(home, threads=1)
    users = [u for u in ss.behaviour.events.users() if not u.startswith(("bench-", "library-"))]
    catalogue = {it.item_id for it in ss.items()}
    chosen = []
    for user in users:
        if any(user in other and user != other for other in users):
            continue
        history = ss.behaviour.events.latest(user, limit=12).events
        if len(history) == 12 and all(e.item_id in catalogue for e in history):
            chosen.append(user)
            if len(chosen) == n:
                break
    ss.store.engine.dispose()
    return chosen


# -- timing ------------------------------------------------------------------------------------


@dataclass
class Page:
    """One page: its path, the text that says it is drawn, and its interaction (given the
    tab and the load's number, it acts and returns the text that says the result is drawn,
    and the page clock's reading just before the action)."""

    name: str
    path: str
    ready: str
    interaction: str = ""
    act: Callable[[Any, int], tuple[str, float]] | None = None
    shot_at: str | None = None  # the text the screenshot starts at (default: the page's title)


def now(tab) -> float:
    return tab.evaluate("performance.now()")


def settle(tab, ready: str, since: float) -> dict:
    """Wait until ``ready`` is shown and a run of the script that started after ``since``
    (page clock, ms) has ended with no other within QUIET_S; return when that was, in s
    after ``since``, when the first run started (before it: the browser loading Streamlit's
    frontend and connecting), and when the last photo fetched since then arrived."""
    tab.get_by_text(ready).first.wait_for(timeout=WAIT_S * 1000)
    shown = now(tab)
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        s = tab.evaluate(STATE)
        runs = [(state, t) for state, t in s["runs"] if t >= since]
        started = next((t for state, t in runs if state == "running"), None)
        last = runs[-1] if runs else None
        done = last is not None and last[0] == "notRunning" and not s["busy"]
        if done and started is not None and s["now"] - last[1] >= QUIET_S * 1000:
            photos = tab.evaluate(PHOTOS, since)
            return {"s": round((max(shown, last[1]) - since) / 1000, 3),
                    "script_start_s": round((started - since) / 1000, 3),
                    "script_end_s": round((last[1] - since) / 1000, 3),
                    "photos_s": round((photos - since) / 1000, 3) if photos else None,
                    "runs": sum(state == "running" for state, _ in runs), "errors": s["errors"]}
        time.sleep(0.05)
    raise RuntimeError(f"the page did not settle within {WAIT_S:.0f} s (script states {s['runs'][-4:]})")


def pages(photo: Path, users: list[str]) -> list[Page]:
    def search(tab, n: int) -> tuple[str, float]:
        t = now(tab)
        tab.locator('input[type="file"]').first.set_input_files(str(photo))
        return "most similar products", t

    def shopper(tab, n: int) -> tuple[str, float]:
        user = users[n % len(users)]
        box = tab.get_by_role("combobox", name="Shopper")
        box.click()
        box.fill(user)
        t = now(tab)
        tab.keyboard.press("Enter")
        return f"Recent history of {user}", t

    def dashboards(tab, n: int) -> tuple[str, float]:
        t = now(tab)
        tab.get_by_role("radio", name="month").click()
        return "Shoppers and events over time", t

    def clusters(tab, n: int) -> tuple[str, float]:
        cluster = 1 + n % 5  # the clusters are listed by id, largest first
        tab.get_by_role("combobox", name="cluster").click()
        for _ in range(cluster):
            tab.keyboard.press("ArrowDown")
        t = now(tab)
        tab.keyboard.press("Enter")
        return f"The most typical products of cluster {cluster}", t

    def duplicates(tab, n: int) -> tuple[str, float]:
        t = now(tab)
        tab.get_by_role("button", name="Find near-duplicates").click()
        return "pairs at similarity", t

    return [
        Page("search", "", "Upload a photo, take one", "upload a photo", search),
        Page("shopper", "shopper", "Choose a shopper", "choose a shopper", shopper, shot_at="Recent history of"),
        Page("dashboards", "dashboards", "Shoppers and events over time", "period: month", dashboards),
        Page("clusters", "clusters", "estimated number of clusters", "another cluster", clusters),
        Page("duplicates", "duplicates", "Find near-duplicates", "find pairs", duplicates),
        Page("catalogue", "catalogue", "Catalogue CSV"),
        Page("experiments", "experiments", "Start an experiment"),
    ]


def cpu_s(pid: int) -> float:
    """CPU seconds (user and system, every thread) process ``pid`` has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def new_context(browser) -> Any:
    context = browser.new_context(viewport=DESKTOP)
    context.add_init_script(WATCH)
    return context


def visit(browser, server: ServerProcess, page: Page, n: int, shot: Path | None, shared: Any = None) -> dict:
    """One load of ``page`` in a fresh browser context (a new tab of ``shared`` where given:
    the browser's cache kept), then its interaction; a screenshot of the result when ``shot``
    is given. Each also records the CPU seconds the server and the page's renderer process
    (scripts, layout, painting: Chrome's ProcessTime; its main thread's alone: ThreadTime)
    spent on it, so that waiting for a busy machine's cores shows as the rest."""
    context = shared or new_context(browser)
    tab = context.new_page()
    cdp = context.new_cdp_session(tab)
    cdp.send("Performance.enable")
    errors: list[str] = []
    tab.on("pageerror", lambda e: errors.append(str(e)))

    def costs() -> tuple[float, float, float]:
        metrics = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
        return cpu_s(server.proc.pid), metrics["ProcessTime"], metrics["ThreadTime"]

    def timed(ready: str, since: float, before: tuple[float, float, float]) -> dict:
        out = settle(tab, ready, since)
        after = costs()
        return {**out, **{k: round(a - b, 3) for k, a, b in zip(("server_cpu_s", "browser_cpu_s", "browser_main_cpu_s"),
                                                                 after, before)}}

    try:
        server_before = cpu_s(server.proc.pid)
        tab.goto(f"{server.url}/{page.path}", wait_until="commit")  # the page's own renderer from here
        out = {"load": timed(page.ready, 0.0, (server_before, *costs()[1:]))}
        if page.act is not None:
            before = costs()
            ready, since = page.act(tab, n)
            out["interaction"] = timed(ready, since, before)
        if shot is not None:
            screenshot(tab, shot, page.shot_at)
        out["js_errors"] = errors
        return out
    finally:
        tab.close()
        if shared is None:
            context.close()


def screenshot(tab, path: Path, at: str | None = None) -> None:
    """The viewport from the text ``at`` (default: the page's title) once every photo has
    arrived and the charts have been drawn."""
    start = tab.get_by_text(at).first if at else tab.locator("h1").first
    start.evaluate("""e => {
      e.scrollIntoView({block: 'start'});
      let box = e.parentElement;  // then down from under Streamlit's header
      while (box && box.scrollHeight <= box.clientHeight) box = box.parentElement;
      if (box) box.scrollTop -= 70;
    }""")
    tab.mouse.move(DESKTOP["width"] - 30, DESKTOP["height"] // 2)  # the empty right margin: no hover effect shown
    tab.wait_for_function("Array.from(document.images).every(i => i.complete)", timeout=WAIT_S * 1000)
    tab.wait_for_timeout(1000)  # vega draws its charts after the script's run
    path.parent.mkdir(parents=True, exist_ok=True)
    shot = Image.open(io.BytesIO(tab.screenshot())).convert("RGB")
    # 256 colours, dithered: a third of the size, and a page's flat colours stay exact
    shot.quantize(256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.FLOYDSTEINBERG).save(path, optimize=True)
    print(f"  screenshot {path.relative_to(ROOT)} ({path.stat().st_size // 1024} KiB)", flush=True)


def phone_shot(browser, server: ServerProcess, name: str, path: Path) -> None:
    """The search page at a phone's width, scrolled to the first result cards."""
    context = browser.new_context(viewport=PHONE)
    context.add_init_script(WATCH)
    tab = context.new_page()
    try:
        tab.goto(server.url, wait_until="commit")
        settle(tab, "Upload a photo, take one", 0.0)
        since = now(tab)
        tab.locator('input[type="file"]').first.set_input_files(str(QUERIES[name]))
        settle(tab, "most similar products", since)
        screenshot(tab, path, "most similar products")
    finally:
        context.close()


FEED = [  # a small Kaggle-style feed: three new products, one without its photo, one price not a number
    ("30001", "0301656026", "Denim Shirt Dress", "Blue", "29.99"),
    ("30002", "0212629047", "Jersey Maxi Dress", "Green", "19.99"),
    ("30003", "0220094019", "Striped Bandeau Dress", "Grey", "n/a"),
    ("30004", None, "Pleated Sleeveless Dress", "Pink", "24.99"),
]


def import_shot(browser, server: ServerProcess, name: str, path: Path) -> None:
    """The catalogue page after importing ``FEED`` (a CSV and a zip of its photos): the
    import's counts and its problem rows. The products it added are removed afterwards, so
    the home's live catalogue, and the clusters cached for it, are as before."""
    from stylesense.engine import StyleSense

    columns = "id,gender,masterCategory,subCategory,articleType,baseColour,season,year,usage,productDisplayName,price"
    with tempfile.TemporaryDirectory() as tmp:
        feed = Path(tmp) / "new-dresses.csv"
        feed.write_text(columns + "\n" + "".join(
            f"{i},Women,Apparel,Dress,Dresses,{colour},Summer,2020,Casual,{title},{price}\n"
            for i, _, title, colour, price in FEED))
        photos = Path(tmp) / "new-dresses.zip"
        with zipfile.ZipFile(photos, "w") as z:
            for i, article, *_ in FEED:
                if article is not None:
                    z.write(DATA / "hm" / "images" / article[:3] / f"{article}.jpg", f"images/{i}.jpg")
        context = new_context(browser)
        tab = context.new_page()
        try:
            tab.goto(f"{server.url}/catalogue", wait_until="commit")
            settle(tab, "Catalogue CSV", 0.0)
            uploads = tab.locator('input[type="file"]')
            since = now(tab)
            uploads.nth(0).set_input_files(str(feed))
            settle(tab, "new-dresses.csv", since)
            since = now(tab)
            uploads.nth(1).set_input_files(str(photos))
            settle(tab, "new-dresses.zip", since)
            since = now(tab)
            tab.get_by_role("button", name="Import").click()
            settle(tab, "rows with problems", since)
            screenshot(tab, path, "Catalogue CSV")
        finally:
            context.close()
            ss = StyleSense(server.home, threads=1)
            ss.remove_items([i for i, article, *_ in FEED if article is not None])
            ss.store.engine.dispose()


EXTRA_SHOTS = {"search": ("search-phone", phone_shot), "catalogue": ("catalogue", import_shot)}
"""Screenshots a page's timed loads cannot take: made on the same server after them."""


def summarise(first: dict, rest: list[dict]) -> dict:
    """The first measurement as it is, the others' median of each figure (and the max time)."""
    def median(key: str) -> float | None:
        values = [r[key] for r in rest if r[key] is not None]
        return round(statistics.median(values), 3) if values else None

    out = {f"first_{k}": v for k, v in first.items() if k.endswith("_s")}
    out.update({f"{k.removesuffix('_s')}_median_s": median(k) for k in first if k.endswith("_s")})
    out.update({"first_s": first["s"], "median_s": median("s"), "max_s": max((r["s"] for r in rest), default=None),
                "all_s": [first["s"], *(r["s"] for r in rest)], "runs": [first["runs"], *(r["runs"] for r in rest)],
                "errors_shown": sum(r["errors"] for r in [first, *rest])})
    return out


def measure(name: str, home: Path, browser, todo: list[Page], loads: int, shots: set[str], recluster: bool,
            browser_cache: bool) -> dict:
    if recluster:
        shutil.rmtree(home / "clusters", ignore_errors=True)
    cached = sorted(p.name for p in (home / "clusters").glob("*.npz"))
    load = [os.getloadavg()[0]]
    rows = []
    for page in todo:
        server = ServerProcess(home, RESULTS / f"ui-{name}-server.log", workers=None, command="ui")
        started = time.perf_counter()
        server.start(ready="/_stcore/health")
        up = time.perf_counter() - started
        shared = new_context(browser) if browser_cache else None
        try:
            suffix = "" if name == "kaggle" else f"-{name}"
            extra, take = EXTRA_SHOTS.get(page.name, ("", None))
            visits = []
            for n in range(loads + 1):
                last = n == loads and page.name in shots and extra != page.name
                visits.append(visit(browser, server, page, n, SHOTS / f"{page.name}{suffix}.png" if last else None,
                                    shared))
            if take is not None and extra in shots:
                take(browser, server, name, SHOTS / f"{extra}{suffix}.png")
        finally:
            if shared is not None:
                shared.close()
            server.stop()
        row = {"home": name, "page": page.name, "interaction": page.interaction, "server_start_s": round(up, 2),
               "load": summarise(visits[0]["load"], [v["load"] for v in visits[1:]]),
               "js_errors": sorted({e for v in visits for e in v["js_errors"]})}
        if page.act is not None:
            row["act"] = summarise(visits[0]["interaction"], [v["interaction"] for v in visits[1:]])
        row["target_met"] = row["load"]["median_s"] <= TARGET_S and \
            ("act" not in row or row["act"]["median_s"] <= TARGET_S)
        print(line(row), flush=True)
        rows.append(row)
    load.append(os.getloadavg()[0])
    return {"home": str(home.relative_to(ROOT)), "clusters_cached_before": cached,
            "loadavg_before_after": [round(x, 2) for x in load], "pages": rows}


HEAD = (f"{'':<19} {'load':-^42}   {'interaction':-^52}\n"
        f"{'home':<7} {'page':<11} {'first':>6} {'median':>6} {'max':>6} {'start':>6} {'server':>6} {'browser':>7}   "
        f"{'':<17} {'first':>6} {'median':>6} {'max':>6} {'server':>6} {'browser':>7}  target")


def line(row: dict) -> str:
    def f(x: float | None) -> str:
        return "-" if x is None else f"{x:.2f}"

    ld, act = row["load"], row.get("act")
    cells = (f"{f(act['first_s']):>6} {f(act['median_s']):>6} {f(act['max_s']):>6} "
             f"{f(act['server_cpu_median_s']):>6} {f(act['browser_cpu_median_s']):>7}") if act else " " * 34
    verdict = "pass" if row["target_met"] else "FAIL"
    if ld["errors_shown"] or row["js_errors"] or (act and act["errors_shown"]):
        verdict += " (errors shown)"
    return (f"{row['home']:<7} {row['page']:<11} {f(ld['first_s']):>6} {f(ld['median_s']):>6} {f(ld['max_s']):>6} "
            f"{f(ld['script_start_median_s']):>6} {f(ld['server_cpu_median_s']):>6} "
            f"{f(ld['browser_cpu_median_s']):>7}   "
            f"{row['interaction']:<17} {cells}  {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loads", type=int, default=5, help="loads of each page after the first")
    parser.add_argument("--only", nargs="*", choices=["kaggle", "hm"], default=["kaggle", "hm"])
    parser.add_argument("--pages", nargs="*", default=None, help="page names (default: all)")
    parser.add_argument("--recluster", action="store_true",
                        help="drop the homes' cached clusters first: the clusters page's first load computes them")
    parser.add_argument("--browser-cache", action="store_true",
                        help="every load in a new tab of one browser context (a returning visitor: Streamlit's "
                             "frontend from the browser's cache) instead of a fresh context each")
    parser.add_argument("--no-screenshots", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS / "ui.json")
    args = parser.parse_args()
    if args.loads < 1:
        parser.error("--loads: at least 1 (the target is on the loads after the first)")
    if not DATA.exists():
        sys.exit(f"no shared data at {DATA} (set STYLESENSE_SHARED_DATA)")
    if CHROMIUM is None:
        sys.exit("no chromium executable (apt-get install chromium, or set STYLESENSE_CHROMIUM)")
    from playwright.sync_api import sync_playwright

    builders = {"kaggle": kaggle_home, "hm": hm_home}
    shots = {"kaggle": {"search", "search-phone", "shopper", "dashboards", "clusters", "duplicates", "catalogue"},
             "hm": {"dashboards", "clusters"}}
    results = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        for name in args.only:
            print(f"{name}: preparing the home", flush=True)
            home = builders[name]()
            todo = [pg for pg in pages(QUERIES[name], shoppers(home, args.loads + 1))
                    if args.pages is None or pg.name in args.pages]
            print(HEAD)
            results[name] = measure(name, home, browser, todo, args.loads,
                                    set() if args.no_screenshots else shots[name], args.recluster, args.browser_cache)
        browser.close()

    print(f"\nseconds to interactive: the first on a fresh server, then the median and max of {args.loads} "
          f"in fresh browser sessions; start: when the page's script started (before it the browser loads "
          f"Streamlit's frontend); server, browser: CPU seconds of the server and of the page's renderer (medians); "
          f"target: median load and interaction within {TARGET_S:.0f} s")
    print(HEAD)
    for r in results.values():
        for row in r["pages"]:
            print(line(row))
        print(f"  load average {r['loadavg_before_after'][0]:.2f} -> {r['loadavg_before_after'][1]:.2f}, "
              f"clusters cached before: {', '.join(r['clusters_cached_before']) or 'none'}")
    write_json(args.out, {"loads": args.loads, "browser_cache": args.browser_cache, "target_s": TARGET_S,
                          "quiet_s": QUIET_S, "cpus": os.cpu_count(), "threads": 1, "results": results})


if __name__ == "__main__":
    main()
