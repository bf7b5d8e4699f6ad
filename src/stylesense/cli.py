"""Command line: parses input, calls the library, prints results. No logic of its own.

Start-up time is part of every command, so this module imports only typer, rich and the
library's light modules; the engine (SQLAlchemy, NumPy) loads when a command opens the home,
and the engine loads the CNN runtime, FAISS, scikit-learn or torch only when a command uses
them (tests/test_cli_startup.py, bench/cli.py).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from typer.core import TyperGroup

from stylesense.catalog.filters import Filters
from stylesense.errors import StyleSenseError

if TYPE_CHECKING:
    from stylesense.engine import Hit, ImportReport, StyleSense


class _Commands(TyperGroup):
    """The command group that maps the library's errors once for every command: any
    StyleSenseError (bad input, something missing, a damaged file of the home: the message
    says what and how to fix it) becomes one `error:` line and exit status 2."""

    def invoke(self, ctx: typer.Context) -> object:
        try:
            return super().invoke(ctx)
        except StyleSenseError as e:
            _fail(str(e))


app = typer.Typer(help="stylesense: visual search and recommendations for fashion catalogues.",
                  no_args_is_help=True, pretty_exceptions_enable=False, cls=_Commands)
catalog_app = typer.Typer(help="Import, list and remove catalogue items.", no_args_is_help=True)
index_app = typer.Typer(help="Build the nearest-neighbour index.", no_args_is_help=True)
evaluate_app = typer.Typer(help="Measure search and recommendation quality on the home's data.", no_args_is_help=True)
events_app = typer.Typer(help="Record shopper behaviour: import logs, add live events.", no_args_is_help=True)
recommend_app = typer.Typer(help="Recommendations for a shopper (--user) or for everyone (batch).")
app.add_typer(catalog_app, name="catalog")
app.add_typer(index_app, name="index")
app.add_typer(evaluate_app, name="evaluate")
app.add_typer(events_app, name="events")
app.add_typer(recommend_app, name="recommend")
keys_app = typer.Typer(help="API keys for the REST server: create, list, revoke.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
experiment_app = typer.Typer(help="A/B experiments between trained models: create, list, stop, report.",
                             no_args_is_help=True)
app.add_typer(experiment_app, name="experiment")

out = Console()
err = Console(stderr=True, soft_wrap=True)
_state: dict[str, object] = {}

HomeOpt = Annotated[Optional[Path], typer.Option("--home", help="Workspace folder [env STYLESENSE_HOME; default ./stylesense-home].")]


@app.callback()
def main(
    home: HomeOpt = None,
    threads: Annotated[Optional[int], typer.Option(help="CPU threads for the CNN and index.")] = None,
) -> None:
    _state["home"] = home
    _state["threads"] = threads


def _open() -> StyleSense:
    from stylesense.engine import StyleSense

    return StyleSense(_state.get("home"), threads=_state.get("threads"))  # type: ignore[arg-type]


def _fail(message: str, code: int = 2) -> None:
    err.print(f"[red]error:[/red] {message}", highlight=False)
    raise typer.Exit(code)


def _exit_on_bad(problems: list[str], footer: str | None = None) -> None:
    """List the first 20 ``problems`` (bad input rows) and exit with status 1, if there are any."""
    if not problems:
        return
    for line in problems[:20]:
        err.print(f"  {line}", highlight=False)
    if len(problems) > 20:
        err.print(f"  ... and {len(problems) - 20} more")
    if footer:
        err.print(footer)
    raise typer.Exit(1)


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeRemainingColumn(), console=err, transient=True)


@app.command()
def init(
    adapter: Annotated[Optional[Path], typer.Option(help="Adapter file from `stylesense adapt`; every import then uses it.")] = None,
    embedder: Annotated[str, typer.Option(help="lite0 (224 px) or lite2 (260 px).")] = "lite0",
    index_kind: Annotated[str, typer.Option("--index", help="auto, flat, kdtree, ivf or hnsw (an index file); pgvector (in the --database-url Postgres) or milvus (--milvus-uri).")] = "auto",
    milvus_uri: Annotated[Optional[str], typer.Option(help="--index milvus: a Milvus server URI (http://host:19530) or a Milvus Lite file; default index/milvus.db in the home.")] = None,
    database_url: Annotated[Optional[str], typer.Option(help="SQLAlchemy URL; default SQLite in the home.")] = None,
    price_column: Annotated[str, typer.Option(help="Metadata column holding the price.")] = "price",
    stock_column: Annotated[str, typer.Option(help="Metadata column saying whether an item is in stock (0, false, no, sold out: never recommended).")] = "in_stock",
    catalogue_only: Annotated[bool, typer.Option("--catalogue-only", help="Recommend only catalogue products, never items known only from events.")] = False,
    colour_features: Annotated[bool, typer.Option("--colour-features", help="Also store each photo's colour descriptor, for `adapt --colour` to train a steerable adapter's colour part on (an adapter trained so sets it itself).")] = False,
    precision: Annotated[str, typer.Option(help="Inference precision: auto (bf16 where the CPU has it, else fp32), fp32, bf16, or int8 (calibrated on the first import's photos; fastest where the CPU has VNNI). `config precision=...` changes it later.")] = "auto",
) -> None:
    """Create a home (or re-configure an empty one)."""
    from stylesense.engine import StyleSense

    try:
        ss = StyleSense.init(_state.get("home"), embedder=embedder, adapter=adapter, index_kind=index_kind,  # type: ignore[arg-type]
                             database_url=database_url, price_column=price_column, stock_column=stock_column,
                             catalogue_only=catalogue_only, milvus_uri=milvus_uri, colour_features=colour_features,
                             precision=precision)
    except OSError as e:
        _fail(str(e))
    out.print(f"home ready: {ss.home.root} (embedder {ss.embedder_name}, index {ss.config.index_kind})")


@catalog_app.command("import")
def catalog_import(
    csv_path: Annotated[Path, typer.Argument(metavar="CSV", help="Product metadata table.")],
    images: Annotated[Optional[str], typer.Option(help="Image path template over the row's columns, relative to the CSV, e.g. images/{id}.jpg (default: the preset's).")] = None,
    id_column: Annotated[Optional[str], typer.Option(help="Column holding the product id (default: the preset's, else id).")] = None,
    preset: Annotated[Optional[str], typer.Option(help="Layout of a public catalogue: hm (H&M articles.csv: article_id, images/{article_id:.3}/{article_id}.jpg, product groups by product_code) or kaggle (styles.csv: id, images/{id}.jpg).")] = None,
    encoding: Annotated[str, typer.Option(help="Text encoding of the CSV.")] = "utf-8",
) -> None:
    """Add or update products (idempotent upsert by id; only changed photos are re-embedded).

    Exit status 1 when any row failed or was imported with a cell left empty (a value that is
    not a number in a numeric column): both are listed, and written to the report file."""
    report = _import(_open(), csv_path, images, id_column, encoding, preset=preset)
    problems = sorted(report.bad + report.warnings, key=lambda b: b.row)
    _exit_on_bad([f"row {b.row} (id {b.item_id or '-'}): {b.reason}" for b in problems],
                 f"problem rows written to {report.report_path}")


def _import(ss: StyleSense, csv_path: Path, images: str | None, id_column: str | None, encoding: str = "utf-8",
            preset: str | None = None) -> ImportReport:
    with _progress() as bar:
        task = bar.add_task("embedding photos", total=None)
        report = ss.import_catalog(csv_path, images, id_column=id_column, preset=preset, encoding=encoding,
                                   progress=lambda done, total: bar.update(task, completed=done, total=total))
    out.print(f"{report.rows} rows: {report.added} added, {report.updated} updated, "
              f"{report.unchanged} unchanged, {report.embedded} photos embedded, {len(report.bad)} failed")
    if report.warnings:
        out.print(f"{len(report.warnings)} rows imported with a cell left empty")
    return report


@catalog_app.command("remove")
def catalog_remove(ids: Annotated[list[str], typer.Argument(metavar="ID...")]) -> None:
    """Remove products from the catalogue and the index."""
    ss = _open()
    removed = ss.remove_items(ids)
    missing = sorted(set(ids) - set(removed))
    out.print(f"removed {len(removed)} item(s)")
    if missing:
        _fail(f"not in the catalogue: {', '.join(missing)}", 1)


def _set_hidden(ids: list[str], hidden: bool) -> None:
    found = _open().set_hidden(ids, hidden)
    out.print(f"{'hid' if hidden else 'showed'} {len(found)} item(s)")
    missing = sorted(set(ids) - set(found))
    if missing:
        _fail(f"not in the catalogue: {', '.join(missing)}", 1)


@catalog_app.command("hide")
def catalog_hide(ids: Annotated[list[str], typer.Argument(metavar="ID...")]) -> None:
    """Hide products: out of search and every recommendation, kept in the catalogue."""
    _set_hidden(ids, True)


@catalog_app.command("show")
def catalog_show(ids: Annotated[list[str], typer.Argument(metavar="ID...")]) -> None:
    """Show hidden products again."""
    _set_hidden(ids, False)


@catalog_app.command("list")
def catalog_list(limit: Annotated[int, typer.Option("-n", help="Rows to show.")] = 20) -> None:
    """Show the first items and the catalogue size."""
    items = _open().items()
    hidden = sum(it.hidden for it in items)
    table = Table(title=f"{len(items)} items ({hidden} hidden)")
    table.add_column("id")
    table.add_column("metadata")
    for it in items[:limit]:
        table.add_row(it.item_id + (" (hidden)" if it.hidden else ""), json.dumps(it.attrs, ensure_ascii=False)[:100])
    out.print(table)


@app.command("config")
def config_cmd(
    changes: Annotated[Optional[list[str]], typer.Argument(metavar="[KEY=VALUE]...", help="e.g. catalogue_only=true stock_column=available group_column=product_code gorse_feedback_types=star:purchase,like:cart precision=int8")] = None,
) -> None:
    """Show the home's settings, or change those that need no re-embedding."""
    from dataclasses import asdict

    ss = _open()
    config = ss.configure(_pairs(changes, "setting")) if changes else ss.config
    out.print_json(data=asdict(config))


