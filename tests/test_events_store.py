"""The event store: live events, bulk import without duplicates, incremental reads, durability,
one set of rules at every entry point, and concurrent writers."""

import multiprocessing
import random
from datetime import datetime, timedelta, timezone

import re

import numpy as np
import pandas as pd
import pytest

from stylesense.events import EventStore, ImportCounts
from stylesense.recommenders.data import Interactions

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=timezone.utc)


@pytest.fixture
def store(tmp_path) -> EventStore:
    return EventStore.open(f"sqlite:///{tmp_path / 'home.db'}")


def events(*rows: tuple) -> pd.DataFrame:
    """(user, item, type, ts[, price]) tuples as an events table."""
    return pd.DataFrame(
        [(*r, np.nan)[:5] for r in rows], columns=["user_id", "item_id", "type", "ts", "price"]
    )


def test_add_then_frame_round_trips_every_field(store):
    store.add("u1", "0123", type="cart", ts=T0, price=9.5, session_id="s1")
    store.add("u1", "0456", type="rating", ts=T0 + timedelta(seconds=1), value=4.0)
    store.add("u2", "0123")  # defaults: a view, now

    f = store.frame()
    assert list(f.columns) == ["user_id", "item_id", "type", "ts", "price", "value", "session_id", "pk"]
    assert str(f["ts"].dt.tz) == "UTC"
    first = f.iloc[0]
    assert (first.user_id, first.item_id, first.type, first.ts, first.price, first.session_id) == (
        "u1", "0123", "cart", pd.Timestamp(T0), 9.5, "s1")
    assert np.isnan(f.iloc[0]["value"]) and np.isnan(f.iloc[1]["price"])
    assert f.iloc[1]["value"] == 4.0 and f.iloc[1]["session_id"] == ""
    assert f.iloc[2]["type"] == "view"
    assert abs(f.iloc[2]["ts"] - pd.Timestamp.now(tz="UTC")) < pd.Timedelta(minutes=1)
    assert store.count() == 3 and store.users() == ["u1", "u2"]


def test_naive_times_are_utc_and_offsets_are_converted(store):
    store.add("u", "a", ts=datetime(2024, 3, 1, 12, 0))
    store.add("u", "b", ts=datetime(2024, 3, 1, 14, 0, tzinfo=timezone(timedelta(hours=2))))
    assert (store.frame()["ts"] == pd.Timestamp(T0)).all()


def test_add_rejects_unknown_types_and_empty_ids(store):
    with pytest.raises(ValueError, match="unknown event type.*'wishlist'.*known: cart, click"):
        store.add("u", "a", type="wishlist")
    with pytest.raises(ValueError, match="empty user id"):
        store.add("", "a")
    with pytest.raises(ValueError, match="price must be a finite number"):
        store.add("u", "a", price=float("nan"))
    assert store.count() == 0


def test_known_types_are_configurable(tmp_path):
    store = EventStore.open(f"sqlite:///{tmp_path / 'h.db'}", known_types=["view", "wishlist"])
    store.add("u", "a", type="wishlist")
    with pytest.raises(ValueError, match="unknown event type"):
        store.add("u", "a", type="purchase")


def test_an_identical_live_event_is_a_retry_stored_once(store):
    assert [store.add("u", "a", type="purchase", ts=T0) for _ in range(3)] == [True, False, False]
    assert store.add("u", "a", type="purchase", ts=T0 + timedelta(microseconds=1))
    assert store.count() == 2


BAD_EVENTS = [  # (user, item, type, ts, price): one broken rule each, and the reason given
    (("  padded  ", "a", "view", T0, None), "user id '  padded  ' has leading or trailing whitespace"),
    (("u", "\t", "view", T0, None), "empty item id"),
    (("u", "a", "wishlist", T0, None), "unknown event type 'wishlist'"),
    (("u", "a", "view", datetime(1900, 1, 1, tzinfo=timezone.utc), None), "time 1900-01-01 00:00:00+00:00 is outside"),
    (("u", "a", "view", datetime.now(timezone.utc) + timedelta(days=3), None), "is outside 1970-01-01 .. now + 1 day"),
    (("u", "a", "purchase", T0, -1.0), "price must be a finite number >= 0, got -1.0"),
    (("u", "a", "purchase", T0, float("inf")), "price must be a finite number >= 0, got inf"),
]


