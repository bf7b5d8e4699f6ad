"""Shopper behaviour in a home: events in, fitted recommenders and recommendations out.

Data flows one way: events (the home's database) -> a fitted model file in
``<home>/recommenders/`` -> recommendations. A saved model remembers the last event it saw;
``recommend`` folds in every newer event (``Recommender.update``) before answering, so a view
recorded a second ago moves the next answer without a retrain, for every model that can.

Explicit negative feedback (``dislike``, ``not_interested``: :data:`stylesense.weights.NEGATIVE_TYPES`)
never reaches a model: a shopper who says no to a product is no evidence that they like it.
Instead ``recommend`` reads that shopper's negative events (one indexed query) on every
request, for every model: the products leave their list at once, and products that look like
one of them come after everything else.
"""

from __future__ import annotations

import csv
import difflib
import io
import threading
from datetime import datetime
from collections.abc import Callable, Collection, Mapping, Sequence
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
from stylesense.events.users import ProfileImportReport, UserStore
from stylesense.home import Config, damaged
from stylesense.inputs import check_id
from stylesense.recommenders import MODELS, load_recommender, make_recommender
from stylesense.recommenders.diversity import candidate_count, check_diversity, mmr
from stylesense.recommenders.published import PublishedModels
from stylesense.weights import DEFAULT_WEIGHTS, NEGATIVE_TYPES

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
# Negative feedback lowers a disliked product's look-alikes: its LOOK_ALIKES nearest products
# whose search vectors have a cosine of LOOK_ALIKE_SIMILARITY or more with it. On the shared
# H&M photos (lite0, GeM) the nearest neighbour's cosine has a median of 0.88, the 5th's 0.84,
# and 99% of random pairs stay below 0.84: 0.85 reaches the few products that really look
# alike (other shots and colours of one cut), not the whole category.
LOOK_ALIKE_SIMILARITY = 0.85
LOOK_ALIKES = 20
MAX_DISLIKED = 100  # a shopper's latest disliked products whose look-alikes are lowered (all are removed)


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
        # The database's models table where the home is on a server database that several
        # machines may share (not SQLite): training stores each model there too, and serving
        # fetches the newest (stylesense.recommenders.published). None on SQLite.
        self.published = PublishedModels(ss.store.engine) if ss.store.engine.dialect.name != "sqlite" else None

    @property
    def weights(self) -> dict[str, float]:
        """Event type -> implicit-feedback weight; negative feedback is always known, at 0
        (homes whose table was saved before it existed get it too)."""
        return {**(self.ss.config.event_weights or DEFAULT_WEIGHTS), **dict.fromkeys(NEGATIVE_TYPES, 0.0)}

    @property
    def users(self) -> UserStore:
        """Shoppers' profiles (Gorse's users; attributes from ``import_profiles``)."""
        return UserStore(self.ss.store.engine)

    def import_profiles(self, path: str | Path, *, id_column: str = "user_id", encoding: str = "utf-8") -> ProfileImportReport:
        """Shoppers' attributes from a CSV (see ``UserStore.import_csv``): the ranker's
        features and age segments from its next training; a shopper with a profile and no
        events is then recommended their segment's best sellers."""
        return self.users.import_csv(path, id_column, encoding)

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
            if key in NEGATIVE_TYPES and value != 0:
                raise InvalidInput(f"{key} is negative feedback, never an interaction: its weight stays 0")
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
        names = {n for n in MODELS if self.model_path(n).is_file()}
        if self.published is not None:
            names.update(n for n in self.published.names() if n in MODELS)
        names = sorted(names)
        served = self.ss.config.recommender
        return sorted(names, key=lambda n: n != served)

    @property
    def tuned_dir(self) -> Path:
        return self.ss.home.recommenders_dir / "tuned"

    def tuned_path(self, name: str, protocol: str) -> Path:
        return self.tuned_dir / f"{name}-{protocol}.json"

    @property
    def last_evaluation_path(self) -> Path:
        """Where :meth:`evaluate` keeps its latest result (its file time is when it ran), for
        the dashboards of every surface (:func:`stylesense.insights.last_evaluation`)."""
        return self.ss.home.recommenders_dir / "last-evaluation.json"

    def tuned_params(self, name: str, protocol: str | None = None) -> dict[str, Any]:
        """Best parameters from ``tune`` for this protocol (None: the latest tuning of the model)."""
        from stylesense.evaluation.tuning import TuneResult

        if protocol is not None:
            path = self.tuned_path(name, protocol)
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
        if getattr(model, "reads_catalogue", False):  # the ranker: photos, attributes, product groups
            model.with_catalogue(self._catalogue())  # type: ignore[attr-defined]
        if getattr(model, "reads_shoppers", False):  # ... and the shoppers' profiles (age, ...)
            model.with_shoppers(self.users.attributes())  # type: ignore[attr-defined]
        return model

    def _catalogue(self, after: int = 0) -> Any:
        """The catalogue's items with a key above ``after`` as the ranker reads them: image
        vectors, attributes, the product-group column (the home's, else ``product_code`` where
        the items have one), the price column, and the largest key as the version."""
        import pandas as pd

        from stylesense.recommenders.ranking.content import Catalogue

        items = [it for it in self.ss.store.items() if it.pk > after]
        pks, raw = self.ss.store.features()
        has = pks > after
        by_pk = {it.pk: it.item_id for it in items}
        attrs = pd.DataFrame([it.attrs for it in items], index=[it.item_id for it in items])
        group = getattr(self.ss.config, "group_column", None) or ("product_code" if "product_code" in attrs else None)
        return Catalogue([by_pk[int(p)] for p in pks[has]], self.ss.to_vectors(raw[has]) if has.any() else None,
                         attrs, group, self.ss.config.price_column, max([after, *by_pk]))

    def _all_events(self) -> pd.DataFrame:
        """Every event a model learns from: the log without negative feedback."""
        events = _positive(self.events.frame())
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

    def train(self, name: str, params: Mapping[str, Any] | None = None, *, engine: str = "local",
              spark_master: str | None = None) -> tuple[Recommender, float]:
        """Fit ``name`` on every event (tuned parameters, overridden by ``params``), save it in
        the home and make it the default for ``recommend``. Returns (model, fit seconds).
        ``engine`` ``spark`` fits ``als`` on the Spark master ``spark_master`` (default
        ``local[2]``, see :mod:`stylesense.recommenders.engines`); the model saved is the same."""
        from stylesense.recommenders import Interactions
        from stylesense.recommenders.engines import on_engine

        profiles_at = self.users.last_change()  # before the profiles are read: none is missed
        # first: a typo in a parameter is the first thing to hear
        model = on_engine(self._untrained(name, params), engine, spark_master)
        events = self._all_events()
        data = Interactions.from_frame(events, self.weights, items=self._catalogue_ids())
        start = perf_counter()
        model.fit(data)
        seconds = perf_counter() - start
        model.meta = {"applied_pk": int(events["pk"].max()),
                      "profiles_at": None if profiles_at is None else profiles_at.isoformat()}
        path = self.model_path(name)
        model.save(path)
        if self.published is not None:
            with self._loading:
                self.published.publish(name, path)
        self._models[name] = (model, file_stamp(path))  # swapped in whole: requests in flight keep the old one
        self.ss.update_config(lambda config: setattr(config, "recommender", name))
        return model, seconds

    def model(self, name: str | None = None) -> Recommender:
        """The saved model ``name`` (default: the last trained), caught up with newer events.

        Thread-safe: concurrent callers load a model and fold in new events once; the fold-in
        waits for requests reading the model (``_models_lock``) and they for it."""
        name = name or self.ss.config.recommender or next(iter(self.published.names() if self.published else ()), None)
        if name is None:
            raise NotReady("no model trained yet: run `stylesense train --model NAME` first")
        _check_model_name(name)
        path = self.model_path(name)
        with self._loading:
            if self.published is not None:  # trained on another machine since: fetched, then loaded as a new file
                self.published.sync(name, path)
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
                    model.update(_positive(newer))
                    model.meta["applied_pk"] = int(newer["pk"].max())
            if getattr(model, "reads_shoppers", False):
                self._catch_up_profiles(model)
            # products imported since: the ranker ranks them from their content, no retrain
            if getattr(model, "reads_catalogue", False) and self.ss.store.items_after(model.catalogue_version, 1):
                added = self._catalogue(after=model.catalogue_version)
                with self._models_lock.writing():
                    model.add_items(added)  # type: ignore[attr-defined]
        return model

    def _catch_up_profiles(self, model: Recommender) -> None:
        """Hand ``model`` the profiles written since it last read them (one indexed query
        when none was): a shopper who signs up with an age is recommended their segment's
        best sellers from the next request, without a retrain."""
        changed = self.users.last_change()
        seen = model.meta.get("profiles_at")
        since = None if seen is None else datetime.fromisoformat(seen)
        if changed is None or (since is not None and changed <= since):
            return
        table = self.users.attributes(since=since)
        with self._models_lock.writing():
            model.update_shoppers(table)  # type: ignore[attr-defined]
            model.meta["profiles_at"] = changed.isoformat()

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
        diversity: float = 0.0,
    ) -> list[Recommendation]:
        """Top-k for ``user`` (an unknown one gets the cold-start list), with reasons.

        Products the shopper disliked are left out and their look-alikes come last (see
        :meth:`_refine`), from the request after the event on. ``diversity`` (0, the default:
        off; up to 1) re-ranks the model's best ``candidate_count(k)`` products by MMR on
        their photos (:mod:`stylesense.recommenders.diversity`), so the list is not one
        product in ten shots; each keeps its model score."""
        check_id(user, "user id")
        if k < 1:
            raise InvalidInput("k must be at least 1")
        diversity = check_diversity(diversity)
        m = self.model(model)
        seen = self.exclude_seen if exclude_seen is None else exclude_seen
        allowed, nameable = self._masks(m.item_ids, filters)

        def rank(n: int, mask: np.ndarray | None) -> list[Recommendation]:
            with self._models_lock.reading():
                return m.recommend(user, n, exclude_seen=seen, allowed=mask, nameable=nameable)

        return self._refine(rank, m.data.item_index, allowed, self.disliked(user), k, diversity)

    def disliked(self, user: str) -> list[str]:
        """The products ``user`` gave negative feedback on (``NEGATIVE_TYPES``), latest
        first: one query on the events' key index. A dislike stands until its event is
        deleted (``EventStore.delete``)."""
        return list(dict.fromkeys(reversed(self.events.items_of(user, NEGATIVE_TYPES))))

    def _refine(
        self,
        rank: Callable[[int, np.ndarray | None], list[Recommendation]],
        item_index: Mapping[str, int],
        allowed: np.ndarray | None,
        disliked: Sequence[str],
        k: int,
        diversity: float,
    ) -> list[Recommendation]:
        """The top ``k`` of a model's ranking (``rank(n, allowed)``: its best ``n`` among
        ``allowed``, a mask over the model's items, ``item_index`` their positions by id)
        after the shopper's feedback and ``diversity``.

        ``disliked`` products are masked out. Their look-alikes (``LOOK_ALIKE_SIMILARITY``,
        one batched index search) are asked for on top of the ``k`` (or the MMR candidates)
        and come after every other product: they fill the list only when nothing else is left.
        Homes without photos have no look-alikes."""
        known = [item_index[i] for i in disliked if i in item_index]
        if known:
            allowed = np.ones(len(item_index), dtype=bool) if allowed is None else allowed.copy()
            allowed[known] = False
        lowered: dict[str, float] = {}
        if disliked and self.ss.has_index:
            lowered = self.ss.look_alikes(disliked[:MAX_DISLIKED], LOOK_ALIKES, LOOK_ALIKE_SIMILARITY)
        wanted = candidate_count(k) if diversity else k
        ranked = rank(wanted + len(lowered), allowed)
        kept = self._diversified([r for r in ranked if r.item_id not in lowered][:wanted], k, diversity)
        return (kept + [r for r in ranked if r.item_id in lowered])[:k]

    def _diversified(self, ranked: list[Recommendation], k: int, diversity: float) -> list[Recommendation]:
        """``k`` of ``ranked`` picked by MMR on their photos (``diversity`` > 0), else its top ``k``."""
        if not diversity or not ranked:
            return ranked[:k]
        vectors = self.ss.item_vectors([r.item_id for r in ranked])
        return [ranked[i] for i in mmr(np.array([r.score for r in ranked]), vectors, k, diversity)]

    def recommend_session(
        self,
        events: Sequence[tuple[str, str]] = (),
        k: int = 10,
        *,
        photo: bytes | None = None,
        model: str | None = None,
        exclude_seen: bool | None = None,
        filters: Filters | None = None,
        diversity: float = 0.0,
    ) -> list[Recommendation]:
        """Top-k for an anonymous shopper (no account; nothing is stored): ``events`` their
        recent (item id, event type) pairs, oldest first, and/or ``photo`` an encoded photo.

        Events are scored by a trained model (``model``, default: the served one) as a history
        that belongs to nobody (Recommender.recommend_session); items it has never seen are
        left out. A photo alone needs no model: the answer is the catalogue products that look
        most like it (the index search: the visual cold start). With both, the model's scores
        and the photo's similarities to its ``PHOTO_POOL`` closest products are standardised
        and added, so a shopper who viewed dresses and photographs a red one gets red dresses.
        Removed, hidden and out-of-stock products never appear; ``filters`` apply to all.
        The session's negative events (``NEGATIVE_TYPES``) are no history: their products are
        left out and their look-alikes come last, and ``diversity`` re-ranks, as in
        :meth:`recommend`; a photo alone is re-ranked among its closest products."""
        from stylesense.recommenders.base import PHOTO_REASON, Recommendation

        if not events and photo is None:
            raise InvalidInput("a session needs its events, a photo, or both")
        if len(events) > MAX_SESSION_EVENTS:
            raise InvalidInput(f"a session holds at most {MAX_SESSION_EVENTS} events, got {len(events)}")
        if k < 1:
            raise InvalidInput("k must be at least 1")
        diversity = check_diversity(diversity)
        rules = event_rules(self.weights)
        for i, (item, kind) in enumerate(events):
            if problem := rules["item_id"](item) or rules["type"](kind):
                raise InvalidInput(f"event {i}: {problem}")
        hits = [] if photo is None else self.ss.search(photo, k=max(k, PHOTO_POOL), filters=filters)
        if not events:
            ok = self.recommendable(np.array([h.item_id for h in hits], dtype=str))
            found = [Recommendation(h.item_id, h.score, PHOTO_REASON) for j, h in enumerate(hits) if ok is None or ok[j]]
            return self._diversified(found[:candidate_count(k)] if diversity else found, k, diversity)
        m = self.model(model)
        allowed, nameable = self._masks(m.item_ids, filters)
        liked = [(item, kind) for item, kind in events if kind not in NEGATIVE_TYPES]
        disliked = list(dict.fromkeys(item for item, kind in reversed(events) if kind in NEGATIVE_TYPES))
        similarity = None
        if photo is not None:
            import pandas as pd

            similarity = np.full(len(m.item_ids), -np.inf, dtype=np.float32)
            at = pd.Index(m.item_ids).get_indexer([h.item_id for h in hits])
            similarity[at[at >= 0]] = np.array([h.score for h in hits], dtype=np.float32)[at >= 0]
        seen = self.exclude_seen if exclude_seen is None else exclude_seen

        def rank(n: int, mask: np.ndarray | None) -> list[Recommendation]:
            with self._models_lock.reading():
                return m.recommend_session([i for i, _ in liked], [t for _, t in liked], n, exclude_seen=seen,
                                           allowed=mask, nameable=nameable, photo=similarity)

        return self._refine(rank, m.data.item_index, allowed, disliked, k, diversity)

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

    def similar_users(self, user: str, k: int = 10, *, model: str | None = None) -> list[tuple[str, float]]:
        """The ``k`` shoppers whose histories are most like ``user``'s, best first, as (user id,
        score): cosine between the model's user-item rows (event weights, training plus the
        events folded in since, as the model scores them), among those sharing an item at all
        (a score above 0), never the shopper; none for a shopper the model does not know."""
        check_id(user, "user id")
        if k < 1:
            raise InvalidInput("k must be at least 1")
        m = self.model(model)
        with self._models_lock.reading():
            u, history = m.user_index.get(user), m.history
            if u is None or u >= history.shape[0] or history[u].nnz == 0:
                return []
            row = history[u]
            shared = np.asarray((history @ row.T).todense()).ravel()
            shared[u] = 0.0
            others = np.flatnonzero(shared > 0)
            rows = history[others]
            norms = np.sqrt(np.asarray(rows.multiply(rows).sum(axis=1)).ravel()) * np.sqrt(row.multiply(row).sum())
            scores = shared[others] / np.maximum(norms, 1e-12)
            best = np.argsort(-scores, kind="stable")[:k]  # ties: the shopper the model met first
            return [(m.user_ids[others[i]], float(scores[i])) for i in best]

    def recommend_batch(
        self, out: str | Path, k: int = 10, *, model: str | None = None, exclude_seen: bool | None = None
    ) -> int:
        """Top-k for every known user into a CSV (user_id,item_id,rank,score; rank from 1),
        written atomically. Returns the number of users.

        The shoppers who gave negative feedback get :meth:`recommend`'s list instead of the
        batch's row (their disliked products left out, look-alikes last): few shoppers say no,
        and one way of honouring it keeps the file and the API in agreement."""
        m = self.model(model)
        seen = self.exclude_seen if exclude_seen is None else exclude_seen
        users = np.arange(len(m.user_ids))
        allowed = self.recommendable(m.item_ids)
        with self._models_lock.reading():
            top, scores = m.recommend_batch(users, k, exclude_seen=seen, allowed=allowed)
        said_no = {e.user_id for e in self.events.events(types=NEGATIVE_TYPES)}
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["user_id", "item_id", "rank", "score"])
        items = m.item_ids
        for u, row, row_scores in zip(users.tolist(), top, scores):
            uid = m.user_ids[u]
            if uid in said_no:
                refined = self.recommend(uid, k, model=model, exclude_seen=exclude_seen)
                pairs = [(r.item_id, r.score) for r in refined]
            else:
                pairs = [(items[i], s) for i, s in zip(row.tolist(), row_scores.tolist()) if i >= 0]
            for rank, (item, score) in enumerate(pairs, 1):
                w.writerow([uid, item, rank, f"{score:.6g}"])
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
        diversity: Sequence[float] = (0.0,),
    ) -> "EvaluationResult":
        """Every model on the same split of the home's events (tuned parameters if any).
        ``variants`` adds rows for ablations: label -> (model, parameters overriding the tuned
        ones), e.g. ``{"neumf+vectors": ("neumf", {"use_vectors": True})}``; ``diversity``
        values above 0 add each model re-ranked by MMR at that value (``"ease diversity=0.3"``).
        With catalogue photos, every row reports its intra-list diversity. The result is also
        saved (atomically) as the home's last evaluation, which the dashboards show."""
        from stylesense.evaluation.recommenders import run_protocol

        result = run_protocol(
            self._all_events(), protocol, self._factories(models, protocol, tuned, variants), k=k,
            test_days=test_days, seed=seed, weights=self.weights, items_universe=self._catalogue_ids(),
            exclude_seen=self.exclude_seen if exclude_seen is None else exclude_seen,
            recommendable=self.recommendable, diversity=diversity,
            item_vectors=self.ss.item_vectors if self.ss.has_index else None,
        )
        result.to_json(self.last_evaluation_path)
        return result

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


def _positive(events: pd.DataFrame) -> pd.DataFrame:
    """``events`` without negative feedback (``NEGATIVE_TYPES``), which no model may take for
    an interaction (weight 0 alone would still make the product "seen" and the shopper known)."""
    negative = events["type"].isin(NEGATIVE_TYPES).to_numpy()
    return events[~negative].reset_index(drop=True) if negative.any() else events


def _isin(values: Sequence[str] | np.ndarray, wanted: Collection[str]) -> np.ndarray:
    """Mask of ``values`` that are in ``wanted``: pandas' hash lookup, imported here because
    only recommending needs it, while `events add` opens this module too and must stay light."""
    import pandas as pd

    return pd.Index(values).isin(wanted)
