"""Live events in batches (what POST /v1/events stores): all or nothing, idempotent by the
sender's event id, times as ISO 8601 or epoch seconds; a shopper's events newest first, page
by page; an older home's events table gains the event id column."""

import re
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from stylesense.errors import InvalidInput
from stylesense.events import EventStore, ImportCounts, NewEvent
from stylesense.events.store import as_time

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=timezone.utc)


@pytest.fixture
def store(tmp_path) -> EventStore:
    return EventStore.open(f"sqlite:///{tmp_path / 'home.db'}")


def test_a_batch_is_stored_whole_or_refused_whole_naming_each_bad_event(store):
    good = NewEvent("u1", "a", "purchase", T0, price=9.5, session_id="s1")
    bad = [NewEvent("u1", "b", "wishlist", T0), NewEvent("u2", " c", "view", T0),
           NewEvent("u3", "d", "view", "yesterday"), NewEvent("u4", "e", "view", T0, price=float("nan"))]
    with pytest.raises(InvalidInput) as refused:
        store.add_many([good, *bad])
    message = str(refused.value)
    assert message.startswith("4 invalid event(s), nothing stored: event 1: unknown event type 'wishlist'")
    for reason in ("event 2: item id ' c' has leading or trailing whitespace", "event 3: time 'yesterday' is not ISO 8601",
                   "event 4: price must be a finite number (None: no price), got nan"):
        assert reason in message
    assert store.count() == 0
    many = [NewEvent("u", "a", "oops", T0)] * 25
    assert str(_refusal(store, many)).endswith("event 9: unknown event type 'oops' (known: cart, click, dislike, like, "
                                               "not_interested, purchase, rating, view); and 15 more")
    assert store.add_many([good, NewEvent("u1", "b", ts=T0)]) == ImportCounts(2, 0)
    assert store.add_many([]) == ImportCounts(0, 0)


def _refusal(store: EventStore, events: list[NewEvent]) -> InvalidInput:
    with pytest.raises(InvalidInput) as refused:
        store.add_many(events)
    return refused.value


def test_a_retried_batch_stores_nothing_twice(store):
    batch = [NewEvent("u1", "a", "view", event_id="e1"),  # no time: "now", a new one on the retry
             NewEvent("u1", "b", "cart", T0),  # a time of its own: recognised without an id
             NewEvent("u2", "a", "view", T0 + timedelta(seconds=1), event_id="e3")]
    assert store.add_many(batch).to_dict() == {"inserted": 3, "duplicates": 0}
    assert store.add_many(batch).to_dict() == {"inserted": 0, "duplicates": 3}
    assert store.add_many([NewEvent("u9", "z", "purchase", T0, event_id="e1")]) == ImportCounts(0, 1)  # the id wins
    assert store.count() == 3
    assert {e.event_id for e in store.events()} == {"e1", None, "e3"}


def test_identical_events_within_a_batch_are_repeats_as_in_a_log(store):
    twice = [NewEvent("u", "a", "purchase", T0)] * 2
    assert store.add_many(twice) == ImportCounts(2, 0)  # two bought at once
    assert store.add_many(twice) == ImportCounts(0, 2)  # the same two, again
    assert not store.add("u", "a", "purchase", ts=T0)  # a single live event is the first of them
    assert store.add_many([NewEvent("u", "b", event_id="x"), NewEvent("u", "b", event_id="x")]) == ImportCounts(1, 1)


def test_times_are_iso_8601_or_epoch_seconds():
    assert as_time("2024-03-01T12:00:00Z") == T0
    assert as_time("2024-03-01T14:00:00+02:00") == T0
    assert as_time("2024-03-01T12:00:00") == T0  # no offset: UTC
    assert as_time("2024-03-01") == T0 - timedelta(hours=12)
    assert as_time(T0.timestamp()) == as_time(int(T0.timestamp())) == as_time(str(int(T0.timestamp()))) == T0
    assert as_time(datetime(2024, 3, 1, 12)) == T0
    for value, reason in [("soon", "is not ISO 8601"), (True, "got bool"), ([1], "got list"),
                          (1.7e15, "beyond the dates"), (float("nan"), "beyond the dates")]:
        with pytest.raises(InvalidInput, match=re.escape(reason)):
            as_time(value)


def test_times_outside_the_plausible_range_are_refused(store):
    millis = int(T0.timestamp() * 1000)  # milliseconds sent as seconds
    assert "is outside 1970-01-01 .. now + 1 day" in str(_refusal(store, [NewEvent("u", "a", ts=millis / 1000 * 100)]))
    assert "beyond the dates a timestamp holds" in str(_refusal(store, [NewEvent("u", "a", ts=millis)]))


