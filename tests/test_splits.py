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
