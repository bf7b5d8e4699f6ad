"""The numbers behind the dashboards: activity over time, sales by category and price band, top
and trending products, repurchase, the last recommender evaluation.

Every function reads one home (a :class:`~stylesense.engine.StyleSense`) and answers a small
pandas table or a dataclass with ``to_dict()``, so the web app, the API and a notebook show
the same figures. They aggregate inside the database (one GROUP BY each, events joined to the
catalogue where a product's metadata is needed) and bring back only the aggregates, or a
single column where pandas does the rest: an event log of millions of rows is never loaded
whole.

What the figures mean:

* A *purchase* is an event of type ``purchase``. Its price is the event's own (H&M's
  transactions carry one), else the catalogue's price column for that product (a live "buy"
  sent without a price); revenue is the sum of those prices. Where no purchase has a price
  (MovieLens has ratings only) revenue is None or NaN, never 0: nothing was sold at 0.
* A product's catalogue columns come from its catalogue row, removed products' too (history
  keeps naming them). Purchases of products the catalogue does not know are kept, under
  the value None, so that the rows of a breakdown add up to all purchases.
* The *category* column is the home's ``extra.category_column`` setting, else the first
  catalogue column named like one (:func:`stylesense.catalog.facets.column_roles`). The
  *product group* column (colour variants of one product, H&M's ``product_code``) is
  the home's ``group_column`` setting, else a column named like one (:data:`GROUP_NAMES`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from sqlalchemy import case, distinct, func, literal, select
from sqlalchemy.sql.elements import ColumnElement

from stylesense.catalog.facets import column_roles
from stylesense.catalog.store import ItemRow
from stylesense.errors import InvalidInput
from stylesense.events.popularity import HALF_LIFE_DAYS
from stylesense.events.store import EventRow
from stylesense.home import damaged

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from stylesense.engine import StyleSense
    from stylesense.evaluation.recommenders import EvaluationResult

PURCHASE = "purchase"
DAY_US = 86_400_000_000  # microseconds in a day: event times are integer microseconds (UTC)
FREQS = {"D": "day", "W": "week (from Monday)", "M": "month", "Q": "quarter", "Y": "year"}
GROUP_NAMES = ("product_code", "product_group", "style_id", "parent_id", "parent_sku", "group_id")
COLUMN_SAMPLE = 1000  # catalogue rows read to learn its columns (a feed's rows share them)

_E = EventRow.__table__.c
_PRICED = ItemRow.__table__.alias("priced")  # the catalogue row a purchase's price falls back to
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def activity(ss: StyleSense, freq: str = "W") -> pd.DataFrame:
    """Shoppers and events per period (``freq``: a key of :data:`FREQS`), every period from
    the first event's to the last's, empty ones as 0 so a chart's gaps are real: ``period``
    (its start, UTC), ``shoppers`` (distinct shoppers with an event in it), ``new_shoppers``
    (those whose first event is in it) and ``events``.

    The database returns one row per shopper and day (the day is integer arithmetic on the
    stored microseconds, the same on SQLite and Postgres); days become periods here."""
    if freq not in FREQS:
        raise InvalidInput(f"unknown period {freq!r}; choose from {', '.join(f'{k} ({v})' for k, v in FREQS.items())}")
    day = (_E.ts_us // DAY_US).label("day")
    # Grouped shopper first: the key index starts with user_id, so SQLite sorts less.
    query = select(day, _E.user_id, func.count()).group_by(_E.user_id, day)
    pairs = pd.DataFrame(_rows(ss, query), columns=["day", "user_id", "events"])
    columns = ["period", "shoppers", "new_shoppers", "events"]
    if pairs.empty:
        return pd.DataFrame({c: pd.Series(dtype="datetime64[us, UTC]" if c == "period" else np.int64)
                             for c in columns})
    dates = pd.to_datetime(pairs["day"].to_numpy(np.int64), unit="D")
    pairs["period"] = dates.to_period(freq).start_time
    first = pairs.loc[pairs.groupby("user_id", sort=False)["day"].idxmin(), "period"]
    out = pd.DataFrame({
        "shoppers": pairs.drop_duplicates(["period", "user_id"]).groupby("period").size(),
        "new_shoppers": first.value_counts(),
        "events": pairs.groupby("period")["events"].sum(),
    })
    every = pd.period_range(dates.min(), dates.max(), freq=freq).start_time
    out = out.reindex(every, fill_value=0).fillna(0).astype(np.int64)
    out.index = out.index.tz_localize("UTC")
    return out.rename_axis("period").reset_index()[columns]


def events_by_type(ss: StyleSense) -> pd.DataFrame:
    """``type``, ``events``, ``shoppers`` (distinct, with an event of that type), most
    events first."""
    query = (select(_E.type, func.count(), func.count(distinct(_E.user_id)))
             .group_by(_E.type).order_by(func.count().desc(), _E.type))
    return _frame(_rows(ss, query), ["type", "events", "shoppers"])


def sales_by(ss: StyleSense, column: str) -> pd.DataFrame:
    """Purchases per value of catalogue column ``column``: the value (in a column named
    ``column``, as text), ``purchases``, ``revenue``, ``shoppers`` (distinct buyers), most
    revenue first, then most purchases. Purchases of products without that column (or not in
    the catalogue) are the row whose value is None. InvalidInput when no catalogue item has
    the column (a typo)."""
    _check_column(ss, column)
    value = ItemRow.attrs[column].as_string().label("value")
    query = (_purchases(value, func.count(), func.sum(_price(ss)), func.count(distinct(_E.user_id)))
             .select_from(_with_catalogue()).group_by(value))
    out = _frame(_rows(ss, query), ["value", "purchases", "revenue", "shoppers"])
    out = out.sort_values(["revenue", "purchases", "value"], ascending=[False, False, True],
                          na_position="last", ignore_index=True)
    return out.rename(columns={"value": column})


def sales_by_price_band(ss: StyleSense, bands: int = 5) -> pd.DataFrame:
    """Purchases in ``bands`` price bands of equal size by purchase count (quantiles of the
    purchase prices; fewer bands where prices repeat so much that quantiles coincide):
    ``band`` ("low-high", at the precision that tells the bounds apart), ``low``, ``high``
    (a band holds prices above its low up to its high; the first one its low too),
    ``purchases`` and ``revenue``. Purchases without any price are left out; no priced
    purchase at all: no rows. Only the price column leaves the database."""
    if isinstance(bands, bool) or not isinstance(bands, int) or bands < 1:
        raise InvalidInput(f"bands must be a whole number of at least 1, got {bands!r}")
    price = _price(ss)
    prices = pd.Series([r[0] for r in _rows(ss, _purchases(price).where(price.is_not(None)))], dtype=float)
    columns = ["band", "low", "high", "purchases", "revenue"]
    if prices.empty:
        kinds = {"band": object, "purchases": np.int64}
        return pd.DataFrame({c: pd.Series(dtype=kinds.get(c, float)) for c in columns})
    codes, edges = pd.qcut(prices, bands, labels=False, retbins=True, duplicates="drop")
    if len(edges) == 1:  # a single price: one band from it to itself
        codes, edges = pd.Series(0, index=prices.index), np.array([edges[0], edges[0]])
    grouped = prices.groupby(codes.to_numpy(np.int64))
    n = len(edges) - 1
    digits = _distinct_digits(edges)
    low, high = edges[:-1], edges[1:]
    return pd.DataFrame({
        "band": [f"{a:.{digits}f}-{b:.{digits}f}" for a, b in zip(low, high)],
        "low": low, "high": high,
        "purchases": grouped.size().reindex(range(n), fill_value=0).to_numpy(np.int64),
        "revenue": grouped.sum().reindex(range(n), fill_value=0.0).to_numpy(float),
    })


def top_products(ss: StyleSense, k: int = 10, type: str | None = PURCHASE) -> pd.DataFrame:
    """The ``k`` products with the most events of ``type`` (None: of any type): ``item_id``,
    ``events``, ``shoppers`` (distinct), ``revenue`` (of the purchases among those events;
    NaN where none is priced), then the catalogue's ``name``, ``category`` and ``price``
    (None for a product the catalogue lacks). Ties: more shoppers first, then by id."""
    _check_k(k)
    if type is not None and type not in ss.behaviour.weights:
        raise InvalidInput(f"unknown event type {type!r} (known: {', '.join(sorted(ss.behaviour.weights))})")
    revenue = func.sum(case((_E.type == PURCHASE, _price(ss))))
    events, shoppers = func.count(), func.count(distinct(_E.user_id))
    query = (select(_E.item_id, events, shoppers, revenue).group_by(_E.item_id)
             .order_by(events.desc(), shoppers.desc(), _E.item_id).limit(k))
    if type is not None:
        query = query.where(_E.type == type)
    out = _frame(_rows(ss, query), ["item_id", "events", "shoppers", "revenue"])
    return _with_card(ss, out)


def trending_products(ss: StyleSense, k: int = 10) -> pd.DataFrame:
    """The shop's trending list (:meth:`Behaviour.trending`: time-decayed weighted events,
    the catalogue's rule applied, so removed, hidden and sold-out products are not in it):
    ``item_id``, ``score``, and the evidence in plain counts, ``recent`` (events of positively
    weighted types in the last half-life before the newest event) and ``before`` (in the
    half-life before that), then ``name``, ``category``, ``price`` as in :func:`top_products`."""
    _check_k(k)
    recs = ss.behaviour.trending(k)
    out = pd.DataFrame({"item_id": pd.Series([r.item_id for r in recs], dtype=object),
                        "score": pd.Series([r.score for r in recs], dtype=float)})
    if recs:
        newest = _rows(ss, select(func.max(_E.ts_us)))[0][0]
        window = int(HALF_LIFE_DAYS * DAY_US)
        counted = [t for t, w in ss.behaviour.weights.items() if w > 0]
        recent = func.sum(case((_E.ts_us > newest - window, 1), else_=0))
        query = (select(_E.item_id, recent, func.count() - recent)
                 .where(_E.item_id.in_(out["item_id"].tolist()), _E.type.in_(counted),
                        _E.ts_us > newest - 2 * window)
                 .group_by(_E.item_id))
        counts = {item: (int(a), int(b)) for item, a, b in _rows(ss, query)}
        out["recent"] = [counts.get(i, (0, 0))[0] for i in out["item_id"]]
        out["before"] = [counts.get(i, (0, 0))[1] for i in out["item_id"]]
    else:
        out["recent"] = out["before"] = pd.Series(dtype=np.int64)
    return _with_card(ss, out.astype({"recent": np.int64, "before": np.int64}))


@dataclass(frozen=True)
class Repurchase:
    """Buyers who came back for the same thing: ``repeaters`` bought one product on two or
    more occasions (distinct event times: two units in one basket are one occasion);
    ``group_repeaters`` bought from one product group on two or more occasions (the same
    product, or another colour of it), where the home has a group column. Rates are shares of
    ``buyers`` (None when nobody bought anything)."""

    buyers: int
    repeaters: int
    group_column: str | None = None
    group_repeaters: int | None = None

    @property
    def rate(self) -> float | None:
        return self.repeaters / self.buyers if self.buyers else None

    @property
    def group_rate(self) -> float | None:
        return self.group_repeaters / self.buyers if self.buyers and self.group_repeaters is not None else None

    def to_dict(self) -> dict[str, Any]:
        return {"buyers": self.buyers, "repeaters": self.repeaters, "rate": self.rate,
                "group_column": self.group_column, "group_repeaters": self.group_repeaters,
                "group_rate": self.group_rate}


def repurchase_rate(ss: StyleSense, group: str | None = None) -> Repurchase:
    """The share of buyers who bought the same product again (see :class:`Repurchase`);
    ``group`` names the product group column (default: :func:`group_column`). A product the
    catalogue does not know, or without a group, is a group of its own."""
    group = group or group_column(ss)
    if group is not None:
        _check_column(ss, group)

    def repeaters(key: ColumnElement[Any]) -> int:
        repeat = (_purchases(_E.user_id).select_from(_with_catalogue()).group_by(_E.user_id, key)
                  .having(func.count(distinct(_E.ts_us)) >= 2).subquery())
        return int(_rows(ss, select(func.count(distinct(repeat.c.user_id))))[0][0])

    buyers = int(_rows(ss, _purchases(func.count(distinct(_E.user_id))))[0][0])
    if group is None:
        return Repurchase(buyers, repeaters(_E.item_id))
    own = func.coalesce(literal("g:") + ItemRow.attrs[group].as_string(), literal("i:") + _E.item_id)
    return Repurchase(buyers, repeaters(_E.item_id), group, repeaters(own))


@dataclass(frozen=True)
class Summary:
    """The home at a glance: catalogue ``items`` (live ones), distinct ``shoppers`` and
    ``event_items`` (products named by events), ``events``, ``purchases``, ``revenue`` (None
    where no purchase has a price) and the first and last event times (None: no events)."""

    items: int
    shoppers: int
    event_items: int
    events: int
    purchases: int
    revenue: float | None
    first_event: datetime | None
    last_event: datetime | None

    def to_dict(self) -> dict[str, Any]:
        return {"items": self.items, "shoppers": self.shoppers, "event_items": self.event_items,
                "events": self.events, "purchases": self.purchases, "revenue": self.revenue,
                "first_event": self.first_event.isoformat() if self.first_event else None,
                "last_event": self.last_event.isoformat() if self.last_event else None}


def summary(ss: StyleSense) -> Summary:
    """Counts and totals of the whole home: two aggregate queries over the events."""
    query = select(func.count(), func.count(distinct(_E.user_id)), func.count(distinct(_E.item_id)),
                   func.sum(case((_E.type == PURCHASE, 1), else_=0)), func.min(_E.ts_us), func.max(_E.ts_us))
    events, shoppers, items, purchases, first, last = _rows(ss, query)[0]
    revenue = _rows(ss, _purchases(func.sum(_price(ss))))[0][0]
    return Summary(ss.store.count(), int(shoppers), int(items), int(events), int(purchases or 0),
                   None if revenue is None else float(revenue), _time(first), _time(last))


@dataclass(frozen=True)
class EvaluationRun:
    """The home's last ``evaluate recommenders`` run (:meth:`Behaviour.evaluate` saves every
    one): its ``result`` and ``when`` it finished (the saved file's time)."""

    result: EvaluationResult
    when: datetime

    @property
    def table(self) -> pd.DataFrame:
        """One row per model and group of test users (``group``: "warm", shoppers the training
        saw, or "cold", those it did not), one column per key of ROW_KEYS (metrics, timings,
        ``users`` counted): a chart's long form is ``table.melt(id_vars=["model", "group"])``."""
        from stylesense.evaluation.recommenders import ROW_KEYS

        rows = [{"model": name, "group": group, **{key: row.get(key) for key in ROW_KEYS}}
                for group, models in (("warm", self.result.models), ("cold", self.result.cold))
                for name, row in models.items()]
        return pd.DataFrame(rows, columns=["model", "group", *ROW_KEYS])

    def to_dict(self) -> dict[str, Any]:
        return {**self.result.to_dict(), "when": self.when.isoformat()}


def last_evaluation(ss: StyleSense) -> EvaluationRun | None:
    """The last evaluation run in this home (protocol, k, split and every model's metrics),
    None if none has run here yet."""
    from stylesense.evaluation.recommenders import EvaluationResult

    path = ss.behaviour.last_evaluation_path
    try:
        when = datetime.fromtimestamp(path.stat().st_mtime, timezone.utc)
        result = EvaluationResult.from_json(path)
    except FileNotFoundError:
        return None
    except (ValueError, TypeError) as e:  # not JSON, or not an evaluation's fields
        raise damaged("last evaluation", path, str(e).splitlines()[0],
                      "run `stylesense evaluate recommenders` again to rewrite it") from None
    return EvaluationRun(result, when)


def category_column(ss: StyleSense) -> str | None:
    """The catalogue column the dashboards break sales down by: the home's
    ``extra.category_column``, else the first column named like a category (articleType,
    product_type_name, category, subCategory, ...); None for a catalogue without one."""
    return ss.config.extra.get("category_column") or column_roles(_catalogue_columns(ss)).get("category")


def group_column(ss: StyleSense) -> str | None:
    """The column grouping a product's variants (for :func:`repurchase_rate`): the home's
    ``group_column`` setting, else the first of :data:`GROUP_NAMES` the catalogue has; None
    for a catalogue without one."""
    configured = ss.config.group_column
    if configured:
        return configured
    columns = _catalogue_columns(ss)
    return next((name for name in GROUP_NAMES if name in columns), None)


# -- helpers ----------------------------------------------------------------------------
def _rows(ss: StyleSense, query: Any) -> list[Any]:
    """The rows of one query on the home's database (the events table made if new), as plain
    tuples: pandas probes each SQLAlchemy Row for attributes, which costs ~15 us a row."""
    engine: Engine = ss.behaviour.events.engine
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(query)]


