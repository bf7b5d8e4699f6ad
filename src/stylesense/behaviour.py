"""Shopper behaviour in a home: events in, fitted recommenders and recommendations out.

Data flows one way: events (the home's database) -> a fitted model file in
``<home>/recommenders/`` -> recommendations. A saved model remembers the last event it saw;
``recommend`` folds in every newer event (``Recommender.update``) before answering, so a view
recorded a second ago moves the next answer without a retrain, for every model that can.
"""

from __future__ import annotations

import csv
import difflib
import io
import threading
from collections.abc import Collection, Mapping, Sequence
from functools import cached_property
from pathlib import Path
from time import perf_counter
from typing import TYPE_CHECKING, Any

import numpy as np

from stylesense.atomic import DamagedFile, atomic_write
from stylesense.catalog.filters import Filters
from stylesense.concurrency import ReadWriteLock, Stamp, file_stamp
from stylesense.errors import InvalidInput, NotReady
from stylesense.events import EventStore, ImportCounts, NewEvent
from stylesense.events.store import event_rules
from stylesense.home import Config, damaged
from stylesense.inputs import check_id
from stylesense.recommenders import MODELS, load_recommender, make_recommender
from stylesense.weights import DEFAULT_WEIGHTS

if TYPE_CHECKING:  # the engine imports this module; the recommender types bring scipy
    # pandas (with the CSV importer) loads where events are read in bulk: `events add` needs neither.
    import pandas as pd

    from stylesense.engine import StyleSense
    from stylesense.events import EventImportReport
    from stylesense.events.popularity import EventPopularity
    from stylesense.jobs import Job, JobRunner
    from stylesense.recommenders import Recommendation, Recommender
    from stylesense.evaluation.recommenders import EvaluationResult
    from stylesense.evaluation.tuning import TuneResult

# Whether to hide what a shopper already has, per events preset, as measured by
# `stylesense evaluate recommenders` on the shared data (docs/recommenders.md): repurchase is
# common in H&M purchases, rare in MovieLens ratings.
PRESET_EXCLUDE_SEEN = {"hm": False, "movielens": True}
NO_EVENTS = "no events yet: run `stylesense events import` or `stylesense events add` first"
MAX_SESSION_EVENTS = 1000  # a session's events scored at once (the latest matter: models read 10-50)
PHOTO_POOL = 200  # visually closest products a session's photo is scored against


