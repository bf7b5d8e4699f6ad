"""Which served recommendation (impression) an event is credited to.

The rule, applied to each event on its own:

1. **Explicit first.** An event carrying an ``impression_id`` (the id the API's recommendation
   answered with) is credited to that impression, provided it is the same shopper's and the
   event falls within the window after it (``impression time <= event time <= impression time +
   window``). An event naming an impression is credited to that one or to none: an id of another
   experiment, a stale or a foreign one is never re-read as some other impression.
2. **Else implicit.** An event without an id is credited to the shopper's *latest* impression
   within the window before it whose shown items include the event's item. An event on an item
   no recent impression showed is credited to none (organic behaviour).

Every event type is credited the same way; what counts as a click, a cart, a purchase or
negative feedback is the report's business (:mod:`stylesense.experiments.report`). Times are
integer microseconds (the event log's); impressions carry server time, live events server time
unless the client sends its own.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from stylesense.experiments.store import Impression


def attribute(impressions: Sequence[Impression], events: Iterable[Mapping[str, Any]],
              window_us: int) -> dict[int, str]:
    """Event pk -> impression id for every credited event (see the module's rule). ``events``
    carry pk, user_id, item_id, ts_us and impression_id (None where they name none)."""
    by_id = {i.impression_id: i for i in impressions}
    timeline: dict[str, list[Impression]] = {}
    for impression in sorted(impressions, key=lambda i: i.ts_us):
        timeline.setdefault(impression.user_id, []).append(impression)
    times = {user: [i.ts_us for i in shown] for user, shown in timeline.items()}
    shown_items = {i.impression_id: frozenset(i.items) for i in impressions}

    credited: dict[int, str] = {}
    for event in events:
        user, ts = event["user_id"], event["ts_us"]
        named = event.get("impression_id")
        if named:
            impression = by_id.get(named)
            if impression is not None and impression.user_id == user and impression.ts_us <= ts <= impression.ts_us + window_us:
                credited[event["pk"]] = named
            continue
        shown = timeline.get(user)
        if not shown:
            continue
        at = bisect_right(times[user], ts) - 1  # the latest impression at or before the event
        while at >= 0 and shown[at].ts_us >= ts - window_us:
            if event["item_id"] in shown_items[shown[at].impression_id]:
                credited[event["pk"]] = shown[at].impression_id
                break
            at -= 1
    return credited