def test_session_and_event_ids_follow_the_id_rules(store):
    assert "session id ' s' has leading or trailing whitespace" in str(_refusal(store, [NewEvent("u", "a", session_id=" s")]))
    assert "event id is 300 characters long" in str(_refusal(store, [NewEvent("u", "a", event_id="e" * 300)]))
    assert "empty event id" in str(_refusal(store, [NewEvent("u", "a", event_id="")]))
    assert store.add_many([NewEvent("u", "a", session_id="")]) == ImportCounts(1, 0)  # "": no session


def test_latest_reads_a_shopper_newest_first_page_by_page_without_losing_ties(store):
    same = T0 + timedelta(hours=1)
    store.add_many([NewEvent("u", f"i{k}", "purchase", same) for k in range(4)]  # four at one instant
                   + [NewEvent("u", "old", "view", T0), NewEvent("u", "new", "view", same + timedelta(hours=1)),
                      NewEvent("other", "x", "view", same)])
    pages, before = [], None
    while True:
        page = store.latest("u", limit=2, before=before)
        pages.append([e.item_id for e in page.events])
        if page.next_before is None:
            break
        before = page.next_before
    assert pages == [["new", "i3"], ["i2", "i1"], ["i0", "old"]]  # ties: the latest stored first
    assert [e.item_id for e in store.latest("u", before=same.isoformat()).events] == ["old"]
    assert [e.item_id for e in store.latest("u", before=str(same.timestamp())).events] == ["old"]
    first = store.latest("u", limit=1).events[0].to_dict()
    assert first == {"user_id": "u", "item_id": "new", "type": "view", "ts": "2024-03-01T14:00:00+00:00",
                     "price": None, "value": None, "session_id": None, "event_id": None, "impression_id": None}
    assert store.latest("nobody").to_dict() == {"events": [], "next_before": None}
    for limit in (0, 1001, True):
        with pytest.raises(InvalidInput, match="limit must be an integer from 1 to 1000"):
            store.latest("u", limit=limit)
    with pytest.raises(InvalidInput, match="is not ISO 8601"):
        store.latest("u", before="page-2")
    with pytest.raises(InvalidInput, match="empty user id"):
        store.latest("")


def test_an_older_home_gains_the_event_id_column(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    old = EventStore.open(url)
    old.add("u", "a", "view", ts=T0)
    with old.engine.begin() as conn:  # the table as homes made before event ids have it
        conn.execute(text("DROP INDEX uq_events_event_id"))
        conn.execute(text("ALTER TABLE events DROP COLUMN event_id"))
    old.engine.dispose()
    store = EventStore.open(url)
    assert [(e.item_id, e.event_id) for e in store.events()] == [("a", None)]
    batch = [NewEvent("u", "b", event_id="e1")]
    assert (store.add_many(batch), store.add_many(batch)) == (ImportCounts(1, 0), ImportCounts(0, 1))
    EventStore.open(url)  # opening it again changes nothing
    assert store.count() == 2


_anything = st.one_of(st.none(), st.booleans(), st.integers(-10**20, 10**20), st.floats(allow_nan=True),
                      st.text(max_size=12), st.datetimes(timezones=st.just(timezone.utc)), st.lists(st.integers(), max_size=2))
_events = st.lists(st.builds(NewEvent, user_id=st.one_of(st.sampled_from(["u1", "u2"]), _anything),
                             item_id=st.one_of(st.sampled_from(["a", "b"]), _anything),
                             type=st.one_of(st.sampled_from(["view", "purchase"]), _anything),
                             ts=_anything, price=_anything, value=_anything, session_id=_anything,
                             event_id=st.one_of(st.sampled_from(["e1", "e2"]), _anything)), max_size=6)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=_events)
def test_any_batch_is_stored_whole_and_counted_or_refused_with_a_reason_and_nothing_stored(store, batch):
    before = store.count()
    try:
        counts = store.add_many(batch)
    except InvalidInput as e:
        assert str(e).startswith(f"{str(e).split(' ', 1)[0]} invalid event(s), nothing stored: event ")
        assert store.count() == before
        return
    assert counts.inserted + counts.duplicates == len(batch) and store.count() == before + counts.inserted
    assert store.add_many(batch).inserted == sum(e.ts is None and e.event_id is None for e in batch)  # a retry