class Behaviour:
    """Events and recommenders of one home (``StyleSense.behaviour``)."""

    def __init__(self, ss: "StyleSense") -> None:
        self.ss = ss
        self._events: EventStore | None = None
        # Served models with the stamp of the file each came from: a retrain by another
        # process is a new file, read on the next request.
        self._models: dict[str, tuple[Recommender, Stamp | None]] = {}
        self._loading = threading.Lock()  # one load or fold-in at a time, never two of the same
        self._models_lock = ReadWriteLock()  # requests read the models; a fold-in changes one alone

    @property
    def weights(self) -> dict[str, float]:
        return dict(self.ss.config.event_weights or DEFAULT_WEIGHTS)

    @property
    def events(self) -> EventStore:
        """The event store, checking types against the home's current weight table."""
        weights = self.weights
        if self._events is None or self._events.known_types != frozenset(weights):
            self._events = EventStore(self.ss.store.engine, known_types=weights)
        return self._events

    def set_weights(self, changes: Mapping[str, float], *, new_type: bool = False) -> dict[str, float]:
        """Change event types' implicit-feedback weights; models trained later use them.

        A name that is no known type is refused (nothing is changed) unless ``new_type``, which
        makes it a valid event type: otherwise a typo such as ``purchse=10`` would quietly add a
        type no event has, while ``purchase`` kept its old weight."""
        weights = self.weights  # checked here, applied below to the config as it is then
        parsed: dict[str, float] = {}
        for name, given in changes.items():
            try:
                value = float(given)
            except (TypeError, ValueError):
                raise InvalidInput(f"weight of {name!r} must be a number, got {given!r}") from None
            key = name.strip().lower()
            if not key or not value >= 0 or value == float("inf"):
                raise InvalidInput(f"weight of {name!r} must be a finite number >= 0, got {value}")
            if key not in weights and not new_type:
                close = difflib.get_close_matches(key, weights, n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                raise InvalidInput(f"unknown event type {key!r} (known: {', '.join(sorted(weights))}); "
                                 f"{hint}pass --new-type to add it as a new type")
            parsed[key] = value

        def change(config: Config) -> None:
            config.event_weights = {**(config.event_weights or DEFAULT_WEIGHTS), **parsed}

        return dict(self.ss.update_config(change).event_weights or {})

    @property
    def exclude_seen(self) -> bool:
        return True if self.ss.config.exclude_seen is None else self.ss.config.exclude_seen

    # -- events ------------------------------------------------------------------------
    def import_events(self, path: str | Path, *, preset: str | None = None, **options: Any) -> EventImportReport:
        """Import a CSV of events; a preset also records its data set's measured
        exclude-seen default, unless the home already has one."""
        from stylesense.events import import_events

        report = import_events(self.events, path, preset=preset, **options)
        if preset in PRESET_EXCLUDE_SEEN and self.ss.config.exclude_seen is None:

            def change(config: Config) -> None:
                if config.exclude_seen is None:  # another process may have set it meanwhile
                    config.exclude_seen = PRESET_EXCLUDE_SEEN[preset]

            self.ss.update_config(change)
        return report

    def add_event(self, user: str, item: str, type: str = "view", **fields: Any) -> bool:
        """Record one live event (see EventStore.add: False when that very event was already
        stored, e.g. a retry); the next ``recommend`` for the user reflects it."""
        return self.events.add(user, item, type, **fields)

    def add_events(self, events: Sequence[NewEvent]) -> ImportCounts:
        """Record a batch of live events in one transaction, all or none (see
        EventStore.add_many: idempotent by event id, refused whole with each bad event named)."""
        return self.events.add_many(events)

    # -- models ------------------------------------------------------------------------
    def model_path(self, name: str) -> Path:
        return self.ss.home.recommenders_dir / f"{name}.npz"

    def trained(self) -> list[str]:
        """The models this home has a trained file of, the served one first."""
        names = sorted(n for n in MODELS if self.model_path(n).is_file())
        served = self.ss.config.recommender
        return sorted(names, key=lambda n: n != served)

    @property
    def tuned_dir(self) -> Path:
        return self.ss.home.recommenders_dir / "tuned"

    def tuned_path(self, name: str, protocol: str) -> Path:
        return self.tuned_dir / f"{name}-{protocol}.json"

    def tuned_params(self, name: str, protocol: str | None = None) -> dict[str, Any]:
        """Best parameters from ``tune`` for this protocol (None: the latest tuning of the model)."""
        from stylesense.evaluation.tuning import TuneResult

        if protocol is not None:
            path = self.tuned_path(name, protocol)
    @property
    def last_evaluation_path(self) -> Path:
        """Where :meth:`evaluate` keeps its latest result (its file time is when it ran), for
        the dashboards of every surface (:func:`stylesense.insights.last_evaluation`)."""
        return self.ss.home.recommenders_dir / "last-evaluation.json"

            return TuneResult.from_json(path).best_params if path.exists() else {}
        latest = self._latest_protocol(name)
        return {} if latest is None else self.tuned_params(name, latest)

    def _latest_protocol(self, name: str) -> str | None:
        """The protocol of the model's latest tuning, if any."""
        found = sorted(self.tuned_dir.glob(f"{name}-*.json"), key=lambda p: p.stat().st_mtime)
        return found[-1].stem[len(name) + 1 :] if found else None

    def _catalogue_ids(self) -> list[str]:
        return [it.item_id for it in self.ss.store.items()]

    def _build(
        self, name: str, params: Mapping[str, Any], protocol: str | None = None, tuned: bool = True
    ) -> Recommender:
        """A model by name, with the catalogue's image vectors if it ``needs_vectors``
        (``visual``, ``neumf`` with ``use_vectors``, a blend holding either). With ``tuned``,
        a blend's components get their tuned parameters for ``protocol`` (None: their latest
        tuning), which ``params`` overrides one parameter at a time."""
        if name == "blend" and tuned:
            model = make_recommender(name, **params)
            given = model.params["params"]
            names = model.names  # type: ignore[attr-defined]
            found = {n: {**self.tuned_params(n, protocol), **given.get(n, {})} for n in names}
            params = {**params, "params": found}
        model = make_recommender(name, **params)
        if model.needs_vectors:
            pks, raw = self.ss.store.features()
            if not len(pks):
                raise NotReady(f"the {name} model needs catalogue photos: run `stylesense catalog import` first")
            ids = {it.pk: it.item_id for it in self.ss.store.items()}
            model.with_vectors([ids[int(p)] for p in pks], self.ss.to_vectors(raw))  # type: ignore[attr-defined]
        return model

    def _all_events(self) -> pd.DataFrame:
        events = self.events.frame()
        if events.empty:
            raise NotReady(NO_EVENTS)
        return events

    def _untrained(self, name: str, params: Mapping[str, Any] | None) -> Recommender:
        """The model ``train`` fits: its tuned parameters (those of its latest tuning, and a
        blend's components' for the same protocol) overridden by ``params``, all checked."""
        _check_model_name(name)
        protocol = self._latest_protocol(name)
        merged = _with_tuned(self.tuned_params(name, protocol) if protocol else {}, params or {})
        return self._build(name, merged, protocol)

    def start_training(self, jobs: "JobRunner", name: str, params: Mapping[str, Any] | None = None) -> "Job":
        """``train`` as a background job of ``jobs``, refused before it starts (InvalidInput,
        NotReady) for what ``train`` would refuse at once: an unknown model or parameter, no
        events. Requests keep being answered by the served model until the job swaps the new
        one in; the job's result is ``{"model", "fit_seconds", "events"}``."""
        self._untrained(name, params)
        if not self.events.max_pk():
            raise NotReady(NO_EVENTS)
        given = dict(params or {})

        def work() -> dict[str, Any]:
            model, seconds = self.train(name, given)
            return {"model": name, "fit_seconds": round(seconds, 3), "events": int(model.data.n_events)}

        return jobs.submit("train", work, {"model": name, "params": given})

    def train(self, name: str, params: Mapping[str, Any] | None = None) -> tuple[Recommender, float]:
        """Fit ``name`` on every event (tuned parameters, overridden by ``params``), save it in
        the home and make it the default for ``recommend``. Returns (model, fit seconds)."""
        from stylesense.recommenders import Interactions

        model = self._untrained(name, params)  # first: a typo in a parameter is the first thing to hear
        events = self._all_events()
        data = Interactions.from_frame(events, self.weights, items=self._catalogue_ids())
        start = perf_counter()
        model.fit(data)
        seconds = perf_counter() - start
        model.meta = {"applied_pk": int(events["pk"].max())}
        path = self.model_path(name)
        model.save(path)
        self._models[name] = (model, file_stamp(path))  # swapped in whole: requests in flight keep the old one
        self.ss.update_config(lambda config: setattr(config, "recommender", name))
        return model, seconds

    def model(self, name: str | None = None) -> Recommender:
        """The saved model ``name`` (default: the last trained), caught up with newer events.

        Thread-safe: concurrent callers load a model and fold in new events once; the fold-in
        waits for requests reading the model (``_models_lock``) and they for it."""
        name = name or self.ss.config.recommender
        if name is None:
            raise NotReady("no model trained yet: run `stylesense train --model NAME` first")
        _check_model_name(name)
        path = self.model_path(name)
        with self._loading:
            stamp = file_stamp(path)
            if stamp is None:
                raise NotReady(f"no trained {name!r} model in this home: run `stylesense train --model {name}`")
            served = self._models.get(name)
            if served is None or served[1] != stamp:
                try:
                    served = self._models[name] = (load_recommender(path), stamp)
                except DamagedFile as e:
                    raise damaged("model file", path, e.reason,
                                  f"retrain it with `stylesense train --model {name}`") from None
            model = served[0]
            applied = int(model.meta.get("applied_pk", 0))
            if self.events.max_pk() > applied:  # one indexed query; the frame only when needed
                newer = self.events.frame(after_pk=applied)
                with self._models_lock.writing():
                    model.update(newer)
                    model.meta["applied_pk"] = int(newer["pk"].max())
        return model

    # -- recommend ---------------------------------------------------------------------
    def recommendable(self, item_ids: np.ndarray) -> np.ndarray | None:
        """Mask over ``item_ids`` of what the catalogue lets any model recommend (None: all).

        Removed, hidden and out-of-stock products never are; products known only from events
        are, unless the home is ``catalogue_only``. Read from the database on every call, so a
        removal by another process counts from the next request on."""
        ids = np.asarray(item_ids, dtype=str)
        if self.ss.config.catalogue_only:
            return _isin(ids, self.ss.store.recommendable_ids())
        blocked = self.ss.store.blocked_ids()
        return ~_isin(ids, blocked) if blocked else None

    def _masks(self, item_ids: np.ndarray, filters: Filters | None) -> tuple[np.ndarray | None, np.ndarray | None]:
        """(allowed, nameable) over ``item_ids`` (a model's, or the event log's): what may be
        recommended (the catalogue's rule and the filters), and what a reason may name (the
        catalogue's rule alone). Items without a catalogue row fail any active filter: nothing
        is known about them."""
        nameable = self.recommendable(item_ids)
        if filters is None or not filters.active:
            return nameable, nameable
        ok = {it.item_id for it in self.ss.matching_items(filters)}
        passing = _isin(item_ids, ok)
        return (passing if nameable is None else passing & nameable), nameable

    def recommend(
        self,
        user: str,
        k: int = 10,
        *,
        model: str | None = None,
        exclude_seen: bool | None = None,
        filters: Filters | None = None,
    ) -> list[Recommendation]:
        """Top-k for ``user`` (an unknown one gets the cold-start list), with reasons."""
        check_id(user, "user id")
        if k < 1:
            raise InvalidInput("k must be at least 1")
        m = self.model(model)
        seen = self.exclude_seen if exclude_seen is None else exclude_seen
        allowed, nameable = self._masks(m.item_ids, filters)
        with self._models_lock.reading():
            return m.recommend(user, k, exclude_seen=seen, allowed=allowed, nameable=nameable)

    def recommend_session(
        self,
        events: Sequence[tuple[str, str]] = (),
        k: int = 10,
        *,
        photo: bytes | None = None,
        model: str | None = None,
        exclude_seen: bool | None = None,
        filters: Filters | None = None,
    ) -> list[Recommendation]:
        """Top-k for an anonymous shopper (no account; nothing is stored): ``events`` their
        recent (item id, event type) pairs, oldest first, and/or ``photo`` an encoded photo.

        Events are scored by a trained model (``model``, default: the served one) as a history
        that belongs to nobody (Recommender.recommend_session); items it has never seen are
        left out. A photo alone needs no model: the answer is the catalogue products that look
        most like it (the index search: the visual cold start). With both, the model's scores
        and the photo's similarities to its ``PHOTO_POOL`` closest products are standardised
        and added, so a shopper who viewed dresses and photographs a red one gets red dresses.
        Removed, hidden and out-of-stock products never appear; ``filters`` apply to all."""
        from stylesense.recommenders.base import PHOTO_REASON, Recommendation

        if not events and photo is None:
            raise InvalidInput("a session needs its events, a photo, or both")
        if len(events) > MAX_SESSION_EVENTS:
            raise InvalidInput(f"a session holds at most {MAX_SESSION_EVENTS} events, got {len(events)}")
        if k < 1:
            raise InvalidInput("k must be at least 1")
        rules = event_rules(self.weights)
        for i, (item, kind) in enumerate(events):
            if problem := rules["item_id"](item) or rules["type"](kind):
                raise InvalidInput(f"event {i}: {problem}")
        hits = [] if photo is None else self.ss.search(photo, k=max(k, PHOTO_POOL), filters=filters)
        if not events:
            ok = self.recommendable(np.array([h.item_id for h in hits], dtype=str))
            return [Recommendation(h.item_id, h.score, PHOTO_REASON)
                    for j, h in enumerate(hits) if ok is None or ok[j]][:k]
        m = self.model(model)
        allowed, nameable = self._masks(m.item_ids, filters)
        similarity = None
        if photo is not None:
            import pandas as pd

            similarity = np.full(len(m.item_ids), -np.inf, dtype=np.float32)
            at = pd.Index(m.item_ids).get_indexer([h.item_id for h in hits])
            similarity[at[at >= 0]] = np.array([h.score for h in hits], dtype=np.float32)[at >= 0]
        seen = self.exclude_seen if exclude_seen is None else exclude_seen
        with self._models_lock.reading():
            return m.recommend_session([i for i, _ in events], [t for _, t in events], k, exclude_seen=seen,
                                       allowed=allowed, nameable=nameable, photo=similarity)

    # -- from the event log alone ----------------------------------------------------------
    @cached_property
    def _popularity(self) -> EventPopularity:
        """The log's counts (made on first use: `events add` never loads pandas; two threads
        racing here make two, of which one is kept)."""
        from stylesense.events.popularity import EventPopularity

        return EventPopularity()

    def popular(self, k: int = 10, *, filters: Filters | None = None) -> list[Recommendation]:
        """The items most shoppers interacted with, straight from the event log (no trained
        model needed; the popular model's ranking), under the catalogue's rules and ``filters``.
        Kept up to date with each new event without a recount (see events.popularity)."""
        return self._from_log("popular", k, filters)

    def trending(self, k: int = 10, *, filters: Filters | None = None) -> list[Recommendation]:
        """The items hot now: events weighted and decayed with a half-life of a week, straight
        from the event log (the trending model's ranking at its default), as :meth:`popular`."""
        return self._from_log("trending", k, filters)

    def _from_log(self, kind: str, k: int, filters: Filters | None) -> list[Recommendation]:
        if k < 1:
            raise InvalidInput("k must be at least 1")
        counts = self._popularity.counts(self.events, self.weights)
        return counts.top(kind, k, self._masks(counts.item_ids, filters)[0], self._popularity.half_life_days)

    def similar(
        self, item: str, k: int = 10, *, model: str | None = None, filters: Filters | None = None
    ) -> list[Recommendation]:
        """Items the model finds like ``item`` (by behaviour, or by photo for ``visual``)."""
        check_id(item, "item id")
        if k < 1:
            raise InvalidInput("k must be at least 1")
        m = self.model(model)
        allowed = self._masks(m.item_ids, filters)[0]
        with self._models_lock.reading():
            return m.similar_items(item, k, allowed=allowed)

    def recommend_batch(
        self, out: str | Path, k: int = 10, *, model: str | None = None, exclude_seen: bool | None = None
    ) -> int:
        """Top-k for every known user into a CSV (user_id,item_id,rank,score; rank from 1),
        written atomically. Returns the number of users."""
        m = self.model(model)
        seen = self.exclude_seen if exclude_seen is None else exclude_seen
        users = np.arange(len(m.user_ids))
        allowed = self.recommendable(m.item_ids)
        with self._models_lock.reading():
            top, scores = m.recommend_batch(users, k, exclude_seen=seen, allowed=allowed)
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["user_id", "item_id", "rank", "score"])
        items = m.item_ids
        for u, row, row_scores in zip(users.tolist(), top, scores):
            uid = m.user_ids[u]
            for rank, (i, s) in enumerate(zip(row.tolist(), row_scores.tolist()), 1):
                if i >= 0:
                    w.writerow([uid, items[i], rank, f"{s:.6g}"])
        atomic_write(out, lambda f: f.write(buf.getvalue().encode()))
        return len(users)

    # -- evaluation --------------------------------------------------------------------
    def _factories(
        self, names: Sequence[str], protocol: str, tuned: bool,
        variants: Mapping[str, tuple[str, Mapping[str, Any]]] | None = None,
    ) -> dict[str, Any]:
        specs = {n: (n, {}) for n in names} | dict(variants or {})
        for name, _ in specs.values():
            _check_model_name(name)
        return {
            label: (lambda n=n, over=over: self._build(
                n, _with_tuned(self.tuned_params(n, protocol) if tuned else {}, over), protocol, tuned
            ))
            for label, (n, over) in specs.items()
        }

    def evaluate(
        self,
        protocol: str,
        models: Sequence[str],
        *,
        k: int = 10,
        test_days: float = 7,
        seed: int = 42,
        exclude_seen: bool | None = None,
        tuned: bool = True,
        variants: Mapping[str, tuple[str, Mapping[str, Any]]] | None = None,
    ) -> "EvaluationResult":
        """Every model on the same split of the home's events (tuned parameters if any).
        ``variants`` adds rows for ablations: label -> (model, parameters overriding the tuned
        ones), e.g. ``{"neumf+vectors": ("neumf", {"use_vectors": True})}``. The result is also
        saved (atomically) as the home's last evaluation, which the dashboards show."""
        from stylesense.evaluation.recommenders import run_protocol

        result = run_protocol(
            self._all_events(), protocol, self._factories(models, protocol, tuned, variants), k=k,
            test_days=test_days, seed=seed, weights=self.weights, items_universe=self._catalogue_ids(),
            exclude_seen=self.exclude_seen if exclude_seen is None else exclude_seen,
            recommendable=self.recommendable,
        )

    def tune(
        self,
        name: str,
        protocol: str,
        *,
        trials: int = 20,
        k: int = 10,
        metric: str = "ndcg_at_k",
        test_days: float = 7,
        seed: int = 42,
        on_trial: Any = None,
    ) -> "TuneResult":
        """Tune on a validation split of the protocol's *training* side; save the best
        parameters where ``train`` and ``evaluate`` pick them up."""
        from stylesense.evaluation.splits import split
        from stylesense.evaluation.tuning import tune

        train, _test = split(self._all_events(), protocol, seed=seed, test_days=test_days)
        result = tune(
            name, train, protocol, trials=trials, k=k, metric=metric, seed=seed, test_days=test_days,
            exclude_seen=self.exclude_seen, weights=self.weights, items_universe=self._catalogue_ids(),
            recommendable=self.recommendable,
            factory=lambda params: self._build(name, params, protocol), on_trial=on_trial,
        )
        result.to_json(self.tuned_path(name, protocol))
        return result


        result.to_json(self.last_evaluation_path)
        return result
def _check_model_name(name: str) -> None:
    """InvalidInput unless ``name`` is a registered model: a name reaches file names (the
    model's, its tunings'), so anything else is refused before it is used in one."""
    if name not in MODELS:
        raise InvalidInput(f"unknown model {name!r}; choose from {', '.join(MODELS)}")


def _with_tuned(tuned: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
    """Tuned parameters overridden by the caller's. Tuned blend weights belong to the
    components they were tuned with: a caller naming other components does not get them."""
    if "models" in params and params["models"] != tuned.get("models", params["models"]):
        tuned = {k: v for k, v in tuned.items() if k not in ("models", "weights")}
    return {**tuned, **params}


def _isin(values: Sequence[str] | np.ndarray, wanted: Collection[str]) -> np.ndarray:
    """Mask of ``values`` that are in ``wanted``: pandas' hash lookup, imported here because
    only recommending needs it, while `events add` opens this module too and must stay light."""
    import pandas as pd

    return pd.Index(values).isin(wanted)
