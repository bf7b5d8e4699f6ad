"""Ranker: candidate generators, then LightGBM LambdaRank over (shopper, candidate) features,
the recipe of the winning H&M Personalized Fashion Recommendations solutions.

Serving a shopper: every source of ``sources`` proposes up to ``candidates`` items (a source
may carry its own number: ``"new:400"``; see :mod:`.ranking.candidates`: their own items, other
colours of those, look-alikes of recent items and the look-alikes nobody has bought yet,
item-kNN / ALS / EASE / GRU4Rec, the best sellers overall and in their segment); each (shopper,
candidate) pair gets a feature row (:mod:`.ranking.features`); the boosters score the rows.
Items no source proposed rank below every candidate, by recent sales, so that a filter
(``allowed``) that removes all candidates still leaves a list.

Learning, without looking at the future: the last ``window_days`` of the training events are
the validation window; ``windows`` training windows of the same length end where it starts, a
new one every ``step_days`` further back (they overlap each other, never the validation
window). For each window, the candidate models are fitted and the features computed from the
events *before* the window only, and a candidate's label is whether the shopper bought (or
viewed: any event) it in the window. ``bags`` LambdaRank boosters train on the training
windows with early stopping on MAP@``eval_at`` of the validation window, then (``refit``)
again on all windows for their best number of rounds, and their scores are averaged
(:mod:`.ranking.model`). Finally the candidate models are fitted on all training events for
serving. So a fit costs ``windows + 2`` fits of each candidate model.

The defaults (28-day windows a week apart, 24 of them, 100 candidates per source, five bags)
were chosen on the H&M sample's validation window, never on its test: docs/recommenders.md.

Catalogue: ``with_catalogue(Catalogue(...))`` hands over image vectors, the attribute table
and which column is the product group (a home does it: ``Behaviour`` reads its catalogue);
``add_items`` appends products imported after the fit, whose content (vector, group,
attributes) is all the visual, new and group sources and the content features need, so they
can be recommended at once.

Shoppers: ``with_shoppers(table)`` hands over their attributes (a home reads its shoppers'
profiles: age, ...): numeric columns become features, ``age`` the age-band segment. A shopper
with a profile and no events yet is ranked by the same sources and boosters from the profile
alone (the segment's best sellers lead); ``update_shoppers`` takes profiles written after the fit.

Real time: ``update`` events join the shopper's history (with their times) and go to the
candidate models, so the next recommendation reflects them; item sales stay those of the fit.
``report`` (saved with the model) holds the windows, rows, each source's recall on each window,
the boosters' rounds and validation MAP; ``feature_importances`` the gains.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse

from stylesense.errors import InvalidInput
from stylesense.recommenders.base import Recommendation, Recommender
from stylesense.recommenders.base import _rank as top_of
from stylesense.recommenders.data import Interactions, epoch_seconds
from stylesense.recommenders.ranking.candidates import (
    MODEL_SOURCES, SOURCES, Found, Shopper, SourceParams, generate, recent_with_photo,
)
from stylesense.recommenders.ranking.content import Catalogue, Content
from stylesense.recommenders.ranking.features import feature_names, pair_features
from stylesense.recommenders.ranking.model import BoostParams, RankSet, Scorer, train
from stylesense.recommenders.ranking.snapshot import DAY, History, Shoppers, Snapshot, before, log_end

DEFAULT_SOURCES = "repurchase,group,visual,new,itemknn,als,ease,popular,segment"
# Candidate models' own defaults where the ranker wants others: EASE on the 2,000 most popular
# items fits in 0.2 s instead of 17 s (10,000) on the H&M sample, and is fitted once per window;
# over ALS and item-kNN it still reached 8 more test purchases there (10,000 items: 5 more).
COMPONENT_DEFAULTS: dict[str, dict[str, Any]] = {"ease": {"max_items": 2000}}
SEGMENT_REASON = "popular with shoppers of your age"
RRF_K = 60.0  # reciprocal-rank fusion of the sources, where no booster could be trained


class Ranker(Recommender):
    """Candidate sources + LightGBM LambdaRank trained on time windows of the training side."""

    name = "ranker"
    updatable = True
    reads_catalogue = True  # Behaviour hands over the home's catalogue (with_catalogue, add_items)
    reads_shoppers = True  # ... and its shoppers' profiles (with_shoppers, update_shoppers)
    defaults: dict[str, Any] = {
        "sources": DEFAULT_SOURCES,
        "candidates": 100,  # per source
        "window_days": 28.0,
        "windows": 24,  # training windows before the validation window
        "step_days": 7.0,  # between training windows' starts; 0: window_days (no overlap)
        "half_life_days": 30.0,  # decay of a shopper's own events in scores and affinities
        "visual_recent": 10,
        "visual_decay": 0.9,
        "rounds": 300,
        "early_stopping": 30,
        "learning_rate": 0.05,
        "leaves": 15,
        "min_leaf": 20,
        "refit": True,
        "bags": 5,  # boosters averaged (seeds seed, seed + 1, ...)
        "eval_at": 12,
        "group_column": "",  # "": the catalogue's
        "columns": "",  # attribute columns for affinities; "": the catalogue's category-like columns
        "threads": 2,
        "seed": 0,
        "params": {},  # candidate models' parameters, {"als": {"factors": 32}}
    }

    def __init__(self, **params: Any) -> None:
        if isinstance(params.get("params"), str):  # from the CLI: --param 'params={"als": {...}}'
            try:
                params["params"] = json.loads(params["params"] or "{}")
            except json.JSONDecodeError as e:
                raise InvalidInput(f"ranker: params must be a JSON object: {e}") from None
        super().__init__(**params)
        p = self.params
        self.sources, self.sizes = _parse_sources(p["sources"])
        for key, low in (("candidates", 1), ("windows", 1), ("bags", 1), ("visual_recent", 1), ("rounds", 1),
                         ("early_stopping", 1), ("leaves", 2), ("min_leaf", 1), ("eval_at", 1), ("threads", 1),
                         ("seed", 0)):
            if isinstance(p[key], bool) or not isinstance(p[key], (int, np.integer)) or p[key] < low:
                raise InvalidInput(f"ranker: {key} must be an integer >= {low}, got {p[key]!r}")
            p[key] = int(p[key])
        if isinstance(p["step_days"], bool) or not isinstance(p["step_days"], (int, float)) or not p["step_days"] >= 0:
            raise InvalidInput(f"ranker: step_days must be a number >= 0, got {p['step_days']!r}")
        p["step_days"] = float(p["step_days"]) or 0.0
        for key in ("window_days", "half_life_days", "learning_rate", "visual_decay"):
            value = p[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) or value <= 0:
                raise InvalidInput(f"ranker: {key} must be a positive number, got {p[key]!r}")
            p[key] = float(p[key])
        if p["visual_decay"] > 1:
            raise InvalidInput(f"ranker: visual_decay must be in (0, 1], got {p['visual_decay']}")
        if not isinstance(p["params"], dict) or not all(isinstance(v, dict) for v in p["params"].values()):
            raise InvalidInput("ranker: params must map candidate models to parameter objects")
        stray = sorted(set(p["params"]) - (set(self.sources) & set(MODEL_SOURCES)))
        if stray:
            raise InvalidInput(f"ranker: params given for models that are not sources: {', '.join(stray)}")
        p["params"] = copy.deepcopy(p["params"])
        self._catalogue: Catalogue | None = None
        self._shopper_table: pd.DataFrame | None = None
        self.report: dict[str, Any] = {}

    @property
    def source_params(self) -> SourceParams:
        p = self.params
        return SourceParams(p["candidates"], p["half_life_days"], p["visual_recent"], p["visual_decay"], self.sizes)

    # -- inputs -----------------------------------------------------------------------------
    def with_catalogue(self, catalogue: Catalogue) -> "Ranker":
        """The catalogue (vectors, attributes, group column) for the next ``fit``."""
        self._catalogue = catalogue
        return self

    def with_vectors(self, item_ids: Sequence[str], vectors: np.ndarray) -> "Ranker":
        """Image vectors alone (as ``visual`` takes them), kept beside any attributes given."""
        old = self._catalogue or Catalogue()
        self._catalogue = Catalogue(list(map(str, item_ids)), vectors, old.attributes, old.group_column,
                                    old.price_column, old.version)
        return self

    def with_shoppers(self, table: pd.DataFrame) -> "Ranker":
        """Shopper attributes indexed by user id (numeric columns become features; ``age``
        also makes the age-band segment)."""
        self._shopper_table = table
        return self

    # -- fitting ----------------------------------------------------------------------------
    def _fit(self, data: Interactions) -> None:
        p = self.params
        self._live = {}
        columns = [c.strip() for c in str(p["columns"]).split(",") if c.strip()] or None
        self._content = Content.build(data.items, self._catalogue, columns, p["group_column"] or None)
        self.fitted_items = data.n_items  # the candidate models' universe (add_items appends past it)
        self.catalogue_version = self._catalogue.version if self._catalogue is not None else 0
        self._shoppers = Shoppers.build(data.users, self._shopper_table)
        self._profiled: dict[str, int] = {}  # shoppers known by a profile alone -> their row of:
        self._profiles = self._shoppers.rows([], None)
        if self._shopper_table is not None:
            self._profile(self._shopper_table)
        self.names = feature_names(self.sources, self._content.columns, self._shoppers.columns)
        self.end = log_end(data.ts)
        span = round(p["window_days"] * DAY)
        step = round((p["step_days"] or p["window_days"]) * DAY)
        first = int(data.ts.min()) if data.n_events else self.end
        # newest first: the validation window, then the training windows, which all end where
        # it starts (they may overlap each other, never it); each needs history before it
        stops = [self.end, *(self.end - span - i * step for i in range(p["windows"]))]
        windows = [(stop - span, stop) for stop in stops if stop - span > first]
        sets, recall = [], []
        for start, stop in windows:
            rows, reached = self._window(data, start, stop)
            sets.append(rows)
            recall.append(reached)
        valid = sets[0] if sets else None
        fit = RankSet.concat(sets[1:], len(self.names))
        boost = BoostParams(p["rounds"], p["early_stopping"], p["learning_rate"], p["leaves"], p["min_leaf"],
                            p["eval_at"], p["threads"], p["seed"])
        trained = None
        if fit.positives:
            trained = train(self.names, fit, valid, boost, p["refit"], p["bags"])
        elif valid is not None and valid.positives:  # one window only: train on it, nothing to stop on
            trained = train(self.names, valid, None, boost, False, p["bags"])
        self._scorer = Scorer(trained.texts, p["threads"]) if trained is not None else None
        self.report = {
            "windows": [{"start": int(a), "stop": int(b), "shoppers": len(s.groups), "rows": len(s.y),
                         "positives": s.positives, "recall": r} for (a, b), s, r in zip(windows, sets, recall)],
            "rounds": trained.rounds if trained else [],
            "valid_map": [round(v, 4) for v in trained.valid_map] if trained else [],
            "learned": trained is not None,
        }
        self._serve_from(data, self._components(data))

    def _components(self, data: Interactions) -> dict[str, Recommender]:
        """The candidate models among the sources, fitted on ``data``."""
        return {name: self._component(name).fit(data) for name in self.sources if name in MODEL_SOURCES}

    def _component(self, name: str) -> Recommender:
        """An unfitted candidate model: its ``params``, with the ranker's thread count unless given."""
        from stylesense.recommenders import MODELS, make_recommender

        params = {**COMPONENT_DEFAULTS.get(name, {}), **self.params["params"].get(name, {})}
        if "threads" in MODELS[name].defaults:
            params.setdefault("threads", self.params["threads"])
        return make_recommender(name, **params)

    def _snapshot(self, data: Interactions, now: int, components: dict[str, Recommender]) -> Snapshot:
        n = max(self.source_params.size(s) for s in ("popular", "segment"))
        return Snapshot(data, now, self._content, self._shoppers, components, n)

    def _window(self, data: Interactions, start: int, stop: int) -> tuple[RankSet, dict[str, float]]:
        """Feature rows of one window: what the sources and features knew at ``start``,
        labelled by the events in [start, stop). Shoppers without history before ``start`` are
        left out (the popularity fallback serves them), and so are those none of whose
        purchases any source reached (nothing to learn from). Also each source's recall: the
        share of the window's (shopper, item) pairs of the shoppers kept it proposed."""
        past = before(data, start)
        snap = self._snapshot(past, start, self._components(past))
        inside = (data.ts >= start) & (data.ts < stop)
        pairs = pd.DataFrame({"u": data.user[inside], "i": data.item[inside]}).drop_duplicates()
        pairs = pairs[snap.has_history()[pairs["u"].to_numpy()]]
        bought = pairs.groupby("u")["i"].apply(np.asarray)
        users = bought.index.to_numpy(np.int64)
        shoppers = [Shopper(int(u), snap.history(int(u)), past.matrix[int(u)], start) for u in users]
        found = generate(snap, shoppers, self.sources, self.source_params)
        reached = dict.fromkeys([*self.sources, "all"], 0)
        X, y, groups = [], [], []
        for shopper, f in zip(shoppers, found):
            cand, rows = pair_features(snap, shopper, f, self.sources, self.source_params)
            label = np.isin(cand, bought[shopper.user])
            for name in self.sources:
                reached[name] += int(np.isin(f[name][0], bought[shopper.user]).sum())
            reached["all"] += int(label.sum())
            if label.any():
                X.append(rows)
                y.append(label.astype(np.int32))
                groups.append(len(cand))
        total = max(1, len(pairs))
        recall = {name: round(n / total, 4) for name, n in reached.items()} | {"pairs": len(pairs)}
        if not X:
            return RankSet.concat([], len(self.names)), recall
        return RankSet(np.concatenate(X), np.concatenate(y), np.asarray(groups, np.int64)), recall

    def _serve_from(self, data: Interactions, components: dict[str, Recommender]) -> None:
        """Serving state: the snapshot of every training event, and the ranking of what no
        source proposes (recent sales, then all-time sales), also the cold-start list."""
        self._snap = self._snapshot(data, self.end, components)
        self.now = max([self.end, *(int(h.ts.max()) for h in self._live.values() if len(h))])
        key = self._snap.trending.astype(np.float64) * (self._snap.sales_all.max() + 1.0) + self._snap.sales_all
        self._rest = (0.5 * key / (key.max() + 1.0)).astype(np.float32)
        self.popularity = self._rest.copy()

    def update_shoppers(self, table: pd.DataFrame) -> int:
        """Profiles written since the fit (a table indexed by user id, as ``with_shoppers``):
        known users' attribute features change, users without events are remembered for
        their first request. Returns how many rows were read."""
        if table is None or table.empty or not self._shoppers.columns:
            return 0
        ids = table.index.astype(str)
        at = np.array([self.user_index.get(i, -1) for i in ids], np.int64)
        if (at >= 0).any():
            grown = self._shoppers.grown(len(self.user_ids))
            self._shoppers = grown.replaced(at[at >= 0], grown.rows(ids[at >= 0], table))
            self._snap.shoppers = self._shoppers
        self._profile(table.loc[at < 0])
        return len(ids)

    def _profile(self, table: pd.DataFrame) -> None:
        """Remember the rows of ``table`` whose users have no events (the rest have theirs)."""
        ids = [i for i in dict.fromkeys(table.index.astype(str)) if i not in self.user_index]
        if not ids or not self._shoppers.columns:
            return
        rows = self._shoppers.rows(ids, table)
        old = np.array([self._profiled.get(i, -1) for i in ids], np.int64)
        profiles = self._profiles.replaced(old[old >= 0], rows.take(np.flatnonzero(old >= 0)))
        fresh = np.flatnonzero(old < 0)
        for j, i in enumerate(fresh.tolist()):
            self._profiled[ids[i]] = len(profiles.band) + j
        self._profiles = profiles.appended(rows.take(fresh))

    # -- scoring ----------------------------------------------------------------------------
    def recommend(self, user: str, k: int = 10, *, exclude_seen: bool = True, allowed: np.ndarray | None = None,
                  nameable: np.ndarray | None = None) -> list[Recommendation]:
        """As every model's; a shopper known only by a profile is ranked from it (the
        sources and boosters over an empty history: their segment's best sellers lead)."""
        at = self._profiled.get(str(user)) if str(user) not in self.user_index else None
        if at is None:
            return super().recommend(user, k, exclude_seen=exclude_seen, allowed=allowed, nameable=nameable)
        shopper = Shopper(len(self.user_ids), History.empty(), sparse.csr_matrix((1, self.data.n_items), dtype=np.float32),
                          self.now, session=True, attrs=self._profiles.take(np.array([at])))
        idx, val = top_of(self._rank([shopper]), k, allowed)
        band = int(shopper.attrs.band[0])
        liked = set(self._snap.by_band[band][0].tolist()) if band in self._snap.by_band else set()
        return [Recommendation(str(self.item_ids[i]), float(v), SEGMENT_REASON if i in liked else None)
                for i, v in zip(idx[0].tolist(), val[0].tolist()) if np.isfinite(v)]

    def _shopper(self, user: int, row: sparse.csr_matrix) -> Shopper:
        history = self._snap.history(user).plus(self._live.get(user, History.empty()))
        return Shopper(user, history, row, self.now)

    def _scores(self, users: np.ndarray, history: sparse.csr_matrix) -> np.ndarray:
        return self._rank([self._shopper(int(u), history[r]) for r, u in enumerate(np.asarray(users).tolist())])

    def _session_scores(self, items: np.ndarray, row: sparse.csr_matrix) -> np.ndarray:
        items = np.asarray(items, dtype=np.int64)
        counts = np.bincount(items, minlength=row.shape[1])[items]
        weight = np.asarray(row[0, items].todense()).ravel().astype(np.float32) / counts
        h = History(items, np.full(len(items), self.now, np.int64), weight, np.full(len(items), np.nan, np.float32))
        return self._rank([Shopper(len(self.user_ids), h, row, self.now, session=True)])[0]

    def _rank(self, shoppers: list[Shopper]) -> np.ndarray:
        """Score rows: the booster's score for each shopper's candidates, and below the lowest
        of them, ``_rest`` for every other item."""
        found = generate(self._snap, shoppers, self.sources, self.source_params)
        rows = [pair_features(self._snap, s, f, self.sources, self.source_params) for s, f in zip(shoppers, found)]
        if self._scorer is not None:
            flat = self._scorer.predict(np.concatenate([x for _, x in rows])) if rows else np.zeros(0)
            scores = np.split(flat, np.cumsum([len(c) for c, _ in rows])[:-1])
        else:
            scores = [self._fused(x) for _, x in rows]
        out = np.empty((len(shoppers), self.data.n_items), np.float32)
        for r, ((cand, _), s) in enumerate(zip(rows, scores)):
            floor = float(s.min()) - 1.0 if len(s) else 0.0
            out[r] = floor + self._rest
            out[r, cand] = s
        return out

    def candidates(self, users: Sequence[int]) -> list[Found]:
        """Each source's candidates (items, scores) for these user indices, as served now:
        what ``bench/ranker.py`` measures each source's recall with."""
        shoppers = [self._shopper(int(u), self.history[int(u)]) for u in users]
        return generate(self._snap, shoppers, self.sources, self.source_params)

    def _fused(self, X: np.ndarray) -> np.ndarray:
        """Reciprocal-rank fusion of the sources' ranks (columns 1, 3, ... of the rows)."""
        ranks = X[:, 1 : 2 * len(self.sources) : 2]
        return np.nansum(1.0 / (RRF_K + ranks), axis=1).astype(np.float32)

    # -- item similarity and reasons --------------------------------------------------------
    def _similar(self, item: int) -> np.ndarray:
        """Look-alikes by photo where the item has one, else co-occurrence (the base's)."""
        c = self._content
        if c.row[item] < 0:
            return super()._similar(item)
        out = np.full(self.data.n_items, -np.inf, np.float32)
        out[c.vector_items] = c.vectors @ c.unit([item])[0]
        return out

    def _reasons(self, user: int, items: np.ndarray, nameable: np.ndarray | None) -> list[str | None]:
        """Why, from the content and the shopper's history: bought before, another colour of a
        product they have, looks like a recent item, or selling now."""
        h = self._shopper(user, self.history[user]).history
        return self._explain(h, np.asarray(items, dtype=np.int64), nameable)

    def _session_reasons(self, seq: np.ndarray, items: np.ndarray, nameable: np.ndarray | None) -> list[str | None]:
        seq = np.asarray(seq, dtype=np.int64)
        h = History(seq, np.full(len(seq), self.now, np.int64), np.ones(len(seq), np.float32),
                    np.full(len(seq), np.nan, np.float32))
        return self._explain(h, np.asarray(items, dtype=np.int64), nameable)

    def _explain(self, h: History, items: np.ndarray, nameable: np.ndarray | None) -> list[str | None]:
        c = self._content
        mine = set(h.item.tolist())
        named = h.item if nameable is None else h.item[nameable[h.item]]
        latest_of_group = {int(c.group[i]): int(i) for i in named if c.group[i] >= 0}  # newest wins
        recent = recent_with_photo(c.row, named, self.params["visual_recent"])
        out: list[str | None] = []
        for i in items.tolist():
            g = int(c.group[i])
            if i in mine:
                out.append("you bought or viewed it before")
            elif g >= 0 and g in latest_of_group:
                out.append(f"another colour of {self.item_ids[latest_of_group[g]]} you interacted with")
            elif len(recent) and c.row[i] >= 0:
                best = recent[int(np.argmax(c.unit(recent) @ c.unit([i])[0]))]
                out.append(f"looks like {self.item_ids[best]} you interacted with")
            elif self._snap.trending[i] > 0:
                out.append("selling well now")
            else:
                out.append(None)
        return out

    # -- real time --------------------------------------------------------------------------
    def _updated(self, users: np.ndarray, events: pd.DataFrame) -> None:
        if events.empty:
            return
        items = pd.Index(self.item_ids).get_indexer(events["item_id"].astype(str))
        ts = epoch_seconds(events["ts"]) if "ts" in events.columns else np.full(len(events), self.now, np.int64)
        weight = self.data.event_weights(events["type"])
        price = (pd.to_numeric(events["price"], errors="coerce").to_numpy(np.float32) if "price" in events.columns
                 else np.full(len(events), np.nan, np.float32))
        users_of = np.array([self.user_index[u] for u in events["user_id"].astype(str)], dtype=np.int64)
        order = np.argsort(users_of, kind="stable")  # each user's events in their given order
        bounds = np.flatnonzero(np.diff(users_of[order])) + 1
        for part in np.split(order, bounds):
            u = int(users_of[part[0]])
            new = History(items[part].astype(np.int64), ts[part].astype(np.int64), weight[part].astype(np.float32),
                          price[part].astype(np.float32))
            self._live[u] = self._live.get(u, History.empty()).plus(new)
        self.now = max(self.now, int(ts.max()))
        first = len(self._shoppers.band)
        self._shoppers = self._shoppers.grown(len(self.user_ids))
        profiled = [(u, self._profiled[uid]) for u, uid in enumerate(self.user_ids[first:], first) if uid in self._profiled]
        if profiled:  # a shopper known by a profile alone until this first event
            at, rows = np.array(profiled, np.int64).T
            self._shoppers = self._shoppers.replaced(at, self._profiles.take(rows))
        self._snap.shoppers = self._shoppers
        for model in self._snap.components.values():
            # the ranker's new users first, in its order: a user whose events are all on items
            # the model does not know (added by add_items) must not shift the indices of the rest
            for uid in self.user_ids[len(model.user_ids):]:
                model.user_index[uid] = len(model.user_ids)
                model.user_ids.append(uid)
            model.update(events)

    def add_items(self, catalogue: Catalogue) -> int:
        """Append the catalogue's products this model does not know yet (ids of its attribute
        table and vectors), with their content, so that the visual and group sources and the
        content features rank them from the next request on, without a retrain. Products it
        knows keep their content. Returns how many were added."""
        ids = list(dict.fromkeys([*map(str, catalogue.vector_ids),
                                  *([] if catalogue.attributes is None else catalogue.attributes.index.astype(str))]))
        new = np.asarray([i for i in ids if i not in self.data.item_index], dtype=str)
        self.catalogue_version = max(self.catalogue_version, int(catalogue.version))
        if not len(new):
            return 0
        d, n = self.data, self.data.n_items
        self._data = Interactions(users=d.users, items=np.concatenate([d.items, new]), user=d.user, item=d.item,
                                  weight=d.weight, ts=d.ts, price=d.price, session=d.session, weights=dict(d.weights))
        h = self.history.tocsr(copy=True)
        h.resize((h.shape[0], self._data.n_items))
        self.history = h
        self._content = self._content.extended(np.arange(n, n + len(new)), new, catalogue)
        self._serve_from(self._data, self._snap.components)
        return len(new)

    @property
    def feature_importances(self) -> dict[str, float]:
        """Each feature's share of the booster's total gain, largest first ({} without one)."""
        return {} if self._scorer is None else self._scorer.importances()

    # -- persistence --------------------------------------------------------------------------
    def _state(self) -> dict[str, np.ndarray]:
        live = sorted(self._live)
        parts = [self._live[u] for u in live]

        def cat(name: str, dtype: type) -> np.ndarray:
            return np.concatenate([getattr(h, name) for h in parts]).astype(dtype) if parts else np.zeros(0, dtype)

        state = {
            **{f"content_{k}": v for k, v in self._content.to_arrays().items()},
            "shopper_columns": np.asarray(self._shoppers.columns, dtype=str),
            "shopper_values": self._shoppers.values, "shopper_band": self._shoppers.band,
            "profile_ids": np.asarray(list(self._profiled), dtype=str),
            "profile_rows": np.asarray(list(self._profiled.values()), np.int64),
            "profile_values": self._profiles.values, "profile_band": self._profiles.band,
            "scorer": np.asarray([] if self._scorer is None else self._scorer.texts, dtype=str),
            "report": np.asarray(json.dumps(self.report)),
            "times": np.asarray([self.end, self.now, self.catalogue_version, self.fitted_items], np.int64),
            "live_users": np.asarray(live, np.int64), "live_lens": np.asarray([len(h) for h in parts], np.int64),
            "live_item": cat("item", np.int64), "live_ts": cat("ts", np.int64),
            "live_weight": cat("weight", np.float32), "live_price": cat("price", np.float32),
        }
        for name, model in self._snap.components.items():
            state.update({f"comp_{name}_{k}": v for k, v in model._state().items()})
        return state

    def _restore(self, state: dict[str, np.ndarray]) -> None:
        self._content = Content.from_arrays({k[8:]: v for k, v in state.items() if k.startswith("content_")})
        self._shoppers = Shoppers(state["shopper_columns"].tolist(), state["shopper_values"], state["shopper_band"])
        n = len(self._shoppers.columns)  # models saved before profiles were kept have none
        self._profiles = Shoppers(self._shoppers.columns, state.get("profile_values", np.zeros((0, n), np.float32)),
                                  state.get("profile_band", np.zeros(0, np.int64)))
        self._profiled = dict(zip(state.get("profile_ids", np.zeros(0, str)).tolist(),
                                  state.get("profile_rows", np.zeros(0, np.int64)).tolist()))
        texts = [str(t) for t in np.atleast_1d(state["scorer"])]
        self._scorer = Scorer(texts, self.params["threads"]) if texts else None
        self.report = json.loads(str(state["report"]))
        self.end, now, self.catalogue_version, self.fitted_items = (int(x) for x in state["times"])
        fitted_items = self.fitted_items
        self.names = feature_names(self.sources, self._content.columns, self._shoppers.columns)
        splits = np.cumsum(state["live_lens"])[:-1]
        fields = [np.split(state[f"live_{f}"], splits) for f in ("item", "ts", "weight", "price")]
        self._live = {int(u): History(*(f[j] for f in fields)) for j, u in enumerate(state["live_users"])}
        d = self.data
        # the candidate models know the items of the fit (add_items appends past them)
        data = d if fitted_items == d.n_items else Interactions(
            users=d.users, items=d.items[:fitted_items], user=d.user, item=d.item, weight=d.weight, ts=d.ts,
            price=d.price, session=d.session, weights=dict(d.weights))
        components = {}
        for name in [s for s in self.sources if s in MODEL_SOURCES]:
            model = self._component(name)
            model._data = data
            model.user_ids = list(self.user_ids)
            model.user_index = dict(self.user_index)
            model.history = self.history[:, :fitted_items].tocsr()
            model.n_fitted_users = self.n_fitted_users
            model.meta = {}
            model.popularity = np.asarray((data.matrix > 0).sum(axis=0), dtype=np.float32).ravel()
            model._extra = {u: [i for i in items if i < fitted_items] for u, items in self._extra.items()}
            prefix = f"comp_{name}_"
            model._restore({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})
            components[name] = model
        self._serve_from(d, components)
        self.now = now


def _parse_sources(text: Any) -> tuple[list[str], dict[str, int]]:
    """``"repurchase,group,new:400"`` -> the names in order, and the sizes given with ``:n``."""
    names, sizes = [], {}
    for part in (x.strip() for x in str(text).split(",")):
        if not part:
            continue
        name, _, size = part.partition(":")
        names.append(name.strip())
        if size:
            try:
                sizes[name.strip()] = int(size)
            except ValueError:
                raise InvalidInput(f"ranker: a source's size must be an integer, got {part!r}") from None
            if sizes[name.strip()] < 1:
                raise InvalidInput(f"ranker: a source's size must be at least 1, got {part!r}")
    unknown = [s for s in names if s not in SOURCES]
    if not names or unknown or len(set(names)) != len(names):
        raise InvalidInput(f"ranker: sources must be distinct names from {', '.join(SOURCES)} (each with an "
                           f"optional :size), got {text!r}")
    return names, sizes