def _with_catalogue() -> Any:
    """Events LEFT JOIN their products' catalogue rows (removed ones too: history names them),
    for the queries that read a catalogue column."""
    return EventRow.__table__.join(ItemRow.__table__, ItemRow.item_id == _E.item_id, isouter=True)


def _purchases(*columns: Any) -> Any:
    """SELECT ``columns`` over the purchase events."""
    return select(*columns).select_from(EventRow.__table__).where(_E.type == PURCHASE)


def _price(ss: StyleSense) -> ColumnElement[Any]:
    """A purchase's price: its own, else its product's catalogue price (NULL: neither). The
    catalogue is looked up by a correlated subquery, which the database runs only for events
    without a price: H&M's log never needs it, and counting views never joins the catalogue."""
    fallback = (select(_PRICED.c.attrs[ss.config.price_column].as_float())
                .where(_PRICED.c.item_id == _E.item_id).correlate(EventRow.__table__).scalar_subquery())
    return func.coalesce(_E.price, fallback)


def _check_column(ss: StyleSense, column: str) -> None:
    """InvalidInput unless some catalogue item has ``column`` (an empty breakdown would hide a typo)."""
    found = _rows(ss, select(ItemRow.pk).where(ItemRow.attrs[column].as_string().is_not(None)).limit(1))
    if not found:
        known = sorted(_catalogue_columns(ss))
        raise InvalidInput(f"no catalogue item has column {column!r}; "
                           f"known columns: {', '.join(known) if known else 'none (the catalogue is empty)'}")


