"""Train/test splits of an event log (columns user_id, item_id, type, ts, ...), by protocol.

Two protocols answer two questions:

* ``stratified``: each user's events split at random 75/25 (Microsoft Recommenders'
  ``python_stratified_split``). Every user is known at training time, so it measures how well a model
  fills in a known user's tastes; it is the protocol behind the published MovieLens tables.
* ``temporal``: one global time cutoff; the last ``test_days`` are the test. It measures
  predicting the future from the past, as a shop does (Kaggle H&M: the next 7 days of purchases).
* ``last-item`` / ``last-session``: per user, the last event (or the whole last session) is the
  test and everything before it is training (leave-one-out, the protocol of the session and
  sequence papers: GRU4Rec, SASRec, RecBole). It measures "what comes next for this shopper".

:func:`validation_split` carves a tuning split out of training data only, by the same protocol,
so that choosing hyper-parameters never looks at the test. New protocols are one more function,
registered in ``_SPLITTERS`` with its parameters in :data:`PROTOCOL_PARAMS`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from stylesense.errors import InvalidInput
from stylesense.recommenders.data import epoch_seconds, session_starts

# Which of split()'s parameters each protocol reads (results record exactly these).
PROTOCOL_PARAMS: dict[str, tuple[str, ...]] = {
    "stratified": ("ratio", "seed"),
    "temporal": ("test_days", "cutoff"),
    "last-item": (),
    "last-session": (),
}
DAY = 86_400
SESSION_GAP_HOURS = 1.0  # default: a pause longer than this starts a new session


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
        raise InvalidInput(f"ratio must be in (0, 1), got {ratio}")
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
    ts = epoch_seconds(events["ts"])
    span = round(test_days * DAY)
    if cutoff is None:
        if len(ts) == 0:
            raise InvalidInput("cannot place a cutoff in an empty event log")
        tick = DAY if (ts % DAY == 0).all() else 1
        start = int(ts.max()) + tick - span
    else:
        start = int(epoch_seconds(pd.Series([cutoff]))[0])
    return events[ts < start], events[(ts >= start) & (ts < start + span)]


def last_item_split(
    events: pd.DataFrame, by: str = "event", session_gap_hours: float = SESSION_GAP_HOURS
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-user hold-out of the end of each timeline: ``by="event"`` puts each user's last event
    in the test, ``by="session"`` their whole last session; everything before is training.

    Order: events are sorted by ``ts`` with a *stable* sort, so events sharing a timestamp
    (MovieLens stores whole seconds, H&M whole days) keep their order in the table, and the
    "last" of a tie is the one appearing last. :class:`~stylesense.recommenders.data.Interactions`
    orders the training events the same way, so the held-out event is exactly the one that
    follows the training sequence a sequence model sees. Every test event of a user is at or
    after all of that user's training events (no leakage).

    Sessions (``by="session"``): consecutive events of a user belong to one session while they
    carry the same ``session_id`` (where the table has that column and the event a non-empty
    id), or, for events without one, while the pause between them is at most
    ``session_gap_hours``. A day-stamped purchase log (H&M) thus gets one session per shopping
    day with any gap under 24 h. The last session is the maximal run at the end of the timeline.

    Users with a single event (session) have nothing to train on: they stay wholly in training
    and out of the test (they would only be cold users). For the evaluation note that a user's
    last item may repeat an earlier one (repeat purchases); with ``exclude_seen`` (the harness
    default) such a test item cannot be hit, as on any protocol. On MovieLens (one rating per
    pair) this never happens. Both halves keep the original row order and index.
    """
    if by not in ("event", "session"):
        raise InvalidInput(f"by must be 'event' or 'session', got {by!r}")
    if not session_gap_hours > 0:
        raise InvalidInput(f"session_gap_hours must be > 0, got {session_gap_hours}")
    ts = epoch_seconds(events["ts"])
    users = pd.factorize(events["user_id"].astype(str))[0]
    order = np.lexsort((np.arange(len(events)), ts, users))  # by user, then time, then row
    u, t = users[order], ts[order]
    first = np.ones(len(order), dtype=bool)  # first event of a user's timeline
    first[1:] = u[1:] != u[:-1]
    if by == "event":
        starts = np.ones(len(order), dtype=bool)
    else:
        session = (
            events["session_id"].fillna("").astype(str).to_numpy()[order]
            if "session_id" in events.columns
            else np.full(len(order), "", dtype=object)
        )
        starts = session_starts(first, t, session, session_gap_hours)
    # Test: from each user's last session start on; only users with an earlier session.
    block = np.cumsum(starts)  # session number, increasing along the sorted events
    last_block = np.zeros(users.max() + 1 if len(users) else 0, dtype=np.int64)
    np.maximum.at(last_block, u, block)
    first_block = np.zeros_like(last_block)
    first_block[u[first]] = block[first]
    in_test_sorted = (block == last_block[u]) & (first_block[u] < last_block[u])
    in_test = np.zeros(len(events), dtype=bool)
    in_test[order] = in_test_sorted
    return events[~in_test], events[in_test]


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
        raise InvalidInput(f"unknown protocol {protocol!r}; choose from {', '.join(PROTOCOL_PARAMS)}")
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
    stratified again within train, temporal with the last ``test_days`` of train as the
    validation window, or last-item / last-session with each user's last training event
    (session) as validation. Tune on this, then refit on all of train for the test."""
    return split(train, protocol, ratio=ratio, seed=seed, test_days=test_days)


_SPLITTERS = {
    "stratified": stratified_split,
    "temporal": temporal_split,
    "last-item": lambda events: last_item_split(events, "event"),
    "last-session": lambda events: last_item_split(events, "session"),
}
