"""The event store: live events, bulk import without duplicates, incremental reads, durability."""

from datetime import datetime, timedelta, timezone

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
    with pytest.raises(ValueError, match="non-empty"):
        store.add("", "a")
    with pytest.raises(ValueError, match="price must be a finite number"):
        store.add("u", "a", price=float("nan"))
    assert store.count() == 0


def test_known_types_are_configurable(tmp_path):
    store = EventStore.open(f"sqlite:///{tmp_path / 'h.db'}", known_types=["view", "wishlist"])
    store.add("u", "a", type="wishlist")
    with pytest.raises(ValueError, match="unknown event type"):
        store.add("u", "a", type="purchase")


def test_identical_live_events_are_repeats(store):
    for _ in range(3):
        store.add("u", "a", type="purchase", ts=T0)
    assert store.count() == 3


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