@index_app.command("build")
def index_build(
    kind: Annotated[Optional[str], typer.Option(help="auto (by catalogue size), flat, kdtree, ivf, hnsw, pgvector or milvus; default: the home's kind.")] = None,
) -> None:
    """Rebuild the index from the stored features (written atomically)."""
    index = _open().build_index(kind)
    out.print(f"built {index.kind} index of {len(index)} items")


@app.command()
def search(
    image: Annotated[Optional[Path], typer.Argument(help="Query photo.")] = None,
    item: Annotated[Optional[str], typer.Option(help="Query by catalogue item id instead of a photo.")] = None,
    k: Annotated[int, typer.Option("-k", min=1, help="Number of results.")] = 10,
    where: Annotated[Optional[list[str]], typer.Option(help="COL=VALUE metadata filter; repeat for more.")] = None,
    min_price: Annotated[Optional[float], typer.Option()] = None,
    max_price: Annotated[Optional[float], typer.Option()] = None,
    in_stock: Annotated[bool, typer.Option("--in-stock", help="Only items the stock column says are in stock.")] = False,
    same: Annotated[Optional[str], typer.Option(help="Steer: the part to match, shape (or type) or colour; needs an adapter from `adapt --colour`.")] = None,
    vary: Annotated[Optional[str], typer.Option(help="Steer: the part to push apart, e.g. --same shape --vary colour: this cut in other colours.")] = None,
    steer: Annotated[Optional[str], typer.Option(help="Steer with explicit part weights, e.g. shape=1,colour=-0.5 (overrides --same/--vary).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Visually similar products for a photo or an item, with optional filters and steering."""
    from stylesense.vision.adapter import steering

    if (image is None) == (item is None):
        _fail("give a query IMAGE_PATH or --item ID (one of them)")
    ss = _open()
    filters = Filters.parse(where or [], min_price, max_price, ss.config.price_column,
                            in_stock=in_stock, stock_column=ss.config.stock_column)
    hits = ss.search(image, item=item, k=k, filters=filters, steer=steering(same, vary, steer))
    _print_hits(hits, as_json)


def _print_hits(hits: list[Hit], as_json: bool) -> None:
    if as_json:
        out.print_json(data=[{**h.to_dict(), "image": h.image_path} for h in hits])
        return
    table = Table()
    for col in ("#", "item", "score", "metadata"):
        table.add_column(col)
    for rank, h in enumerate(hits, 1):
        table.add_row(str(rank), h.item_id, f"{h.score:.3f}", ", ".join(f"{k}={v}" for k, v in h.attrs.items()))
    out.print(table)


@app.command()
def duplicates(
    threshold: Annotated[float, typer.Option(help="Cosine similarity of off-the-shelf features at or above which two photos count as near-duplicates (0.97: re-shoots and re-encodes; below ~0.96 it finds same-model shots of different products).")] = 0.97,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Near-duplicate product photos in the catalogue."""
    pairs = _open().duplicates(threshold)
    if as_json:
        out.print_json(data=[{"a": a, "b": b, "score": round(s, 6)} for a, b, s in pairs])
        return
    table = Table(title=f"{len(pairs)} near-duplicate pairs (cosine >= {threshold})")
    for col in ("item", "duplicate of", "score"):
        table.add_column(col)
    for a, b, s in pairs:
        table.add_row(a, b, f"{s:.4f}")
    out.print(table)


@app.command()
def adapt(
    label: Annotated[list[str], typer.Option(help="Label column to learn from; repeat for more.")],
    out_path: Annotated[Path, typer.Option("--out", help="Adapter file to write.")],
    group: Annotated[Optional[str], typer.Option(help="Column marking items that are the same product.")] = None,
    colour: Annotated[Optional[list[str]], typer.Option(help="Colour column; given, the adapter learns a shape part and a colour part, and search can be steered (--same/--vary/--steer).")] = None,
    mix: Annotated[str, typer.Option(help="Share of the off-the-shelf vector in the search vectors, 0..1, or auto (chosen on items whose first --label value the rest lacks): unseen kinds of product fall back towards it.")] = "0",
) -> None:
    """Train a small head on the catalogue's own labels (frozen CNN features)."""
    from stylesense.vision.adapter import parse_mix

    mix_weight = parse_mix(mix)
    ss = _open()
    with _progress() as bar:
        task = bar.add_task("training adapter", total=None)
        ss.train_adapter(label, group, out=out_path, colour=colour or (), mix=mix_weight,
                         progress=lambda done, total: bar.update(task, completed=done, total=total))
    out.print(f"adapter written to {out_path}; use it with: stylesense --home NEW_HOME init --adapter {out_path}")


@evaluate_app.command("retrieval")
def evaluate_retrieval(
    label: Annotated[str, typer.Option(help="Items with the same value count as relevant.")],
    group: Annotated[Optional[str], typer.Option(help="Same-product column for group recall (default: the home's group_column).")] = None,
    k: Annotated[int, typer.Option("-k", min=1)] = 10,
    adapt_split: Annotated[bool, typer.Option("--adapt", help="Train an adapter on half the items, measure on the other half.")] = False,
    split: Annotated[str, typer.Option(help="With --adapt: half (whole products on one side) or labels (a third of the label's values held out: seen and unseen labels, off-the-shelf vs adapted).")] = "half",
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Write the result as JSON here.")] = None,
) -> None:
    """Leave-one-out retrieval precision, mAP and same-product recall."""
    result = _open().evaluate_retrieval(label, group, k=k, adapt=adapt_split, split=split)
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(result, indent=2) + "\n")
    table = Table(title=f"retrieval, leave-one-out, k={k}")
    table.add_column("metric")
    table.add_column("value")

    def rows(prefix: str, values: dict) -> None:  # seen/unseen results nest: one dotted row each
        for key, value in values.items():
            if isinstance(value, dict):
                rows(f"{prefix}{key}.", value)
            else:
                table.add_row(prefix + key, f"{value:.4f}" if isinstance(value, float) else str(value))

    rows("", result)
    out.print(table)


@events_app.command("import")
def events_import(
    csv_path: Annotated[Path, typer.Argument(metavar="CSV", help="Event log (one row per event).")],
    preset: Annotated[Optional[str], typer.Option(help="Column layout of a public data set: hm (H&M transactions) or movielens (RecBole .inter).")] = None,
    user_column: Annotated[Optional[str], typer.Option()] = None,
    item_column: Annotated[Optional[str], typer.Option()] = None,
    time_column: Annotated[Optional[str], typer.Option(help="ISO date/time or epoch seconds.")] = None,
    event_type: Annotated[Optional[str], typer.Option("--type", help="One type for every row: view, click, cart, purchase, like, rating.")] = None,
    type_column: Annotated[Optional[str], typer.Option(help="Column holding each row's type.")] = None,
    price_column: Annotated[Optional[str], typer.Option()] = None,
    value_column: Annotated[Optional[str], typer.Option(help="Explicit value, e.g. a rating.")] = None,
    session_column: Annotated[Optional[str], typer.Option()] = None,
    encoding: Annotated[Optional[str], typer.Option(help="Text encoding of the file, e.g. latin-1 [default: utf-8].")] = None,
) -> None:
    """Import events; re-importing the same file adds nothing, bad rows are reported."""
    from stylesense.events import PRESETS

    given = {"user_column": user_column, "item_column": item_column, "time_column": time_column,
             "type": event_type, "type_column": type_column, "price_column": price_column,
             "value_column": value_column, "session_column": session_column, "encoding": encoding}
    options = {key: value for key, value in given.items() if value is not None}
    if preset is None:
        missing = [f"--{k.replace('_', '-')}" for k in ("user_column", "item_column", "time_column") if k not in options]
        if "type" not in options and "type_column" not in options:
            missing.append("--type or --type-column")
        if missing:
            _fail(f"without --preset ({', '.join(PRESETS)}) give {', '.join(missing)}")
    ss = _open()
    try:
        report = ss.behaviour.import_events(csv_path, preset=preset, **options)
    except OSError as e:
        _fail(str(e))
    out.print(f"{report.rows} rows: {report.inserted} imported, {report.duplicates} already stored, "
              f"{len(report.bad)} failed")
    _exit_on_bad([f"line {b.row}: {b.reason}" for b in report.bad])


@events_app.command("add")
def events_add(
    user: Annotated[str, typer.Option(help="Shopper id.")],
    item: Annotated[str, typer.Option(help="Item id.")],
    event_type: Annotated[str, typer.Option("--type", help="view, click, cart, purchase, like, rating, or negative feedback: dislike, not_interested.")] = "view",
    price: Annotated[Optional[float], typer.Option()] = None,
    value: Annotated[Optional[float], typer.Option(help="Explicit value, e.g. the rating of a rating event.")] = None,
    session: Annotated[Optional[str], typer.Option(help="Session id.")] = None,
    impression_id: Annotated[Optional[str], typer.Option(help="The impression id of the recommendations this event answers (an experiment credits it).")] = None,
) -> None:
    """Record one event now; the next `recommend` for this shopper reflects it."""
    stored = _open().behaviour.add_event(user, item, event_type, price=price, value=value, session_id=session,
                                         impression_id=impression_id)
    out.print(f"recorded {event_type} of {item} by {user}" if stored else
              f"already recorded: this {event_type} of {item} by {user} at this very time")


users_app = typer.Typer(help="Shoppers' profiles: import their attributes (age, ...).", no_args_is_help=True)
app.add_typer(users_app, name="users")


@users_app.command("import")
def users_import(
    csv_path: Annotated[Path, typer.Argument(metavar="CSV", help="One row per shopper, e.g. H&M's customers.csv.")],
    preset: Annotated[Optional[str], typer.Option(help="Column layout of a public data set: hm (customers.csv).")] = None,
    id_column: Annotated[Optional[str], typer.Option(help="Column holding the shopper id [default: user_id].")] = None,
    encoding: Annotated[str, typer.Option(help="Text encoding of the file.")] = "utf-8",
) -> None:
    """Import shoppers' attributes; the ranker reads them (features, age segments) from its next
    training, and a shopper with a profile but no events gets their segment's best sellers."""
    from stylesense.events.users import PROFILE_PRESETS

    if preset is not None and preset not in PROFILE_PRESETS:
        _fail(f"unknown preset {preset!r}; known: {', '.join(PROFILE_PRESETS)}")
    column = id_column or (PROFILE_PRESETS[preset] if preset else "user_id")
    try:
        report = _open().behaviour.import_profiles(csv_path, id_column=column, encoding=encoding)
    except OSError as e:
        _fail(str(e))
    out.print(f"{report.rows} rows: {report.stored} profiles stored ({report.new} new), {len(report.bad)} failed")
    _exit_on_bad([f"line {b.row}: {b.reason}" for b in report.bad])


@events_app.command("weights")
def events_weights(
    changes: Annotated[Optional[list[str]], typer.Argument(metavar="[TYPE=WEIGHT]...", help="e.g. purchase=10 wishlist=3")] = None,
    new_type: Annotated[bool, typer.Option("--new-type", help="Allow names that are no known type yet: they become event types.")] = False,
) -> None:
    """Show, or change, how much each event type counts as implicit feedback (retrain after)."""
    ss = _open()
    weights = ss.behaviour.set_weights(_pairs(changes), new_type=new_type) if changes else ss.behaviour.weights
    out.print(", ".join(f"{name}={value:g}" for name, value in weights.items()))


def _pairs(pairs: list[str] | None, what: str = "--param") -> dict[str, str]:
    params: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            _fail(f"{what} {pair!r} is not KEY=VALUE")
        params[key.strip()] = value.strip()
    return params


@app.command()
def train(
    model: Annotated[str, typer.Option(help="popular, trending, repurchase, itemknn, als, bpr, ease, visual, neumf, gru4rec, blend or ranker.")],
    param: Annotated[Optional[list[str]], typer.Option(help="KEY=VALUE model parameter; repeat for more (default: tuned, else built-in).")] = None,
    engine: Annotated[str, typer.Option(help="Where to fit: local (this process) or spark (als only; needs pyspark and Java 17).")] = "local",
    spark_master: Annotated[Optional[str], typer.Option(help="Spark master for --engine spark: local[N] or spark://HOST:7077 [default: local[2]].")] = None,
) -> None:
    """Fit a recommender on every event and store it in the home."""
    ss = _open()
    fitted, seconds = ss.behaviour.train(model, _pairs(param), engine=engine, spark_master=spark_master)
    out.print(f"trained {model} on {fitted.data.n_events} events ({fitted.data.n_users} users, "
              f"{fitted.data.n_items} items) in {seconds:.1f} s; params {json.dumps(fitted.params)}")
    importances = getattr(fitted, "feature_importances", None)  # the ranker's, saved in its file
    if importances:
        top = ", ".join(f"{name} {share:.3f}" for name, share in list(importances.items())[:10])
        out.print(f"feature importances (share of gain, top 10): {top}")


SeenOpt = Annotated[Optional[bool], typer.Option("--exclude-seen/--include-seen", help="Hide items the shopper already has [default: the home's choice].")]


@recommend_app.callback(invoke_without_command=True)
def recommend(
    ctx: typer.Context,
    user: Annotated[Optional[str], typer.Option(help="Shopper id.")] = None,
    k: Annotated[int, typer.Option("-k", min=1)] = 10,
    model: Annotated[Optional[str], typer.Option(help="Trained model [default: the last trained].")] = None,
    exclude_seen: SeenOpt = None,
    where: Annotated[Optional[list[str]], typer.Option(help="COL=VALUE catalogue filter; repeat for more.")] = None,
    min_price: Annotated[Optional[float], typer.Option()] = None,
    max_price: Annotated[Optional[float], typer.Option()] = None,
    diversity: Annotated[float, typer.Option(min=0.0, max=1.0, help="0 (off) to 1: re-rank the model's best candidates so the products look less alike (MMR on their photos).")] = 0.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Top-k items for one shopper, with reasons where the model has them."""
    if ctx.invoked_subcommand is not None:
        return
    if user is None:
        _fail("give --user ID (or use `stylesense recommend batch`)")
    ss = _open()
    filters = Filters.parse(where or [], min_price, max_price, ss.config.price_column)
    recs = ss.behaviour.recommend(user, k, model=model, exclude_seen=exclude_seen, filters=filters, diversity=diversity)
    _print_recommendations(f"recommendations for {user}", recs, as_json)


def _print_recommendations(title: str, recs: list, as_json: bool) -> None:
    if as_json:
        out.print_json(data=[r.to_dict() for r in recs])
        return
    table = Table(title=title)
    for col in ("#", "item", "score", "why"):
        table.add_column(col)
    for rank, r in enumerate(recs, 1):
        table.add_row(str(rank), r.item_id, f"{r.score:.4g}", r.reason or "")
    out.print(table)


@recommend_app.command("similar")
def recommend_similar(
    item: Annotated[str, typer.Option(help="Item id.")],
    k: Annotated[int, typer.Option("-k", min=1)] = 10,
    model: Annotated[Optional[str], typer.Option(help="Trained model [default: the last trained].")] = None,
    where: Annotated[Optional[list[str]], typer.Option(help="COL=VALUE catalogue filter; repeat for more.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Items a trained model finds like ITEM (bought together, or alike for `visual`)."""
    ss = _open()
    recs = ss.behaviour.similar(item, k, model=model, filters=Filters.parse(where or []))
    _print_recommendations(f"items like {item}", recs, as_json)


@recommend_app.command("batch")
def recommend_batch(
    out_path: Annotated[Path, typer.Option("--out", help="CSV to write: user_id,item_id,rank,score.")],
    model: Annotated[Optional[str], typer.Option(help="Trained model [default: the last trained].")] = None,
    k: Annotated[int, typer.Option("-k", min=1)] = 10,
    exclude_seen: SeenOpt = None,
) -> None:
    """Top-k for every known shopper, one row per recommendation."""
    try:
        users = _open().behaviour.recommend_batch(out_path, k, model=model, exclude_seen=exclude_seen)
    except OSError as e:
        _fail(str(e))
    out.print(f"wrote top-{k} for {users} users to {out_path}")


@evaluate_app.command("recommenders")
def evaluate_recommenders(
    protocol: Annotated[str, typer.Option(help="stratified (per-user 75/25), temporal (last --test-days as test), last-item or last-session (each user's last event / session).")],
    models: Annotated[str, typer.Option(help="Comma-separated model names.")],
    k: Annotated[int, typer.Option("-k", min=1)] = 10,
    test_days: Annotated[float, typer.Option(help="Temporal protocol: days after the cutoff that are test.")] = 7,
    seed: Annotated[int, typer.Option(help="Stratified protocol: split seed.")] = 42,
    exclude_seen: SeenOpt = None,
    tuned: Annotated[bool, typer.Option("--tuned/--defaults", help="Use parameters from `stylesense tune` where saved.")] = True,
    diversity: Annotated[str, typer.Option(help="Comma-separated MMR diversity values from 0 (off) to 1: a row per model and value, e.g. 0,0.3,0.6.")] = "0",
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Write the result as JSON here.")] = None,
    plot: Annotated[Optional[Path], typer.Option(help="Write a side-by-side chart (PNG) here.")] = None,
) -> None:
    """Every model on one split: precision, recall, nDCG, MAP, hit rate, MRR, coverage, intra-list diversity, revenue."""
    names = [m.strip() for m in models.split(",") if m.strip()]
    try:
        levels = [float(d) for d in diversity.split(",") if d.strip()] or [0.0]
    except ValueError:
        _fail(f"--diversity {diversity!r} is not comma-separated numbers")
    result = _open().behaviour.evaluate(protocol, names, k=k, test_days=test_days, seed=seed,
                                        exclude_seen=exclude_seen, tuned=tuned, diversity=levels)
    out.print(result.table())
    split = result.split
    out.print(f"split: {split['train_events']} train / {split['test_events']} test events, "
              f"{split['test_users']} test users ({split['cold_users']} cold), exclude_seen={result.exclude_seen}")
    if json_out:
        result.to_json(json_out)
    if plot:
        result.plot(plot)


@app.command()
def tune(
    model: Annotated[str, typer.Option(help="Model to tune.")],
    protocol: Annotated[str, typer.Option(help="stratified, temporal, last-item or last-session: the split whose training side is tuned on.")],
    trials: Annotated[int, typer.Option(min=1)] = 20,
    k: Annotated[int, typer.Option("-k", min=1)] = 10,
    metric: Annotated[str, typer.Option(help="Validation metric to maximise.")] = "ndcg_at_k",
    test_days: Annotated[float, typer.Option()] = 7,
    seed: Annotated[int, typer.Option()] = 42,
) -> None:
    """Search hyper-parameters (Optuna) on a validation split carved from the training data."""
    ss = _open()
    with _progress() as bar:
        task = bar.add_task(f"tuning {model}", total=trials)
        result = ss.behaviour.tune(model, protocol, trials=trials, k=k, metric=metric, test_days=test_days,
                                   seed=seed, on_trial=lambda done, value, best: bar.update(task, completed=done))
    out.print(f"{model}: validation {metric} {result.best_value:.4f} (defaults {result.default_value:.4f}) "
              f"after {trials} trials in {result.seconds:.0f} s")
    out.print(f"best parameters (saved for train and evaluate): {json.dumps(result.best_params)}")


@app.command()
def clusters(
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Write the result as JSON here.")] = None,
    plot: Annotated[Optional[Path], typer.Option(help="Write the 2-D map of the style clusters (PNG) here.")] = None,
    min_cluster_size: Annotated[Optional[int], typer.Option(min=2, help="Smallest style cluster [default: half the square root of the catalogue's size, 5 at least].")] = None,
    segments: Annotated[bool, typer.Option("--segments", help="Shopper segments (groups of shoppers by the categories they shop) instead of style clusters.")] = False,
    category: Annotated[Optional[str], typer.Option(help="With --segments: the metadata column shoppers' events are mixed over [default: a category-like label column].")] = None,
    n_segments: Annotated[Optional[int], typer.Option(min=2, help="With --segments: this many segments [default: the number with the best silhouette].")] = None,
    refresh: Annotated[bool, typer.Option("--refresh", help="Compute afresh even if the home's cached result is current.")] = False,
) -> None:
    """Style clusters of the catalogue (HDBSCAN estimates how many), or shopper segments.

    Cached in the home until the catalogue (or, for segments, the events) change."""
    from stylesense.atomic import atomic_write
    from stylesense.clusters import shopper_segments, style_clusters

    if segments and (plot or min_cluster_size):
        _fail("--plot and --min-cluster-size are for style clusters, not --segments")
    if not segments and (category or n_segments):
        _fail("--category and --n-segments need --segments")
    ss = _open()
    if segments:
        found = shopper_segments(ss, n_segments=n_segments, category=category, refresh=refresh)
        out.print(f"estimated number of shopper segments: {found.n_segments} ({found.shoppers} shoppers by their "
                  f"mix of {found.category!r}; {found.unassigned} with too few catalogue events left out; "
                  f"{_origin(found.cached, found.seconds)})", highlight=False, soft_wrap=True)
        table = Table()
        for col in ("#", "shoppers", "events each", "favourite categories", "typical shoppers"):
            table.add_column(col)
        for s in found.segments:
            table.add_row(str(s.id), str(s.size), f"{s.events_per_shopper:g}",
                          escape(", ".join(f"{c} {share:.0%}" for c, share in s.favourite_categories)),
                          escape(", ".join(s.typical_shoppers[:3])))
        data = found.to_dict()
    else:
        styles = style_clusters(ss, min_cluster_size=min_cluster_size, refresh=refresh)
        out.print(f"estimated number of style clusters: {styles.n_clusters} ({styles.noise} of "
                  f"{len(styles.item_ids)} items unassigned; {_origin(styles.cached, styles.seconds)})", highlight=False, soft_wrap=True)
        table = Table()
        for col in ("#", "items", "dominant labels", "typical items"):
            table.add_column(col)
        for c in styles.clusters:
            labels = ", ".join(f"{v} ({p:.0%})" for _, v, p in c.top_labels()) or "mixed"
            table.add_row(str(c.id), str(c.size), escape(labels), escape(", ".join(c.typical[:4])))
        data = styles.to_dict()
        if plot:
            styles.plot(plot)
    out.print(table)
    if json_out:
        text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
        atomic_write(json_out, lambda f: f.write(text.encode()))


def _origin(cached: bool, seconds: float) -> str:
    return "from the home's cache" if cached else f"computed in {seconds:.1f} s"


@app.command()
def doctor(
    repair: Annotated[bool, typer.Option("--repair", help="Rebuild what can be rebuilt: the index, an interrupted index update, a lost config; move unloadable models aside. Never touches the database.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Check the home; --repair rebuilds what can be rebuilt.

    Checks the database's integrity, the config, the adapter, the index against the database
    and every saved model. Exit status 0 when healthy, 1 when problems remain."""
    from stylesense.doctor import check

    findings = check(_state.get("home"), repair=repair, threads=_state.get("threads"))  # type: ignore[arg-type]
    if as_json:
        out.print_json(data=[f.to_dict() for f in findings])
    else:
        for f in findings:
            status = "[green]repaired[/green]" if f.repaired else "[green]ok[/green]" if f.ok else "[red]PROBLEM[/red]"
            out.print(f"{status} {f.name}: {escape(f.message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(0 if all(f.ok for f in findings) else 1)


@app.command()
def demo(
    query: Annotated[Optional[str], typer.Option(help="Item id to search with (default: the first item).")] = None,
    k: Annotated[int, typer.Option("-k")] = 5,
) -> None:
    """Build the demo catalogue (the shared Kaggle set, else Fashion-MNIST), import it and search;
    then simulate shoppers, train a recommender and show a live view changing one shopper's list."""
    from stylesense.datasets import demo_catalog, simulated_shoppers

    ss = _open()
    source = demo_catalog(ss.home.root / "demo-data")
    out.print(f"demo catalogue: {source.csv}")
    _import(ss, source.csv, source.image_template, source.id_column)
    items = {it.item_id: it for it in ss.items()}
    query_id = query or next(iter(items))
    if query_id not in items:
        _fail(f"no item {query_id!r} in the demo catalogue")
    out.print(f"items similar to {query_id} {json.dumps(items[query_id].attrs, ensure_ascii=False)}")
    _print_hits(ss.search(item=query_id, k=k), as_json=False)

    category = {i: str(it.attrs.get("articleType", "")) for i, it in items.items()}
    events = simulated_shoppers(category, ss.home.root / "demo-data")
    report = ss.behaviour.import_events(events, user_column="user_id", item_column="item_id",
                                        time_column="ts", type_column="type")
    out.print(f"\nsimulated shoppers: {report.rows} events ({report.inserted} new) from {events}")
    model, seconds = ss.behaviour.train("itemknn")
    out.print(f"trained itemknn on {model.data.n_users} shoppers in {seconds:.2f} s")
    _print_recs("shopper0", ss.behaviour.recommend("shopper0", k), category)
    ss.behaviour.train("visual")
    liked = {category[r.item_id] for r in ss.behaviour.recommend("shopper0", k)}
    new_taste = next(c for c in sorted(set(category.values())) if c not in liked)
    for item in [i for i, c in category.items() if c == new_taste][:3]:
        ss.behaviour.add_event("shopper0", item, "view")
    out.print(f"shopper0 now views 3 items of {new_taste!r}; the visual model follows at once (no retrain):")
    _print_recs("shopper0", ss.behaviour.recommend("shopper0", k), category)


def _print_recs(user: str, recs: list, category: dict[str, str]) -> None:
    table = Table(title=f"recommendations for {user}")
    for col in ("#", "item", "category", "why"):
        table.add_column(col)
    for rank, r in enumerate(recs, 1):
        table.add_row(str(rank), r.item_id, category.get(r.item_id, ""), r.reason or "")
    out.print(table)


@keys_app.command("create")
def keys_create(
    role: Annotated[str, typer.Option(help="read, write (includes read) or admin (includes write; manages keys).")],
    name: Annotated[Optional[str], typer.Option(help="Who or what holds the key; `keys revoke` takes it too.")] = None,
    rate: Annotated[Optional[float], typer.Option(help="Requests per second this key may make (per API worker) [default: no limit].")] = None,
) -> None:
    """Make a key and print it, alone on stdout: it is shown this once, only its hash is kept."""
    from stylesense.serving.keys import KeyStore

    key, info = KeyStore(_open().store.engine).create(role, name=name, rate=rate)
    typer.echo(key)
    err.print(f"created {info.role} key {info.key_id}: store it now, it cannot be shown again", highlight=False)


@keys_app.command("list")
def keys_list(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Every key (revoked ones too) by id: role, name, rate, when made and revoked. No secrets."""
    from stylesense.serving.keys import KeyStore

    keys = KeyStore(_open().store.engine).list()
    if as_json:
        out.print_json(data=[k.to_dict() for k in keys])
        return
    table = Table(title=f"API keys: {sum(k.active for k in keys)} active, {sum(not k.active for k in keys)} revoked")
    for col in ("id", "role", "name", "rate/s", "created (UTC)", "revoked (UTC)"):
        table.add_column(col)
    for k in keys:
        table.add_row(k.key_id, k.role, k.name or "", "" if k.rate is None else f"{k.rate:g}",
                      f"{k.created_at:%Y-%m-%d %H:%M:%S}", "" if k.active else f"{k.revoked_at:%Y-%m-%d %H:%M:%S}")
    out.print(table)


@keys_app.command("revoke")
def keys_revoke(ref: Annotated[str, typer.Argument(metavar="ID_OR_NAME", help="The key's id (`keys list`) or the name of an active key.")]) -> None:
    """Revoke a key: every API worker refuses it from its next request on."""
    from stylesense.serving.keys import KeyStore

    info = KeyStore(_open().store.engine).revoke(ref)
    out.print(f"revoked {info.role} key {info.key_id}" + (f" ({escape(info.name)})" if info.name else ""), highlight=False)


@experiment_app.command("create")
def experiment_create(
    name: Annotated[str, typer.Argument(help="A new experiment's name (letters, digits, '.', '_', '-').")],
    arms: Annotated[str, typer.Option(help="Comma-separated trained models, the control first, e.g. ease,ranker.")],
    split: Annotated[Optional[str], typer.Option(help="Traffic weights per arm, e.g. 50,50 [default: equal].")] = None,
    metric: Annotated[str, typer.Option(help="What decides it: click, cart, purchase or revenue.")] = "purchase",
    window_hours: Annotated[float, typer.Option(help="Events up to this long after a recommendation count for it.")] = 24.0,
) -> None:
    """Start an experiment: from now on each shopper asking for recommendations is put in an
    arm (a stable hash of experiment and shopper) and served by its model."""
    weights = None if split is None else [w.strip() for w in split.split(",") if w.strip()]
    experiment = _open().experiments.create(name, [a.strip() for a in arms.split(",") if a.strip()],
                                            weights, metric=metric, window_hours=window_hours)  # type: ignore[arg-type]
    shares = ", ".join(f"{a} {s:.0%}" for a, s in zip(experiment.arms, experiment.split))
    out.print(f"experiment {experiment.name} running: {shares}; decided on {experiment.metric}, "
              f"window {experiment.window_hours:g} h", highlight=False)


@experiment_app.command("list")
def experiment_list(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Every experiment, newest first."""
    found = _open().experiments.list()
    if as_json:
        out.print_json(data=[e.to_dict() for e in found])
        return
    table = Table(title=f"experiments: {sum(e.running for e in found)} running, {sum(not e.running for e in found)} stopped")
    for col in ("name", "status", "arms (split)", "metric", "window h", "started (UTC)", "stopped (UTC)"):
        table.add_column(col)
    for e in found:
        table.add_row(e.name, e.status, ", ".join(f"{a} {s:.0%}" for a, s in zip(e.arms, e.split)), e.metric,
                      f"{e.window_hours:g}", f"{e.started:%Y-%m-%d %H:%M:%S}",
                      "" if e.stopped is None else f"{e.stopped:%Y-%m-%d %H:%M:%S}")
    out.print(table)


@experiment_app.command("stop")
def experiment_stop(name: Annotated[str, typer.Argument(help="The experiment's name.")]) -> None:
    """Stop an experiment: shoppers get the served model again; its report stays."""
    experiment = _open().experiments.stop(name)
    out.print(f"experiment {experiment.name} stopped at {experiment.stopped:%Y-%m-%d %H:%M:%S} UTC", highlight=False)


@experiment_app.command("report")
def experiment_report(
    name: Annotated[str, typer.Argument(help="The experiment's name.")],
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Write the report as JSON here.")] = None,
    plot: Annotated[Optional[Path], typer.Option(help="Write its chart (PNG) here.")] = None,
) -> None:
    """Per arm: shoppers, impressions, click-through, add-to-cart, conversion, negative-feedback
    and return rates, revenue per shopper and per impression, with 95% intervals and p-values
    against the control; the sample-ratio check and the winner."""
    report = _open().experiments.report(name)
    out.print(report.table())
    out.print(report.verdict(), highlight=False)
    if json_out:
        report.to_json(json_out)
    if plot:
        report.plot(plot)


@experiment_app.command("online")
def experiment_online(
    window_hours: Annotated[float, typer.Option(help="The rolling window.")] = 24.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Online evaluation (as Gorse's): per model, recommendations served in the window and the
    share with positive feedback (a view, click, like, cart or purchase credited to them)."""
    rates = _open().experiments.online(window_hours)
    if as_json:
        out.print_json(data=[r.to_dict() for r in rates])
        return
    table = Table(title=f"positive feedback on recommendations served in the last {window_hours:g} h")
    for col in ("model", "impressions", "positive", "rate"):
        table.add_column(col)
    for r in rates:
        table.add_row(r.model, str(r.impressions), str(r.positive), "-" if r.rate is None else f"{r.rate:.2%}")
    out.print(table)


db_app = typer.Typer(help="The home database's schema (Alembic migrations): upgrade, current.", no_args_is_help=True)
app.add_typer(db_app, name="db")


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Bring the home database's schema to the newest revision. Opening a home does it too;
    run it as a deploy step before starting new API workers on a shared database."""
    from stylesense.migrations import home_engine, upgrade

    engine = home_engine(_state.get("home"))  # type: ignore[arg-type]
    try:
        before, after = upgrade(engine)
    finally:
        engine.dispose()
    out.print(f"database at revision {after}" + ("" if before == after else f" (was {before or 'unversioned'})"))


@db_app.command("current")
def db_current() -> None:
    """The revision the home database's schema is at, and whether it is the newest."""
    from stylesense.migrations import HEAD, current, home_engine

    engine = home_engine(_state.get("home"))  # type: ignore[arg-type]
    try:
        revision = current(engine)
    finally:
        engine.dispose()
    out.print(f"{revision or 'unversioned'} ({'newest' if revision == HEAD else f'newest is {HEAD}: run `stylesense db upgrade`'})")


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to bind; loopback unless you say otherwise.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes (they share the home).")] = 1,
    public_reads: Annotated[bool, typer.Option("--public-reads", help="Serve reads without an API key (writes always need one).")] = False,
    cors_origin: Annotated[Optional[list[str]], typer.Option(help="Allow browser calls from this origin; repeat for more (default: CORS off).")] = None,
    request_threads: Annotated[int, typer.Option(min=0, help="Requests each worker computes at once (0: the framework's 40; more help where requests wait on a remote database).")] = 2,
) -> None:
    """Run the REST API (OpenAPI at /openapi.json, docs at /docs)."""
    from stylesense.serving.app import Settings
    from stylesense.serving.server import serve as run_server

    root = _open().home.root  # a damaged or foreign home fails here, with its message, not in each worker
    settings = Settings(public_reads=public_reads, cors_origins=tuple(cors_origin or ()),
                        threads=_state.get("threads"), request_threads=request_threads)  # type: ignore[arg-type]
    err.print(f"serving {root} on http://{host}:{port} ({workers} worker(s))")
    run_server(_state.get("home"), settings, host=host, port=port, workers=workers)  # type: ignore[arg-type]


@app.command()
def ui(
    host: Annotated[str, typer.Option(help="Address to bind; loopback unless you say otherwise.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8501,
    import_root: Annotated[Optional[list[Path]], typer.Option(
        help="A server folder the catalogue page may import photos from; repeat for more (default: uploads only).")] = None,
) -> None:
    """Run the web app (Streamlit): search by photo, shoppers, dashboards, style clusters."""
    from stylesense.ui.launch import command, environment

    root = _open().home.root  # a damaged or foreign home fails here, with its message
    err.print(f"web app on {root}: http://{host}:{port}")
    argv = command(host, port)
    os.execve(argv[0], argv, environment(root, import_root or (), _state.get("threads")))  # type: ignore[arg-type]


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
