"""Train/test splits: stratified sizes and determinism, temporal leakage, validation inside train."""

import numpy as np
import pandas as pd
import pytest

from stylesense.evaluation.splits import split, stratified_split, temporal_split, validation_split

DAY = 86_400


@pytest.fixture
def events() -> pd.DataFrame:
    """40 users with 1..40 events each, one event per user per day, on 60 day-stamped dates."""
    rng = np.random.default_rng(0)
    rows = []
    for u in range(40):
        for n, day in enumerate(rng.choice(60, size=u + 1, replace=False)):
            rows.append({"user_id": f"u{u}", "item_id": f"i{(u + n) % 25}", "type": "purchase",
                         "ts": pd.Timestamp("2020-01-01") + pd.Timedelta(days=int(day))})
    return pd.DataFrame(rows)


def _per_user(frame: pd.DataFrame) -> pd.Series:
    return frame.groupby("user_id").size()


def test_stratified_puts_round_ratio_n_of_each_user_in_train(events):
    train, test = stratified_split(events, 0.75, seed=42)
    n = _per_user(events)
    expected = np.round(0.75 * n)  # half to even: 2 events -> 2 train, 6 -> 4
    assert _per_user(train).reindex(n.index).tolist() == expected.tolist()
    assert _per_user(test).reindex(n.index, fill_value=0).tolist() == (n - expected).tolist()
    assert len(train) / len(events) == pytest.approx(0.75, abs=0.01)


def test_stratified_partitions_rows_and_keeps_every_user_in_train(events):
    train, test = stratified_split(events)
    assert not set(train.index) & set(test.index)
    assert set(train.index) | set(test.index) == set(events.index)
    assert set(train["user_id"]) == set(events["user_id"])
    assert list(train.index) == sorted(train.index)  # original order kept


def test_stratified_is_deterministic_per_seed(events):
    a, _ = stratified_split(events, seed=42)
    b, _ = stratified_split(events, seed=42)
    c, _ = stratified_split(events, seed=7)
    assert a.index.equals(b.index)
    assert not a.index.equals(c.index)


def test_stratified_rejects_a_ratio_outside_0_1(events):
    with pytest.raises(ValueError, match="ratio"):
        stratified_split(events, ratio=1.0)


def test_temporal_default_window_is_the_last_days_of_a_day_stamped_log(events):
    train, test = temporal_split(events, test_days=7)
    last = events["ts"].max()
    assert test["ts"].min() >= last - pd.Timedelta(days=6)
    assert test["ts"].max() == last  # the last day is in the test
    assert sorted(test["ts"].unique()) == sorted(events.loc[events["ts"] > last - pd.Timedelta(days=7), "ts"].unique())
    assert train["ts"].max() < test["ts"].min()  # no leakage
    assert len(train) + len(test) == len(events)
    assert not set(train.index) & set(test.index)


def test_temporal_explicit_cutoff_drops_events_after_the_window(events):
    cutoff = pd.Timestamp("2020-01-20")
    train, test = temporal_split(events, test_days=7, cutoff="2020-01-20")
    assert train["ts"].max() < cutoff <= test["ts"].min()
    assert test["ts"].max() < cutoff + pd.Timedelta(days=7)
    later = events["ts"] >= cutoff + pd.Timedelta(days=7)
    assert later.any() and len(train) + len(test) == len(events) - later.sum()


def test_temporal_on_epoch_seconds_keeps_the_last_event_in_test():
    ts = np.array([0, DAY, 5 * DAY + 5, 5 * DAY + 6, 10 * DAY + 5])  # MovieLens-style seconds
    ev = pd.DataFrame({"user_id": "u", "item_id": [f"i{i}" for i in range(5)], "type": "rating", "ts": ts})
    train, test = temporal_split(ev, test_days=5)  # test: (10d + 5s - 5d, 10d + 5s]
    assert test["ts"].tolist() == [5 * DAY + 6, 10 * DAY + 5]
    assert train["ts"].tolist() == [0, DAY, 5 * DAY + 5]


def test_validation_split_only_touches_train(events):
    for protocol in ("stratified", "temporal"):
        train, test = split(events, protocol)
        fit, valid = validation_split(train, protocol)
        assert set(fit.index) | set(valid.index) == set(train.index), protocol
        assert not set(fit.index) & set(valid.index), protocol
        assert not (set(fit.index) | set(valid.index)) & set(test.index), protocol
        assert len(valid) > 0, protocol


def test_temporal_validation_is_the_last_days_of_train(events):
    train, test = temporal_split(events, test_days=7)
    fit, valid = validation_split(train, "temporal", test_days=7)
    assert fit["ts"].max() < valid["ts"].min()
    assert valid["ts"].max() == train["ts"].max() < test["ts"].min()
    assert valid["ts"].min() > train["ts"].max() - pd.Timedelta(days=7)


def test_unknown_protocol_is_refused(events):
    with pytest.raises(ValueError, match="unknown protocol"):
        split(events, "last_item")


# -- last-item / last-session ---------------------------------------------------------------


