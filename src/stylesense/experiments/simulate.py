"""A replay simulator: shoppers who follow held-out real behaviour, through a real API.

Each simulated shopper is a real shopper of the held-out period (what they bought after the
training cutoff, day by day). The replay walks the period in calendar order; on each day a
shopper bought something, they visit: they ask the API for their recommendations (``GET
/v1/users/{id}/recommendations``, which puts them in an experiment's arm and answers with an
impression id), then

* a recommended product among their remaining held-out purchases (that day's or later) is
  viewed, put in the cart and bought, with the real price, all carrying the impression id;
* any other recommended product is viewed with probability ``base_click`` and bought with
  probability ``base_buy`` (the background of a real shop: people click and buy what they
  would not have otherwise), also carrying the impression id;
* what they really bought that day and the recommendations did not show is bought anyway,
  with no impression id (organic purchases: it still feeds the models, as in a real shop).

All events go through ``POST /v1/events`` (batched per visit, each with an ``event_id``, so a
retry stores nothing twice), and the models fold them in before the next answer. So the arm
whose recommendations anticipate the held-out purchases better wins conversions and revenue,
and the experiment's report measures exactly that, with its p-value. ``client`` is any
``httpx.Client`` on the API: a real server's, or FastAPI's TestClient in the tests.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from time import perf_counter
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

if TYPE_CHECKING:
    import httpx
    import pandas as pd


@dataclass(frozen=True)
class ReplayShopper:
    """A held-out shopper: ``visits`` their days of purchases in order, each the (item id,
    price or None) pairs bought that day."""

    user_id: str
    visits: tuple[tuple[tuple[str, float | None], ...], ...]


def replay_shoppers(held_out: "pd.DataFrame", types: Sequence[str] = ("purchase",)) -> list[ReplayShopper]:
    """The shoppers of a held-out events table (user_id, item_id, type, ts, optional price):
    one visit per calendar day (UTC) with events of ``types``, sorted by user id."""
    import pandas as pd

    rows = held_out[held_out["type"].astype(str).isin(list(types))]
    day = pd.to_datetime(rows["ts"], utc=True).dt.floor("D")
    price = rows["price"] if "price" in rows else pd.Series(float("nan"), index=rows.index)
    table = pd.DataFrame({"user": rows["user_id"].astype(str), "item": rows["item_id"].astype(str),
                          "price": pd.to_numeric(price, errors="coerce"), "day": day})
    shoppers = []
    for user, own in table.sort_values(["user", "day"], kind="stable").groupby("user", sort=True):
        visits = tuple(tuple((i, None if pd.isna(p) else float(p)) for i, p in zip(d["item"], d["price"]))
                       for _, d in own.groupby("day", sort=True))
        shoppers.append(ReplayShopper(str(user), visits))
    return shoppers


@dataclass
class ArmTally:
    """What the simulator itself saw per arm (the ground truth the report should agree with)."""

    visits: int = 0
    hits: int = 0  # recommended products the shopper then bought because they were due to
    base_clicks: int = 0
    base_buys: int = 0

    def to_dict(self) -> dict[str, int]:
        return {"visits": self.visits, "hits": self.hits, "base_clicks": self.base_clicks, "base_buys": self.base_buys}


@dataclass
class SimulationResult:
    """Counts of one replay: shoppers, visits, events sent, per-arm tallies, and the seconds it took."""

    shoppers: int = 0
    visits: int = 0
    events: int = 0
    organic: int = 0  # held-out purchases the recommendations did not show
    seconds: float = 0.0
    arms: dict[str, ArmTally] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"shoppers": self.shoppers, "visits": self.visits, "events": self.events, "organic": self.organic,
                "seconds": round(self.seconds, 3), "arms": {a: t.to_dict() for a, t in sorted(self.arms.items())}}


def simulate(
    client: "httpx.Client",
    shoppers: Sequence[ReplayShopper],
    *,
    k: int = 12,
    base_click: float = 0.02,
    base_buy: float = 0.002,
    prices: Mapping[str, float] | None = None,
    seed: int = 0,
    headers: Mapping[str, str] | None = None,
) -> SimulationResult:
    """Replay ``shoppers`` through the API behind ``client`` (see the module); ``headers``
    carry an API key (write, to send events), ``prices`` price the base-rate purchases of
    products outside the held-out ones (None: unpriced). Deterministic for a ``seed`` given
    the same answers."""
    if not 0 <= base_buy <= base_click <= 1:
        raise ValueError("need 0 <= base_buy <= base_click <= 1")
    rng = random.Random(seed)
    prices = prices or {}
    headers = dict(headers or {})
    due = {s.user_id: {item: price for visit in s.visits for item, price in visit} for s in shoppers}
    # Calendar order: every shopper's first visit, then every second one, ...: the days of
    # different shoppers are not aligned, but each shopper's visits stay in their order.
    schedule = [(n, s) for s in shoppers for n in range(len(s.visits))]
    schedule.sort(key=lambda pair: (pair[0], pair[1].user_id))
    result = SimulationResult(shoppers=len(shoppers))
    start = perf_counter()
    for n, shopper in schedule:
        answer = client.get(f"/v1/users/{quote(shopper.user_id, safe='')}/recommendations",
                            params={"k": k}, headers=headers)
        answer.raise_for_status()
        body = answer.json()
        impression, arm = body.get("impression_id"), body.get("arm") or body.get("model") or "-"
        tally = result.arms.setdefault(arm, ArmTally())
        tally.visits += 1
        result.visits += 1
        wanted = due[shopper.user_id]
        events: list[dict[str, Any]] = []

        def send(item: str, kind: str, price: float | None = None, *, shown: bool = True) -> None:
            event = {"user_id": shopper.user_id, "item_id": item, "type": kind,
                     "event_id": f"sim-{impression or shopper.user_id}-{n}-{len(events)}"}
            if price is not None:
                event["price"] = price
            if shown and impression:
                event["impression_id"] = impression
            events.append(event)

        for rec in body["items"]:
            item = rec["item_id"]
            if item in wanted:
                price = wanted.pop(item)
                for kind in ("view", "cart"):
                    send(item, kind)
                send(item, "purchase", price)
                tally.hits += 1
            elif (draw := rng.random()) < base_buy:
                send(item, "view")
                send(item, "purchase", prices.get(item))
                tally.base_buys += 1
            elif draw < base_click:
                send(item, "view")
                tally.base_clicks += 1
        for item, price in shopper.visits[n]:
            if item in wanted:  # bought that day anyway, not through the recommendations
                wanted.pop(item)
                send(item, "purchase", price, shown=False)
                result.organic += 1
        if events:
            client.post("/v1/events", json=events, headers=headers).raise_for_status()
            result.events += len(events)
    result.seconds = perf_counter() - start
    return result
