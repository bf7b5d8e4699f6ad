"""Train/test splits of an event log (columns user_id, item_id, type, ts, ...), by protocol.

Two protocols answer two questions:

* ``stratified``: each user's events split at random 75/25 (Microsoft Recommenders'
  ``python_stratified_split``). Every user is known at training time, so it measures how well a model
  fills in a known user's tastes; it is the protocol behind the published MovieLens tables.
* ``temporal``: one global time cutoff; the last ``test_days`` are the test. It measures
  predicting the future from the past, as a shop does (Kaggle H&M: the next 7 days of purchases).

:func:`validation_split` carves a tuning split out of training data only, by the same protocol,
so that choosing hyper-parameters never looks at the test. New protocols (e.g. a per-user
``last_item`` hold-out) are one more function, registered in ``_SPLITTERS`` with its
parameters in :data:`PROTOCOL_PARAMS`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from stylesense.recommenders.data import _epoch_seconds

# Which of split()'s parameters each protocol reads (results record exactly these).
PROTOCOL_PARAMS: dict[str, tuple[str, ...]] = {
    "stratified": ("ratio", "seed"),
    "temporal": ("test_days", "cutoff"),
}
DAY = 86_400


def stratified_split(
    events: pd.DataFrame, ratio: float = 0.75, seed: int = 42
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-user random split of the event rows: each user's rows are shuffled and the first
    ``round(ratio * n)`` go to train, the rest to test.

    Rows, not unique (user, item) pairs, are split, as MS Recommenders does with rating rows;
    on MovieLens (one rating per pair) that is the same thing, while on a purchase log a
    repeat purchase can land one copy in train and one in test. ``round`` is round-half-to-even
    like Python's and MS Recommenders' (2 rows at 0.75 give 2 train rows). With ``ratio >= 0.5``
    every user keeps at least one training row. Deterministic for a seed; the shuffle is
    numpy's, so the rows chosen differ from MS Recommenders' pandas shuffle. Both halves keep
    the original row order and index.
    """
    if not 0.0 < ratio < 1.0:
        raise ValueError(f"ratio must be in (0, 1), got {ratio}")
    users = pd.factorize(events["user_id"].astype(str))[0]
    shuffle = np.random.default_rng(seed).random(len(events))
    order = np.lexsort((shuffle, users))  # by user, shuffled within each user
    counts = np.bincount(users)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    position = np.empty(len(events), dtype=np.int64)
    position[order] = np.arange(len(events)) - np.repeat(starts, counts)
    in_train = position < np.round(ratio * counts)[users]
    return events[in_train], events[~in_train]


def temporal_split(
    events: pd.DataFrame, test_days: float = 7, cutoff: object = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Global time split: train = events before ``cutoff``, test = events in
    ``[cutoff, cutoff + test_days)``; events after the window are in neither.

    ``cutoff`` (a timestamp, date string or epoch seconds) defaults to the start of the last
    ``test_days`` of the log, the last event included: for day-stamped logs (every ``ts`` at
    midnight, as H&M's ``t_dat``) the window is the last ``test_days`` calendar days, otherwise
    it ends one second after the last event. No event is in both halves, and every test event
    is later than every training event.
    """
    ts = _epoch_seconds(events["ts"])
    span = round(test_days * DAY)
    if cutoff is None:
        if len(ts) == 0:
            raise ValueError("cannot place a cutoff in an empty event log")
        tick = DAY if (ts % DAY == 0).all() else 1
        start = int(ts.max()) + tick - span
    else:
        start = int(_epoch_seconds(pd.Series([cutoff]))[0])
    return events[ts < start], events[(ts >= start) & (ts < start + span)]


def split(
    events: pd.DataFrame,
    protocol: str,
    *,
    ratio: float = 0.75,
    seed: int = 42,
    test_days: float = 7,
    cutoff: object = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, test) by protocol name; each protocol reads only its :data:`PROTOCOL_PARAMS`."""
    if protocol not in _SPLITTERS:
        raise ValueError(f"unknown protocol {protocol!r}; choose from {', '.join(PROTOCOL_PARAMS)}")
    given = {"ratio": ratio, "seed": seed, "test_days": test_days, "cutoff": cutoff}
    return _SPLITTERS[protocol](events, **{name: given[name] for name in PROTOCOL_PARAMS[protocol]})


def validation_split(
    train: pd.DataFrame,
    protocol: str,
    *,
    ratio: float = 0.75,
    seed: int = 42,
    test_days: float = 7,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(fit, validation) carved from training data only, by the same protocol as the test:
    stratified again within train, or temporal with the last ``test_days`` of train as the
    validation window. Tune on this, then refit on all of train for the test."""
    return split(train, protocol, ratio=ratio, seed=seed, test_days=test_days)


_SPLITTERS = {"stratified": stratified_split, "temporal": temporal_split}
