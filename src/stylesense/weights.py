"""Event types and how much one event of each counts as implicit feedback.

A module of its own, importing nothing, because two sides need the table: the event store
rejects a type that is not in it (so a typo never reaches a model as an unweighted event) and
the recommenders weigh events by it. Taken from the recommenders, it would load pandas and
scipy into every `stylesense events add`.
"""

from __future__ import annotations

# A purchase says more than a view; the exact numbers are a tunable default
# (``Config.event_weights`` overrides them per home).
DEFAULT_WEIGHTS: dict[str, float] = {
    "view": 1.0,
    "click": 2.0,
    "like": 3.0,
    "cart": 4.0,
    "purchase": 8.0,
    "rating": 1.0,
    "dislike": 0.0,
    "not_interested": 0.0,
}

# Explicit negative feedback: the shopper said no to the product. Such events are never an
# interaction for any model (their weight is 0 and the recommenders never see them); instead
# the product leaves that shopper's recommendations at once and its look-alikes drop
# (stylesense.behaviour).
NEGATIVE_TYPES: tuple[str, ...] = ("dislike", "not_interested")