def _tie_log() -> pd.DataFrame:
    """Three users; u0's last two events share a timestamp (the later row must win), u1 has a
    single event, u2's events arrive out of time order in the table."""
    return pd.DataFrame(
        {
            "user_id": ["u0", "u0", "u2", "u0", "u1", "u2", "u0", "u2"],
            "item_id": ["a", "b", "x", "c", "z", "y", "d", "w"],
            "type": "view",
            "ts": [10, 20, 500, 30, 5, 100, 30, 300],
        }
    )


def test_last_item_holds_out_exactly_each_users_last_event(events):
    train, test = split(events, "last-item")
    assert not set(train.index) & set(test.index)
    assert set(train.index) | set(test.index) == set(events.index)
    multi = _per_user(events)[lambda n: n > 1].index
    assert sorted(test["user_id"]) == sorted(multi)  # one test event per user with 2+ events
    last = events.sort_values("ts", kind="stable").groupby("user_id").tail(1)
    assert set(test.index) == set(last[last["user_id"].isin(multi)].index)
    # No leakage: each test event is at or after every training event of its user.
    latest_train = train.groupby("user_id")["ts"].max()
    assert (test.set_index("user_id")["ts"] >= latest_train.reindex(test["user_id"])).all()
    assert set(train["user_id"]) == set(events["user_id"])  # single-event users stay in training
    assert list(train.index) == sorted(train.index) and list(test.index) == sorted(test.index)


def test_last_item_breaks_timestamp_ties_by_table_order_deterministically():
    ev = _tie_log()
    train, test = split(ev, "last-item")
    assert dict(zip(test["user_id"], test["item_id"])) == {"u0": "d", "u2": "x"}  # u1: one event
    assert sorted(train["item_id"]) == ["a", "b", "c", "w", "y", "z"]
    again = split(ev, "last-item")
    assert again[0].index.equals(train.index) and again[1].index.equals(test.index)
    # The training order a model sees (stable sort by ts) puts the held-out event last.
    ordered = ev.sort_values("ts", kind="stable")
    assert ordered[ordered["user_id"] == "u0"]["item_id"].iloc[-1] == "d"


def test_last_session_holds_out_the_whole_last_session_by_gap():
    hour = 3600
    ev = pd.DataFrame(
        {
            "user_id": ["u"] * 6 + ["v"] * 3,
            "item_id": list("abcdef") + list("xyz"),
            "type": "view",
            # u: {a, b} then 5 h pause, {c, d} then 2 h, {e, f}; v: one session.
            "ts": [0, 60, 5 * hour, 5 * hour + 600, 7 * hour + 600, 7 * hour + 700, 0, 30, 90],
        }
    )
    train, test = split(ev, "last-session")
    assert test["item_id"].tolist() == ["e", "f"]
    assert sorted(train["item_id"]) == ["a", "b", "c", "d", "x", "y", "z"]
    from stylesense.evaluation.splits import last_item_split

    _, test3 = last_item_split(ev, "session", session_gap_hours=3)  # the 2 h pause is no cut
    assert test3["item_id"].tolist() == ["c", "d", "e", "f"]
    _, test_ev = last_item_split(ev, "event")
    assert test_ev["item_id"].tolist() == ["f", "z"]


def test_last_session_uses_session_ids_where_given_and_days_on_day_stamped_logs(events):
    ev = pd.DataFrame(
        {
            "user_id": ["u"] * 5,
            "item_id": list("abcde"),
            "type": "view",
            "ts": [0, 10, 20, 30, 40],
            "session_id": ["s1", "s1", "s2", "s2", "s2"],
        }
    )
    _, test = split(ev, "last-session")
    assert test["item_id"].tolist() == ["c", "d", "e"]
    # Day-stamped purchases: one session per shopping day.
    day = pd.Timestamp("2020-01-01")
    hm = pd.DataFrame(
        {
            "user_id": ["u"] * 5,
            "item_id": list("abcde"),
            "type": "purchase",
            "ts": [day, day, day + pd.Timedelta(days=3), day + pd.Timedelta(days=3), day + pd.Timedelta(days=3)],
        }
    )
    train, test = split(hm, "last-session")
    assert test["item_id"].tolist() == ["c", "d", "e"] and train["item_id"].tolist() == ["a", "b"]
    train, test = split(events, "last-session")  # the fixture: one event per user per day
    assert train.index.equals(split(events, "last-item")[0].index)


def test_last_item_validation_is_the_last_training_event(events):
    train, test = split(events, "last-item")
    fit, valid = validation_split(train, "last-item")
    assert set(fit.index) | set(valid.index) == set(train.index)
    assert not set(fit.index) & set(valid.index)
    assert (valid.groupby("user_id").size() == 1).all()
    latest_fit = fit.groupby("user_id")["ts"].max()
    assert (valid.set_index("user_id")["ts"] >= latest_fit.reindex(valid["user_id"])).all()


def test_last_item_bad_arguments_raise():
    from stylesense.evaluation.splits import last_item_split

    ev = _tie_log()
    with pytest.raises(ValueError, match="by"):
        last_item_split(ev, "day")
    with pytest.raises(ValueError, match="session_gap_hours"):
        last_item_split(ev, "session", session_gap_hours=0)
    train, test = last_item_split(ev.iloc[:0])
    assert train.empty and test.empty
