"""Hyper-parameter search (Optuna) on a validation split carved from training data only.

Each model declares its search space (``search_space(trial)``); a trial fits the model on the
fitting part of the training data and scores it on the validation part by the same protocol as
the final test. The test data is never seen, so the tuned figures the evaluation then reports
are honest. The defaults are measured too and win ties, so tuning never makes a model worse
on validation than it was.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from time import perf_counter
from typing import Any

import optuna
import pandas as pd

from stylesense.atomic import atomic_write
from stylesense.errors import InvalidInput
from stylesense.evaluation.recommenders import Recommendable, evaluate_models
from stylesense.evaluation.splits import validation_split
from stylesense.recommenders import MODELS, Recommender, make_recommender
from stylesense.recommenders.blend import Blend, FitCache

Factory = Callable[[dict[str, Any]], Recommender]


@dataclass
class TuneResult:
    model: str
    protocol: str
    metric: str
    k: int
    best_params: dict[str, Any]
    best_value: float
    default_value: float
    trials: list[dict[str, Any]] = field(default_factory=list)  # params, value, seconds
    seconds: float = 0.0

    def to_json(self, path: str | Path) -> None:
        text = json.dumps(asdict(self), indent=2) + "\n"
        atomic_write(path, lambda f: f.write(text.encode()))

    @classmethod
    def from_json(cls, path: str | Path) -> "TuneResult":
        return cls(**json.loads(Path(path).read_text()))


def tune(
    model: str,
    train: pd.DataFrame,
    protocol: str,
    *,
    trials: int = 20,
    k: int = 10,
    metric: str = "ndcg_at_k",
    seed: int = 0,
    ratio: float = 0.75,
    test_days: float = 7,
    exclude_seen: bool = True,
    weights: Mapping[str, float] | None = None,
    items_universe: Sequence[str] = (),
    recommendable: Recommendable | None = None,
    factory: Factory | None = None,
    on_trial: Callable[[int, float, float], None] | None = None,
) -> TuneResult:
    """Search ``model``'s parameters for the best validation ``metric`` in ``trials`` trials.

    ``train`` is the training side of the protocol's split; a validation split is carved from
    it here. ``factory(params)`` builds the model (default: by registered name), so callers can
    hand models their side inputs (image vectors for ``visual``). ``on_trial(done, value,
    best)`` reports progress.
    """
    cls = MODELS.get(model)
    if cls is None:
        raise InvalidInput(f"unknown model {model!r}; choose from {', '.join(MODELS)}")
    if not hasattr(cls, "search_space"):
        raise InvalidInput(f"{model} has no parameters to tune")
    if trials < 1:
        raise InvalidInput("trials must be at least 1")
    build = factory or (lambda params: make_recommender(model, **params))
    fit_part, validation = validation_split(train, protocol, ratio=ratio, seed=seed, test_days=test_days)
    if validation.empty:
        raise InvalidInput(f"the {protocol} validation split of the training data is empty")

    cache = FitCache()  # a blend's trials differ in weights only: they share the components' fits

    def built(params: dict[str, Any]) -> Recommender:
        candidate = build(params)
        return candidate.with_cache(cache) if isinstance(candidate, Blend) else candidate

    def score(params: dict[str, Any]) -> float:
        result = evaluate_models(
            {model: lambda: built(params)}, fit_part, validation, k=k, exclude_seen=exclude_seen,
            weights=weights, items_universe=items_universe, protocol=f"{protocol}-validation",
            recommendable=recommendable,
        )
        value = result.models[model][metric]
        return float(value) if value is not None else 0.0

    started = perf_counter()
    default_value = score({})
    history: list[dict[str, Any]] = []

    def objective(trial: optuna.Trial) -> float:
        t0 = perf_counter()
        params = cls.search_space(trial)
        value = score(params)
        history.append({"params": params, "value": value, "seconds": round(perf_counter() - t0, 2)})
        if on_trial:
            on_trial(len(history), value, max(default_value, max(h["value"] for h in history)))
        return value

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    study.optimize(objective, n_trials=trials)
    best = max(history, key=lambda h: h["value"])
    if best["value"] <= default_value:
        best = {"params": {}, "value": default_value}
    return TuneResult(
        model=model, protocol=protocol, metric=metric, k=k,
        best_params={**cls.defaults, **best["params"]}, best_value=best["value"],
        default_value=default_value, trials=history, seconds=round(perf_counter() - started, 2),
    )