def _catalogue_columns(ss: StyleSense) -> set[str]:
    return {c for item in ss.store.items_after(0, COLUMN_SAMPLE) for c in item.attrs}


def _check_k(k: int) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise InvalidInput(f"k must be a whole number of at least 1, got {k!r}")


def _frame(rows: list[Any], columns: list[str]) -> pd.DataFrame:
    """Query rows as a table, counts as int64 and ``revenue`` as float (NaN: no price)."""
    cells = list(zip(*rows)) if rows else [()] * len(columns)
    # Text stays object with None where missing (pandas 3 would infer str with NaN instead).
    kinds = {"revenue": float, "events": np.int64, "shoppers": np.int64, "purchases": np.int64}
    return pd.DataFrame({name: pd.Series([np.nan if v is None else v for v in values], dtype=kinds[name])
                         if name in kinds else pd.Series(list(values), dtype=object)
                         for name, values in zip(columns, cells)})


def _with_card(ss: StyleSense, out: pd.DataFrame) -> pd.DataFrame:
    """``out`` with each product's ``name``, ``category`` and ``price`` from the catalogue."""
    items = {it.item_id: it.attrs for it in ss.store.items(out["item_id"].tolist())} if len(out) else {}
    roles = column_roles({c for attrs in items.values() for c in attrs})
    for field, column in (("name", roles.get("name")), ("category", category_column(ss)),
                          ("price", ss.config.price_column)):
        out[field] = pd.Series([items.get(i, {}).get(column) if column else None for i in out["item_id"]],
                               index=out.index, dtype=object)
    return out


def _distinct_digits(edges: np.ndarray) -> int:
    """Decimals (2 to 8) at which the band edges print distinct: "0.01-0.02", not "0.0-0.0"."""
    for digits in range(2, 9):
        if len({f"{e:.{digits}f}" for e in edges}) == len(set(edges.tolist())):
            return digits
    return 8


def _time(ts_us: int | None) -> datetime | None:
    """A stored event time (integer microseconds) as a UTC datetime."""
    return None if ts_us is None else _EPOCH + timedelta(microseconds=int(ts_us))