@pytest.mark.parametrize("event, reason", BAD_EVENTS)
def test_add_and_import_frame_apply_the_same_rules(store, event, reason):
    user, item, kind, ts, price = event
    with pytest.raises(ValueError, match=re.escape(reason)):
        store.add(user, item, kind, ts=ts, price=price)
    good = ("u", "ok", "view", T0, np.nan)
    with pytest.raises(ValueError, match=re.escape("1 invalid event(s), nothing stored; the first, row 1: ") + ".*"
                       + re.escape(reason)):
        store.import_frame(events(good, (user, item, kind, ts, np.nan if price is None else price)))
    assert store.count() == 0


def test_ids_are_kept_exactly_so_they_are_found_again(store):
    store.add("Alice Smith", "0111565001", type="cart", ts=T0)
    store.import_frame(events(("Bob", "0222", "view", T0)))
    assert store.users() == ["Alice Smith", "Bob"]
    assert store.frame(users=["Alice Smith"])["item_id"].tolist() == ["0111565001"]


def _add_everything(url: str, keys: list[int], seed: int, barrier, results) -> None:
    """One writer process: the same events as every other writer, in its own order."""
    try:
        store = EventStore.open(url)
        order = keys[:]
        random.Random(seed).shuffle(order)
        barrier.wait(timeout=120)
        results.put(sum(store.add(f"u{k % 5}", f"i{k}", "purchase", ts=T0 + timedelta(seconds=k % 3))
                        for k in order))
    except Exception as e:  # noqa: BLE001 - reported to the test
        results.put(repr(e))


def test_processes_adding_the_same_events_at_once_store_each_once(tmp_path):
    url = f"sqlite:///{tmp_path / 'home.db'}"
    EventStore.open(url).engine.dispose()  # the tables exist before the writers start
    ctx = multiprocessing.get_context("spawn")
    keys, writers = list(range(60)), 4
    barrier, results = ctx.Barrier(writers), ctx.Queue()
    procs = [ctx.Process(target=_add_everything, args=(url, keys, seed, barrier, results)) for seed in range(writers)]
    for proc in procs:
        proc.start()
    outcomes = [results.get(timeout=300) for _ in procs]
    for proc in procs:
        proc.join(timeout=60)
    assert all(isinstance(o, int) for o in outcomes), outcomes  # no IntegrityError, no lock error
    assert sum(outcomes) == len(keys)  # each event stored by exactly one of the writers
    store = EventStore.open(url)
    assert store.count() == len(keys)
    assert sorted(store.frame()["item_id"]) == sorted(f"i{k}" for k in keys)


def test_reimport_adds_nothing_and_identical_rows_are_repeats(store):
    frame = events(("u1", "a", "purchase", T0), ("u1", "a", "purchase", T0), ("u1", "a", "purchase", T0),
                   ("u2", "b", "view", T0))
    assert store.import_frame(frame) == ImportCounts(inserted=4, duplicates=0)
    assert store.import_frame(frame) == ImportCounts(inserted=0, duplicates=4)
    assert store.count() == 4
    # A later export with one more repeat of the same purchase adds exactly that one.
    assert store.import_frame(pd.concat([frame, frame.iloc[:1]])) == ImportCounts(1, 4)


def test_import_of_live_events_recognises_them(store):
    store.add("u", "a", type="cart", ts=T0, price=5.0)
    assert store.import_frame(events(("u", "a", "cart", T0, 5.0))) == ImportCounts(0, 1)


def test_import_frame_accepts_epoch_seconds_and_chunks(store):
    n = 12_345  # more than one insert chunk
    frame = pd.DataFrame({"user_id": [f"u{i % 7}" for i in range(n)], "item_id": [str(i) for i in range(n)],
                          "type": "rating", "ts": np.arange(n, dtype=float) + 1.7e9, "value": 3.0})
    assert store.import_frame(frame) == ImportCounts(n, 0)
    f = store.frame()
    assert f["ts"].iloc[0] == pd.Timestamp(1.7e9, unit="s", tz="UTC")
    assert (f["value"] == 3.0).all() and f["price"].isna().all()


