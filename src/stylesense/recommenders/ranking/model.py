"""LightGBM LambdaRank over candidate rows grouped by shopper: the training loop, kept apart
from the recommender (which builds the rows) as Cornac keeps its nets apart from its models.

Training rows come from time windows of the training side (see ``Ranker``); early stopping
watches MAP@``eval_at`` on the window after them, and with ``refit`` the model is trained again
on every window (the latest included) for the number of rounds that scored best, since the
latest window is the one most like the weeks to come.

``bags`` boosters are trained so, each with its own seed (its own row and feature samples), and
their scores averaged. With a few hundred bought items per window, which rounds early stopping
keeps and which splits a booster makes move a lot from one seed to the next (on the H&M sample
one booster's test Recall@12 ranged 0.021-0.047 over seeds); the average of five is steadier
and, on both the validation window and the test, better than the typical single one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

PARALLEL_ROWS = 20_000  # predictions over fewer rows run in one thread


@dataclass
class RankSet:
    """Rows of (shopper, candidate) features, labels (1: the shopper bought it in the window)
    and group sizes (consecutive rows of one shopper)."""

    X: np.ndarray
    y: np.ndarray
    groups: np.ndarray

    @classmethod
    def concat(cls, sets: Sequence["RankSet"], n_features: int) -> "RankSet":
        sets = [s for s in sets if len(s.y)]
        if not sets:
            return cls(np.zeros((0, n_features), np.float32), np.zeros(0, np.int32), np.zeros(0, np.int64))
        return cls(np.concatenate([s.X for s in sets]), np.concatenate([s.y for s in sets]),
                   np.concatenate([s.groups for s in sets]))

    @property
    def positives(self) -> int:
        return int(self.y.sum())


@dataclass(frozen=True)
class BoostParams:
    rounds: int
    early_stopping: int
    learning_rate: float
    leaves: int
    min_leaf: int
    eval_at: int
    threads: int
    seed: int


@dataclass
class Trained:
    """The boosters as LightGBM's text (what the model file keeps), how many rounds each has,
    and each one's best validation MAP@k (empty without a validation window)."""

    texts: list[str]
    rounds: list[int]
    valid_map: list[float]


def _lgb_params(p: BoostParams) -> dict:
    return {
        "objective": "lambdarank", "metric": "map", "eval_at": [p.eval_at],
        "learning_rate": p.learning_rate, "num_leaves": p.leaves, "min_data_in_leaf": p.min_leaf,
        "feature_fraction": 0.8, "bagging_fraction": 0.8, "bagging_freq": 1, "lambda_l2": 1.0,
        "lambdarank_truncation_level": max(20, 2 * p.eval_at),
        "num_threads": p.threads, "seed": p.seed, "deterministic": True, "force_row_wise": True,
        "verbosity": -1,
    }


def train(names: list[str], fit: RankSet, valid: RankSet | None, p: BoostParams, refit: bool, bags: int) -> Trained:
    """``bags`` LambdaRank boosters on ``fit`` (seeds ``seed``, ``seed + 1``, ...), each with
    early stopping on ``valid`` (if it has positives), then, with ``refit``, trained again for
    as many rounds on ``fit`` and ``valid`` together."""
    import lightgbm as lgb

    texts, rounds, valid_map = [], [], []
    both = RankSet.concat([fit, valid], fit.X.shape[1]) if valid is not None and refit else fit
    train_set = lgb.Dataset(fit.X, fit.y, group=fit.groups, feature_name=names, free_raw_data=False)
    stop = valid is not None and valid.positives > 0
    if stop:
        valid_set = lgb.Dataset(valid.X, valid.y, group=valid.groups, reference=train_set)
    if both is not fit:
        all_set = lgb.Dataset(both.X, both.y, group=both.groups, feature_name=names, free_raw_data=False)
    for bag in range(bags):
        params = _lgb_params(p) | {"seed": p.seed + bag}
        if not stop:  # nothing to stop on: every round
            booster = lgb.train(params, train_set, p.rounds)
            texts.append(booster.model_to_string())
            rounds.append(p.rounds)
            continue
        curve: dict = {}
        booster = lgb.train(params, train_set, p.rounds, valid_sets=[valid_set], valid_names=["valid"],
                            callbacks=[lgb.early_stopping(p.early_stopping, verbose=False),
                                       lgb.record_evaluation(curve)])
        best = max(1, booster.best_iteration or p.rounds)
        valid_map.append(float(curve["valid"][f"map@{p.eval_at}"][best - 1]))
        if both is not fit:
            booster = lgb.train(params, all_set, best)
        texts.append(booster.model_to_string(num_iteration=best))
        rounds.append(best)
    return Trained(texts, rounds, valid_map)


class Scorer:
    """Trained boosters read back from their text; scores are their mean. Thread-safe:
    LightGBM's predict takes the booster's lock (LightGBM issue #666)."""

    def __init__(self, texts: list[str], threads: int) -> None:
        import lightgbm as lgb

        self.texts = list(texts)
        self.threads = threads
        self.boosters = [lgb.Booster(model_str=t) for t in self.texts]

    def predict(self, X: np.ndarray) -> np.ndarray:
        if not len(X):
            return np.zeros(0, np.float32)
        # One thread for one shopper's rows: with OpenMP's start-up on a busy 2-core machine,
        # two threads took 2 ms per booster on 560 rows, one 0.25 ms.
        threads = 1 if len(X) < PARALLEL_ROWS else self.threads
        X = np.ascontiguousarray(X, dtype=np.float64)  # what LightGBM would copy it into
        total = sum(b.predict(X, num_threads=threads) for b in self.boosters)
        return np.asarray(total / len(self.boosters), dtype=np.float32)

    def importances(self) -> dict[str, float]:
        """Gain per feature over all boosters, as shares of the total (largest first)."""
        gain = sum(b.feature_importance("gain") for b in self.boosters)
        total = float(gain.sum()) or 1.0
        pairs = sorted(zip(self.boosters[0].feature_name(), gain), key=lambda x: -x[1])
        return {name: round(float(g) / total, 6) for name, g in pairs}
