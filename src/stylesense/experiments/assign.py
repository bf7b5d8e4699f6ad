"""Which arm of an experiment a shopper sees: a stable hash of (experiment, shopper).

The hash is SHA-256, not Python's ``hash`` (salted per process: two API workers, or one
restarted, would disagree). Its first 8 bytes, read as an integer over 2**64, give a point in
[0, 1) that is uniform over shoppers and independent between experiments (the experiment's name
is hashed with the id), and the point falls in one arm's slice of the split. So the same shopper
always lands in the same arm of an experiment, in every process, with no lookup; the store also
records the first assignment (see :meth:`ExperimentStore.assign`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from itertools import accumulate

_SCALE = float(1 << 64)


def bucket(experiment: str, user_id: str) -> float:
    """The shopper's point in [0, 1) for this experiment."""
    digest = hashlib.sha256(f"{experiment}\x00{user_id}".encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big") / _SCALE


def choose_arm(experiment: str, user_id: str, arms: Sequence[str], split: Sequence[float]) -> str:
    """The arm whose slice of [0, 1) holds the shopper's point (``split``: shares summing to 1)."""
    point = bucket(experiment, user_id)
    for arm, edge in zip(arms, accumulate(split)):
        if point < edge:
            return arm
    return arms[-1]  # the shares' float sum may fall a hair short of 1