def test_import_frame_rejects_bad_tables(store):
    with pytest.raises(ValueError, match="lacks column.*ts"):
        store.import_frame(pd.DataFrame({"user_id": ["u"], "item_id": ["a"], "type": ["view"]}))
    with pytest.raises(ValueError, match="unknown event type.*'buy'"):
        store.import_frame(events(("u", "a", "buy", T0)))
    assert store.count() == 0


def test_frame_is_time_ordered_and_filters_by_user_and_pk(store):
    store.import_frame(events(("u1", "late", "view", T0 + timedelta(hours=1)), ("u2", "x", "view", T0),
                              ("u1", "early", "view", T0 - timedelta(hours=1))))
    assert store.frame()["item_id"].tolist() == ["early", "x", "late"]
    assert store.frame(users=["u1"])["item_id"].tolist() == ["early", "late"]
    assert store.frame(users=[]).empty

    trained_at = store.max_pk()
    assert store.frame(after_pk=trained_at).empty
    store.add("u2", "new", type="click", ts=T0 - timedelta(days=1))
    store.add("u1", "newer", type="like")
    newer = store.frame(after_pk=trained_at)
    assert newer["item_id"].tolist() == ["new", "newer"]
    assert (newer["pk"] > trained_at).all()
    assert store.frame(users=["u1"], after_pk=trained_at)["item_id"].tolist() == ["newer"]


def test_empty_store(store):
    assert store.count() == 0 and store.max_pk() == 0 and store.users() == []
    f = store.frame()
    assert f.empty and str(f["ts"].dtype) == "datetime64[us, UTC]"


def test_sqlite_file_persists_across_reopen(tmp_path):
    url = f"sqlite:///{tmp_path / 'home.db'}"
    first = EventStore.open(url)
    first.add("u", "0001", type="purchase", ts=T0, price=1.25)
    first.engine.dispose()

    again = EventStore.open(url)
    assert again.count() == 1
    assert again.frame()[["item_id", "price"]].values.tolist() == [["0001", 1.25]]


def test_frame_feeds_interactions(store):
    store.import_frame(events(("u1", "a", "purchase", T0), ("u1", "a", "purchase", T0),
                              ("u2", "b", "view", T0)))
    data = Interactions.from_frame(store.frame())
    assert data.n_events == 3
    assert data.matrix[data.user_index["u1"], data.item_index["a"]] == 16.0  # two purchases


def test_events_reads_pages_and_delete_removes_by_user_item_and_type(store):
    for i, (user, item, kind) in enumerate([("u1", "a", "view"), ("u1", "a", "like"), ("u1", "b", "view"),
                                            ("u2", "a", "view")]):
        store.add(user, item, type=kind, ts=T0 + timedelta(seconds=i), value=float(i))
    every = store.events()
    assert [(e.user_id, e.item_id, e.type) for e in every] == [
        ("u1", "a", "view"), ("u1", "a", "like"), ("u1", "b", "view"), ("u2", "a", "view")]
    assert every[1].ts == T0 + timedelta(seconds=1) and every[1].value == 1.0 and every[1].price is None
    first = store.events(limit=2)
    assert [e.pk for e in first + store.events(after_pk=first[-1].pk, limit=2)] == [e.pk for e in every]
    assert [e.user_id for e in store.events(item_id="a", types=["view"])] == ["u1", "u2"]
    with pytest.raises(ValueError, match="limit"):
        store.events(limit=0)

    assert store.delete("u1", "a", types=["like"]) == 1
    assert store.delete("u1", "a", types=["like"]) == 0  # nothing left to delete
    assert store.delete("u1") == 2 and [e.user_id for e in store.events()] == ["u2"]
    with pytest.raises(ValueError, match="whitespace"):
        store.delete(" u2")
