"""A home's A/B experiments: create, serve through, stop, report (``StyleSense.experiments``).

Serving is where an experiment lives: :meth:`Experiments.recommend_for` is the one way every
surface (the API's recommendations route, the CLI, the web app) asks for a shopper's
recommendations. While an experiment runs, it puts the shopper in an arm (sticky: a stable
hash, recorded with the first answer), answers with that arm's model and records the answer as an
impression, whose id goes back with it; the shop sends that id with the events the answer led
to (``impression_id``), and :mod:`.attribution` credits events to impressions. A request that
names its model is outside the experiment (a comparison page, a debugging call): no arm, no
impression. One experiment runs at a time, so each answer has exactly one arm.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from stylesense.errors import InvalidInput, NotReady
from stylesense.experiments.assign import choose_arm
from stylesense.experiments.store import Experiment, ExperimentStore, micros
from stylesense.inputs import check_id
from stylesense.recommenders import MODELS

if TYPE_CHECKING:
    from stylesense.engine import StyleSense
    from stylesense.experiments.report import ExperimentReport, OnlineRate
    from stylesense.recommenders import Recommendation

ONLINE_WINDOW_HOURS = 24.0
"""The rolling window of online evaluation (:meth:`Experiments.online`) by default."""


@dataclass(frozen=True)
class Served:
    """A shopper's recommendations as served: by which model, and, inside an experiment, in
    which arm under which impression id (None outside one)."""

    user_id: str
    model: str | None
    items: list[Recommendation] = field(default_factory=list)
    experiment: str | None = None
    arm: str | None = None
    impression_id: str | None = None

    def to_dict(self, explain: bool = True) -> dict[str, Any]:
        """The JSON shape every surface answers with (``explain`` False: no reasons)."""
        items = [r.to_dict() if explain else {**r.to_dict(), "reason": None} for r in self.items]
        return {"user_id": self.user_id, "model": self.model, "items": items, "experiment": self.experiment,
                "arm": self.arm, "impression_id": self.impression_id}


class Experiments:
    """The experiments of one home, in its database."""

    def __init__(self, ss: "StyleSense") -> None:
        self.ss = ss
        # Through the event store: it creates (and brings up to date) the events table, whose
        # impression ids attribution reads.
        self.store = ExperimentStore(ss.behaviour.events.engine)

    def create(self, name: str, arms: Sequence[str], split: Sequence[float] | None = None, *,
               metric: str = "purchase", window_hours: float = 24.0) -> Experiment:
        """Start an experiment between trained models (``arms``; the first is the control),
        shoppers split by ``split`` (any positive weights; default: equal), decided on
        ``metric`` (click, cart, purchase or revenue), events credited up to ``window_hours``
        after an impression. NotReady for an arm with no trained model: it could not serve."""
        trained = self.ss.behaviour.trained()  # on a shared database, those trained on any machine
        for arm in arms:
            if arm not in MODELS:
                raise InvalidInput(f"unknown model {arm!r} for an arm; choose from {', '.join(MODELS)}")
            if arm not in trained:
                raise NotReady(f"arm {arm!r} has no trained model: run `stylesense train --model {arm}` first")
        return self.store.create(name, arms, split, metric, window_hours, _now())

    def list(self) -> list[Experiment]:
        return self.store.list()

    def get(self, name: str) -> Experiment:
        return self.store.get(name)

    def running(self) -> Experiment | None:
        return self.store.running()

    def stop(self, name: str) -> Experiment:
        """Stop the experiment: from the next request on, shoppers get the served model again."""
        return self.store.stop(name, _now())

    def recommend_for(self, user: str, k: int = 10, *, model: str | None = None, **options: Any) -> Served:
        """Top-k for ``user`` (``Behaviour.recommend``'s ``options``: filters, exclude_seen,
        ...) through the running experiment, if any, unless ``model`` is named (see the
        module): the shopper's arm's model answers and the answer is stored as an impression."""
        check_id(user, "user id")
        behaviour = self.ss.behaviour
        experiment = self.store.running() if model is None else None
        if experiment is None:
            recs = behaviour.recommend(user, k, model=model, **options)
            return Served(user, model or self.ss.config.recommender, recs)
        arm = (self.store.arm_of(experiment.name, user)
               or choose_arm(experiment.name, user, experiment.arms, experiment.split))
        recs = behaviour.recommend(user, k, model=arm, **options)
        impression = self.store.record_impression(experiment.name, arm, arm, user, [r.item_id for r in recs], _now())
        return Served(user, arm, recs, experiment.name, arm, impression.impression_id)

    def report(self, name: str, *, now: datetime | None = None) -> "ExperimentReport":
        """Per-arm numbers with 95 % intervals and tests (:mod:`.report`), as of ``now``
        (default: the present): impressions so far, and their shoppers' events up to a week
        after the experiment stopped (returns), or up to now."""
        from stylesense.experiments.report import RETURN_DAYS, build_report

        experiment = self.store.get(name)
        now = now or _now()
        end = min(now, (experiment.stopped or now) + max(experiment.window, timedelta(days=RETURN_DAYS)))
        assignments = self.store.assignments(name)
        impressions = self.store.impressions(experiment=name)
        events = self.store.events_of(list(assignments), micros(experiment.started), micros(end))
        return build_report(experiment, assignments, impressions, events, now)

    def online(self, window_hours: float = ONLINE_WINDOW_HOURS, *, now: datetime | None = None) -> list["OnlineRate"]:
        """Gorse-style online evaluation: per model, the recommendations served in the last
        ``window_hours`` and the share of them with positive feedback (a credited view, click,
        like, cart or purchase) so far. Impressions are recorded while an experiment runs."""
        from stylesense.experiments.report import online_rates

        if not 0 < window_hours <= 24 * 90:
            raise InvalidInput(f"the window must be above 0 and at most 90 days, got {window_hours} h")
        now = now or _now()
        window = timedelta(hours=window_hours)
        impressions = self.store.impressions(since_us=micros(now - window), until_us=micros(now))
        events = self.store.events_of([i.user_id for i in impressions], micros(now - window), micros(now))
        return online_rates(impressions, events, window // timedelta(microseconds=1))


def _now() -> datetime:
    return datetime.now(timezone.utc)
