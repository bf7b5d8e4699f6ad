"""Offline evaluation of recommenders: fit every model on one training split, rank for the
held-out users, score the lists with :mod:`stylesense.evaluation.metrics`.

What counts, and why:

* One :class:`~stylesense.recommenders.data.Interactions` is built from the training events and
  shared by every model, so models differ only in what they learn, never in what they saw.
* Relevant items of a test user: the item of every held-out event of theirs (optionally only
  events of ``relevant_types``, e.g. purchases). On MovieLens that is every held-out rating; on
  H&M every purchase in the test window.
* Held-out items outside the training universe cannot be recommended by any model, yet they
  stay relevant: recall and nDCG denominators include them, so a model is not flattered by
  a test full of new arrivals. ``split["unseen_test_items"]`` says how many there were.
* Test users with training history (warm) get ``recommend_batch`` with ``exclude_seen``; test
  users without (cold) get what the model serves an unknown user, ``model.recommend(user)``
  (popularity for every model today), and are scored in their own row under ``cold``. No test
  user is dropped; ``split`` reports how many of each there were.
* Metric values are means over a row's users, except ``revenue_at_k`` (a sum over users: the
  price of every held-out purchase event, among the relevant events, of an item the user was
  recommended; ``None`` where the test has no priced purchases, as on MovieLens) and
  ``coverage`` (distinct items recommended over that row / training universe size).
  ``intra_list_diversity`` (how unlike each other a list's products look, on the catalogue's
  search vectors) is a mean over the lists with two or more photographed items, ``None``
  where no item vectors were given.
* ``diversity`` values above 0 add rows of the same fitted model re-ranked by MMR
  (:mod:`stylesense.recommenders.diversity`), labelled ``"<model> diversity=<value>"``: the
  model's top ``candidate_count(k)`` items, picked greedily for relevance and for looking
  unlike the items picked before.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from time import perf_counter
from typing import Any

import numpy as np
import pandas as pd
from rich.table import Table

from stylesense.atomic import atomic_write
from stylesense.errors import InvalidInput
from stylesense.evaluation import metrics
from stylesense.evaluation.splits import PROTOCOL_PARAMS, split
from stylesense.recommenders import Interactions, Recommender, make_recommender
from stylesense.recommenders.diversity import candidate_count, check_diversity, mmr

ModelSpec = Recommender | Callable[[], Recommender] | str
"""A model instance (fitted here, in place), a zero-argument factory, or a registered name."""
Recommendable = Callable[[np.ndarray], "np.ndarray | None"]
"""Item ids -> boolean mask of those that may be recommended (None: all), e.g. a live home's
catalogue rule: removed and hidden products are never recommended, in evaluation either."""
ItemVectors = Callable[[np.ndarray], np.ndarray]
"""Item ids -> their search vectors, (n, d) L2-normalised rows, a zero row for an item without
one (no photo): what intra-list diversity and MMR re-ranking compare products by."""

# Per-user metrics, averaged over a row's users; with coverage, the bars of ``plot``.
RANKING_METRICS: dict[str, Callable[[metrics.Judged], np.ndarray]] = {
    "ndcg_at_k": metrics.ndcg_at_k,
    "map_at_k": metrics.average_precision_at_k,
    "precision_at_k": metrics.precision_at_k,
    "recall_at_k": metrics.recall_at_k,
    "hit_rate_at_k": metrics.hit_rate_at_k,
    "mrr": metrics.reciprocal_rank_at_k,
}
PLOTTED = (*RANKING_METRICS, "coverage")
ROW_KEYS = (*PLOTTED, "intra_list_diversity", "revenue_at_k", "fit_seconds", "recommend_ms_per_user", "users",
            "hits")
_HEADERS = {
    "ndcg_at_k": "nDCG@k", "map_at_k": "MAP@k", "precision_at_k": "P@k", "recall_at_k": "R@k",
    "hit_rate_at_k": "HR@k", "mrr": "MRR@k", "coverage": "coverage", "intra_list_diversity": "ILD",
    "revenue_at_k": "revenue@k",
    "fit_seconds": "fit s", "recommend_ms_per_user": "ms/user", "users": "users", "hits": "hits",
}


@dataclass
class EvaluationResult:
    """One protocol's results: ``models[name]`` (warm test users) and ``cold[name]`` (test
    users unknown to training) hold the keys of :data:`ROW_KEYS`; ``split`` the sizes."""

    protocol: str
    k: int
    models: dict[str, dict[str, Any]]
    cold: dict[str, dict[str, Any]] = field(default_factory=dict)
    exclude_seen: bool = True
    relevant_types: list[str] | None = None
    split: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self, path: str | Path) -> None:
        text = json.dumps(self.to_dict(), indent=2) + "\n"
        atomic_write(path, lambda f: f.write(text.encode()))

    @classmethod
    def from_json(cls, path: str | Path) -> "EvaluationResult":
        return cls(**json.loads(Path(path).read_text()))

    def table(self) -> Table:
        """One row per model (then one per cold row), metrics as columns."""
        table = Table(
            title=f"{self.protocol} split, k={self.k}: {self.split['test_users']} test users "
            f"({self.split['cold_users']} cold), exclude_seen={self.exclude_seen}"
        )
        table.add_column("model")
        for key in ROW_KEYS:
            table.add_column(_HEADERS[key], justify="right")
        rows = [*self.models.items(), *((f"{n} (cold)", r) for n, r in self.cold.items())]
        for name, row in rows:
            table.add_row(name, *(_cell(row.get(key)) for key in ROW_KEYS))
        return table

    def plot(self, path: str | Path) -> Path:
        """Grouped bars, one group per ranking metric, one bar per model; written as PNG.

        Uses a bare ``Figure`` (Agg canvas) rather than pyplot, so no global backend or figure
        state is touched in the calling process."""
        from matplotlib.figure import Figure  # only plotting needs matplotlib

        fig = Figure(figsize=(max(6.0, 1.0 + 0.3 * len(PLOTTED) * len(self.models)), 4.0))
        ax = fig.subplots()
        x = np.arange(len(PLOTTED))
        width = 0.8 / max(1, len(self.models))
        for i, (name, row) in enumerate(self.models.items()):
            values = [row.get(key) or 0.0 for key in PLOTTED]
            ax.bar(x + (i - (len(self.models) - 1) / 2) * width, values, width, label=name)
        ax.set_xticks(x, [_HEADERS[key] for key in PLOTTED])
        ax.set_ylabel("warm test users")
        ax.set_title(f"{self.protocol} split, k={self.k}")
        ax.legend()
        fig.tight_layout()
        path = Path(path)
        atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=100))
        return path


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 100 else f"{value:,.0f}"
    return str(value)


@dataclass(frozen=True)
class _HeldOut:
    """The relevant test events of one group of users (warm or cold), as metric inputs.

    ``rows``: user ids, one ranked list each. Pairs are (row, item code); item codes extend the
    training universe with codes for held-out items it lacks. ``buy_*``: purchase events."""

    rows: np.ndarray
    rel_user: np.ndarray
    rel_item: np.ndarray
    buy_user: np.ndarray
    buy_item: np.ndarray
    buy_price: np.ndarray

    @classmethod
    def of(cls, events: pd.DataFrame, codes: np.ndarray, users: np.ndarray) -> "_HeldOut":
        rows = pd.Index(users).get_indexer(events["user_id"].astype(str))
        keep = rows >= 0
        buy = keep & (events["type"].astype(str) == "purchase").to_numpy()
        price = events["price"] if "price" in events.columns else pd.Series(np.nan, index=events.index)
        return cls(
            rows=users,
            rel_user=rows[keep], rel_item=codes[keep],
            buy_user=rows[buy], buy_item=codes[buy],
            buy_price=pd.to_numeric(price, errors="coerce").to_numpy(np.float64)[buy],
        )

    def score(self, ranked: np.ndarray, n_items: int, seconds: float, fit_seconds: float,
              vectors: np.ndarray | None = None) -> dict[str, Any]:
        """The metric row (keys in :data:`ROW_KEYS` order) for these users' ranked lists (item
        codes, -1 padded) that took ``seconds`` to compute, from a model fitted in ``fit_seconds``;
        ``vectors``: the search vectors by item code, for intra-list diversity."""
        judged = metrics.judge(ranked, self.rel_user, self.rel_item)
        n = len(self.rows)
        row: dict[str, Any] = {
            key: float(fn(judged).mean()) if n else None for key, fn in RANKING_METRICS.items()
        }
        priced = np.isfinite(self.buy_price).any()
        revenue = metrics.revenue_at_k(ranked, self.buy_user, self.buy_item, self.buy_price)
        row["coverage"] = metrics.coverage(ranked, n_items)
        ild = None if vectors is None or not n else metrics.intra_list_diversity(ranked, vectors)
        row["intra_list_diversity"] = None if ild is None or not np.isfinite(ild).any() else float(np.nanmean(ild))
        row["revenue_at_k"] = float(revenue.sum()) if priced else None
        row["fit_seconds"] = fit_seconds
        row["recommend_ms_per_user"] = 1000.0 * seconds / n if n else None
        row["users"] = n
        row["hits"] = int(judged.hits.sum())
        return {key: row[key] for key in ROW_KEYS}


def _build(spec: ModelSpec) -> Recommender:
    if isinstance(spec, Recommender):
        return spec
    if isinstance(spec, str):
        return make_recommender(spec)
    return spec()


def _codes(recs: Sequence[Any], data: Interactions, k: int) -> np.ndarray:
    """Item indices of one ``recommend`` answer, -1 padded to k."""
    out = np.full(k, -1, dtype=np.int64)
    idx = [data.item_index[r.item_id] for r in recs[:k]]
    out[: len(idx)] = idx
    return out


def _diversified(ranked: np.ndarray, scores: np.ndarray, vectors: np.ndarray, k: int, diversity: float) -> np.ndarray:
    """Each row's candidates (item codes, best first, -1 padded, with their ``scores``)
    re-ranked by MMR on ``vectors``: (n, k) item codes, -1 padded."""
    out = np.full((len(ranked), k), -1, dtype=np.int64)
    for row, (codes, values) in enumerate(zip(ranked, scores)):
        codes, values = codes[codes >= 0], values[codes >= 0]
        picked = codes[mmr(values, vectors[codes], k, diversity)]
        out[row, : len(picked)] = picked
    return out


def evaluate_models(
    models: Mapping[str, ModelSpec],
    train: pd.DataFrame,
    test: pd.DataFrame,
    *,
    k: int = 10,
    exclude_seen: bool = True,
    weights: Mapping[str, float] | None = None,
    items_universe: Sequence[str] = (),
    relevant_types: Sequence[str] | None = None,
    protocol: str = "custom",
    recommendable: Recommendable | None = None,
    item_vectors: ItemVectors | None = None,
    diversity: Sequence[float] = (0.0,),
) -> EvaluationResult:
    """Fit each model on ``train`` and score its top-k for every user of ``test``.

    ``items_universe`` extends the recommendable items beyond those in ``train`` (catalogue
    items nobody interacted with yet); ``relevant_types`` keeps only held-out events of those
    types as relevant (None: all); ``recommendable`` restricts what any model may return (held-out
    events of the other items stay relevant, like unseen items). ``fit_seconds`` times ``fit``;
    ``recommend_ms_per_user`` is the time of one ``recommend_batch`` over all warm users
    (batched inside), per user. ``item_vectors`` gives intra-list diversity, and ``diversity``
    values above 0 (MMR rows, see the module docstring) need it.
    """
    levels = list(dict.fromkeys(check_diversity(d) for d in diversity))
    if item_vectors is None and any(levels):
        raise InvalidInput("diversity re-ranking compares products' photos: this catalogue has no search vectors")
    data = Interactions.from_frame(train, weights, items=items_universe)
    vectors = None if item_vectors is None else np.asarray(item_vectors(data.items), dtype=np.float32)
    allowed = recommendable(data.items) if recommendable is not None else None
    held = test if relevant_types is None else test[test["type"].astype(str).isin(list(relevant_types))]
    item_codes = pd.Index(data.items).append(pd.Index(held["item_id"].astype(str).unique()).difference(data.items))
    codes = item_codes.get_indexer(held["item_id"].astype(str)).astype(np.int64)
    test_users = pd.unique(held["user_id"].astype(str))
    known = np.array([u in data.user_index for u in test_users], dtype=bool)
    warm = _HeldOut.of(held, codes, np.asarray(test_users[known], dtype=str))
    cold = _HeldOut.of(held, codes, np.asarray(test_users[~known], dtype=str))
    warm_index = np.array([data.user_index[u] for u in warm.rows], dtype=np.int64)

    rows: dict[str, dict[str, Any]] = {}
    cold_rows: dict[str, dict[str, Any]] = {}
    for name, spec in models.items():
        model = _build(spec)
        start = perf_counter()
        model.fit(data)
        fit_seconds = perf_counter() - start

        for level in levels:
            label = name if level == 0 else f"{name} diversity={level:g}"
            pool = candidate_count(k) if level else k
            start = perf_counter()
            ranked, scores = model.recommend_batch(warm_index, pool, exclude_seen=exclude_seen, allowed=allowed)
            if level:
                ranked = _diversified(ranked, scores, vectors, k, level)  # type: ignore[arg-type]
            rows[label] = warm.score(ranked, data.n_items, perf_counter() - start, fit_seconds, vectors)

            if len(cold.rows):
                start = perf_counter()
                recs = [model.recommend(u, pool, exclude_seen=exclude_seen, allowed=allowed) for u in cold.rows]
                ranked = np.stack([_codes(r, data, pool) for r in recs])
                if level:
                    scores = np.array([[r.score for r in rs] + [-np.inf] * (pool - len(rs)) for rs in recs])
                    ranked = _diversified(ranked, scores.reshape(len(recs), pool), vectors, k, level)  # type: ignore[arg-type]
                cold_rows[label] = cold.score(ranked, data.n_items, perf_counter() - start, fit_seconds, vectors)
    return EvaluationResult(
        protocol=protocol,
        k=k,
        models=rows,
        cold=cold_rows,
        exclude_seen=exclude_seen,
        relevant_types=None if relevant_types is None else list(relevant_types),
        split={
            "train_events": len(train),
            "test_events": len(test),
            "relevant_events": len(held),
            "train_users": data.n_users,
            "train_items": data.n_items,
            "test_users": len(test_users),
            "cold_users": len(cold.rows),
            "unseen_test_items": len(item_codes) - data.n_items,
        },
    )


def run_protocol(
    events: pd.DataFrame,
    protocol: str = "stratified",
    models: Mapping[str, ModelSpec] | Sequence[str] = ("popular",),
    *,
    k: int = 10,
    test_days: float = 7,
    seed: int = 42,
    ratio: float = 0.75,
    cutoff: object = None,
    exclude_seen: bool = True,
    weights: Mapping[str, float] | None = None,
    items_universe: Sequence[str] = (),
    relevant_types: Sequence[str] | None = None,
    recommendable: Recommendable | None = None,
    item_vectors: ItemVectors | None = None,
    diversity: Sequence[float] = (0.0,),
) -> EvaluationResult:
    """Split ``events`` by ``protocol`` (see :func:`stylesense.evaluation.splits.split`) and
    evaluate ``models`` (registered names, or a name -> :data:`ModelSpec` mapping) on it.
    The split's parameters are recorded in ``result.split``."""
    given = {"ratio": ratio, "seed": seed, "test_days": test_days, "cutoff": cutoff}
    train, test = split(events, protocol, **given)
    specs = models if isinstance(models, Mapping) else {name: name for name in models}
    result = evaluate_models(
        specs, train, test, k=k, exclude_seen=exclude_seen, weights=weights,
        items_universe=items_universe, relevant_types=relevant_types, protocol=protocol,
        recommendable=recommendable, item_vectors=item_vectors, diversity=diversity,
    )
    for name in PROTOCOL_PARAMS[protocol]:
        value = given[name]
        result.split[name] = value if value is None or isinstance(value, (int, float)) else str(value)
    return result
