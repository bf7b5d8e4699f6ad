"""The last-item protocol through the evaluation harness: ``split`` / ``run_protocol`` by name,
the same JSON shape as the other protocols, one relevant event per test user, single-event
users out of the test, and what ``exclude_seen`` does to a repeated last item."""

import json

import numpy as np
import pandas as pd
import pytest

from recsys_fixtures import T0, block_events
from stylesense.evaluation.recommenders import ROW_KEYS, EvaluationResult, evaluate_models, run_protocol
from stylesense.evaluation.splits import PROTOCOL_PARAMS, split


@pytest.fixture(scope="module")
def events() -> pd.DataFrame:
    ev = block_events(120, 60, 3, per_user=8, seed=3)
    loner = pd.DataFrame({"user_id": ["loner"], "item_id": [ev["item_id"].iloc[0]], "type": "view", "ts": [T0]})
    return pd.concat([ev, loner], ignore_index=True)


def test_run_protocol_last_item_scores_one_event_per_user_in_the_usual_shape(events, tmp_path):
    result = run_protocol(events, "last-item", ["popular", "itemknn"], k=10)
    assert result.protocol == "last-item" and set(result.models) == {"popular", "itemknn"}
    assert result.split["test_users"] == result.split["test_events"] == 120  # the loner is not tested
    assert result.split["cold_users"] == 0 and result.cold == {}
    for row in result.models.values():
        assert list(row) == list(ROW_KEYS)
        assert row["users"] == 120
        # One relevant item per user: hit rate = recall, precision = hits / (10 users).
        assert row["hit_rate_at_k"] == pytest.approx(row["recall_at_k"])
        assert row["precision_at_k"] == pytest.approx(row["hit_rate_at_k"] / 10)
        assert 0.0 <= row["mrr"] <= row["hit_rate_at_k"]
    # Block-structured tastes: item-kNN finds the last item far more often than popularity.
    assert result.models["itemknn"]["hit_rate_at_k"] > 1.5 * result.models["popular"]["hit_rate_at_k"]
    path = tmp_path / "last_item.json"
    result.to_json(path)
    back = EvaluationResult.from_json(path)
    assert back.to_dict() == json.loads(path.read_text()) == result.to_dict()
    assert PROTOCOL_PARAMS["last-item"] == ()


def test_evaluate_models_on_the_split_matches_run_protocol(events):
    train, test = split(events, "last-item")
    direct = evaluate_models({"popular": "popular"}, train, test, k=5, protocol="last-item")
    via = run_protocol(events, "last-item", ["popular"], k=5)
    assert direct.models["popular"]["hits"] == via.models["popular"]["hits"]
    assert direct.split["test_events"] == via.split["test_events"]


def test_a_repeated_last_item_is_only_hit_without_exclude_seen():
    """A user whose last event repeats an earlier item: with ``exclude_seen`` (the default)
    no model can rank it; without, popularity does."""
    ev = pd.DataFrame(
        {
            "user_id": ["a", "a", "b", "b", "c", "c", "c"],
            "item_id": ["hit", "x", "hit", "y", "hit", "z", "hit"],
            "type": "purchase",
            "ts": T0 + np.arange(7),
        }
    )
    train, test = split(ev, "last-item")
    assert dict(zip(test["user_id"], test["item_id"])) == {"a": "x", "b": "y", "c": "hit"}
    repeat = test[test["user_id"] == "c"]
    seen = evaluate_models({"popular": "popular"}, train, repeat, k=1)
    unseen = evaluate_models({"popular": "popular"}, train, repeat, k=1, exclude_seen=False)
    assert seen.models["popular"]["hits"] == 0
    assert unseen.models["popular"]["hits"] == 1
