"""Crediting events to impressions: an explicit impression id first (same shopper, within the
window), else the shopper's latest impression within the window that showed the item; and the
event log's ``impression_id`` field, stored, read back and added to older homes."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta, timezone

import pytest

from stylesense.errors import InvalidInput
from stylesense.events import EventStore, NewEvent
from stylesense.experiments.attribution import attribute
from stylesense.experiments.store import Impression

HOUR = 3_600_000_000  # microseconds
WINDOW = 24 * HOUR


def shown(impression_id: str, user: str, items: str, at_hours: float) -> Impression:
    return Impression(impression_id, "exp", "a", "popular", user, tuple(items.split()), int(at_hours * HOUR))


def event(pk: int, user: str, item: str, at_hours: float, impression_id: str | None = None, kind: str = "view") -> dict:
    return {"pk": pk, "user_id": user, "item_id": item, "type": kind, "ts_us": int(at_hours * HOUR),
            "price": None, "impression_id": impression_id}


IMPRESSIONS = [shown("i1", "ann", "p1 p2 p3", 0), shown("i2", "ann", "p3 p4", 5), shown("i3", "bob", "p1 p9", 1)]


def test_an_event_on_a_shown_item_is_credited_to_the_latest_impression_that_showed_it():
    credited = attribute(IMPRESSIONS, [
        event(1, "ann", "p1", 6),  # only i1 showed p1
        event(2, "ann", "p3", 6),  # both did: the latest, i2
        event(3, "ann", "p3", 3),  # before i2 was served: i1
        event(4, "bob", "p1", 2),  # bob's own impression, never ann's
        event(5, "ann", "p9", 6),  # nothing ann was shown: organic
        event(6, "cat", "p1", 6),  # a shopper never served
    ], WINDOW)
    assert credited == {1: "i1", 2: "i2", 3: "i1", 4: "i3"}


def test_the_window_bounds_credit_on_both_sides():
    credited = attribute(IMPRESSIONS, [
        event(1, "ann", "p1", -0.5),  # before any impression
        event(2, "ann", "p1", 24),  # at the window's end: still in
        event(3, "ann", "p1", 24.01),  # past i1's window; i2 never showed p1
        event(4, "ann", "p3", 28),  # past i1's window, within i2's
        event(5, "ann", "p4", 29.5),  # past every window
    ], WINDOW)
    assert credited == {2: "i1", 4: "i2"}
    assert attribute(IMPRESSIONS, [event(1, "ann", "p1", 3)], 2 * HOUR) == {}  # a shorter window


def test_an_explicit_impression_id_comes_first_and_is_never_re_read_as_another():
    credited = attribute(IMPRESSIONS, [
        event(1, "ann", "p3", 6, "i1"),  # named i1, though i2 is later and showed p3 too
        event(2, "ann", "zz", 1, "i1"),  # an item the impression did not show: the id says it answers it
        event(3, "ann", "p1", 6, "i3"),  # bob's impression: none, not ann's i1
        event(4, "ann", "p1", 6, "other-experiment"),  # an unknown id: none, not i1
        event(5, "ann", "p1", 30, "i1"),  # past the window: none
        event(6, "ann", "p3", 4, "i2"),  # before i2 was served: none
    ], WINDOW)
    assert credited == {1: "i1", 2: "i1"}


def test_impression_ids_are_stored_with_events_and_read_back(tmp_path):
    store = EventStore.open(f"sqlite:///{tmp_path / 'db.sqlite'}")
    counts = store.add_many([NewEvent("ann", "p1", "purchase", price=9.5, impression_id="i1"), NewEvent("ann", "p2")])
    assert counts.inserted == 2
    stored = {e.item_id: e for e in store.events(user_id="ann")}
    assert stored["p1"].impression_id == "i1" and stored["p2"].impression_id is None
    assert stored["p1"].to_dict()["impression_id"] == "i1"
    with pytest.raises(InvalidInput, match="impression id"):
        store.add_many([NewEvent("ann", "p1", impression_id=" padded ")])


def test_an_older_home_gains_the_impression_id_column(tmp_path):
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as db:  # the events table as homes made before impression ids had it
        db.execute("CREATE TABLE events (pk INTEGER PRIMARY KEY AUTOINCREMENT, user_id VARCHAR(255), "
                   "item_id VARCHAR(255), type VARCHAR(32), ts_us BIGINT, seq INTEGER, price FLOAT, value FLOAT, "
                   "session_id VARCHAR(255), event_id VARCHAR(255), comment TEXT, labels JSON, "
                   "CONSTRAINT uq_events_key UNIQUE (user_id, item_id, type, ts_us, seq))")
        db.execute("INSERT INTO events (user_id, item_id, type, ts_us, seq) VALUES ('ann', 'p1', 'view', 1, 0)")
    store = EventStore.open(f"sqlite:///{path}")
    when = datetime.now(timezone.utc) - timedelta(minutes=1)
    store.add_many([NewEvent("ann", "p2", "click", ts=when, impression_id="abc")])
    assert [(e.item_id, e.impression_id) for e in store.events(user_id="ann")] == [("p1", None), ("p2", "abc")]
