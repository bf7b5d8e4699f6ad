"""Shoppers' profiles reach the ranker: `stylesense users import` stores attributes (age, ...),
training reads them (features and age segments), a shopper with a profile and no events gets
their segment's best sellers, and a profile written after training counts from the next
request, in this process and in another one, without a retrain."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from stylesense.cli import app
from stylesense.engine import StyleSense
from stylesense.events.users import User
from stylesense.recommenders import load_recommender
from stylesense.recommenders.ranker import SEGMENT_REASON

T0 = 1_700_006_400  # a midnight: a day-stamped log, as H&M's
DAY = 86_400
PARAMS = {"threads": 1, "windows": 3, "window_days": 14, "rounds": 40, "min_leaf": 5, "candidates": 20,
          "sources": "repurchase,itemknn,popular,segment"}
YOUNG = [f"y{i}" for i in range(10)]
OLD = [f"o{i}" for i in range(10)]
runner = CliRunner()


def world(seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """60 shoppers in their twenties buy the y products, 120 in their sixties the o products:
    the overall best sellers are o products, the twenties' segment's are y products."""
    rng = np.random.default_rng(seed)
    rows, ages = [], {}
    for kind, n, items, low in (("young", 60, YOUNG, 20), ("old", 120, OLD, 60)):
        for k in range(n):
            user = f"{kind}{k}"
            ages[user] = int(rng.integers(low, low + 10))
            share = 1.0 / np.arange(1, len(items) + 1)
            for item in rng.choice(items, size=4, replace=False, p=share / share.sum()):
                rows.append((user, item, "purchase", T0 + int(rng.integers(0, 70)) * DAY))
    events = pd.DataFrame(rows, columns=["user_id", "item_id", "type", "ts"])
    events["ts"] = pd.to_datetime(events["ts"], unit="s", utc=True)
    return events, pd.DataFrame({"age": pd.Series(ages)})


def write_profiles(path, table: pd.DataFrame) -> None:
    table.rename_axis("customer_id").reset_index().to_csv(path, index=False)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A home with the world's events and profiles (plus two shoppers with no events), and a
    ranker trained on them."""
    tmp = tmp_path_factory.mktemp("profiles")
    events, ages = world()
    ss = StyleSense(tmp / "home", threads=1)
    ss.behaviour.events.import_frame(events)
    extra = pd.DataFrame({"age": [24, 66]}, index=["newbie_young", "newbie_old"])
    write_profiles(tmp / "customers.csv", pd.concat([ages, extra]))
    r = runner.invoke(app, ["--home", str(tmp / "home"), "users", "import", str(tmp / "customers.csv"), "--preset", "hm"])
    assert r.exit_code == 0 and "182 profiles stored (182 new)" in r.output, r.output
    model, _ = ss.behaviour.train("ranker", PARAMS)
    return tmp, ss, model


def ids(recs) -> list[str]:
    return [r.item_id for r in recs]


def test_a_shopper_with_a_profile_and_no_events_gets_their_segments_best_sellers(trained):
    _, ss, model = trained
    assert "shopper_age" in model.names  # the attribute is a feature of the boosters
    young = ss.behaviour.recommend("newbie_young", 5)
    assert set(ids(young)) <= set(YOUNG) and all(r.reason == SEGMENT_REASON for r in young)
    assert set(ids(ss.behaviour.recommend("newbie_old", 5))) <= set(OLD)
    # no profile: the overall best sellers, most of them the sixties' products
    assert len(set(ids(ss.behaviour.recommend("stranger", 5))) & set(OLD)) >= 4


def test_a_profile_written_after_training_counts_at_once_here_and_in_another_process(trained):
    tmp, ss, model = trained
    assert len(set(ids(ss.behaviour.recommend("late_young", 5))) & set(OLD)) >= 4  # unknown yet
    ss.behaviour.users.upsert([User("late_young", {"age": 27, "club": "ACTIVE"})])  # a Gorse client's write
    assert set(ids(ss.behaviour.recommend("late_young", 5))) <= set(YOUNG)
    other = StyleSense(tmp / "home", threads=1)  # another worker: loads the model file, then catches up
    assert set(ids(other.behaviour.recommend("late_young", 5))) <= set(YOUNG)
    # a profile changed to another age moves the shopper to that segment
    ss.behaviour.users.upsert([User("late_young", {"age": 61})])
    assert set(ids(ss.behaviour.recommend("late_young", 5))) <= set(OLD)
    assert ss.behaviour.model("ranker") is model  # no retrain, no reload: the served model caught up


def test_the_first_event_of_a_profiled_shopper_keeps_their_segment(trained):
    _, ss, _ = trained
    ss.behaviour.users.upsert([User("first_timer", {"age": 25})])
    ss.behaviour.add_event("first_timer", "o9", "view")  # one view of a sixties' product
    model = ss.behaviour.model("ranker")
    segment, _ = model.candidates([model.user_index["first_timer"]])[0]["segment"]
    assert set(model.item_ids[segment[:5]]) <= set(YOUNG)
    assert "o9" not in ids(ss.behaviour.recommend("first_timer", 5))  # seen: excluded


def test_the_saved_model_keeps_the_profiles_of_shoppers_without_events(trained, tmp_path):
    _, ss, model = trained
    model.save(tmp_path / "ranker.npz")
    loaded = load_recommender(tmp_path / "ranker.npz")
    assert ids(loaded.recommend("newbie_young", 5)) == ids(model.recommend("newbie_young", 5))


def test_importing_profiles_keeps_other_labels_and_reports_bad_rows(tmp_path):
    ss = StyleSense(tmp_path / "home", threads=1)
    users = ss.behaviour.users
    users.upsert([User("a", {"tier": "gold", "age": 30}, comment="vip"), User("b", ["sport", "casual"])])
    (tmp_path / "c.csv").write_text("user_id,age,club\na,31,ACTIVE\nb,44,\nc,1e999,PRE\n,20,x\nd,19,x,extra\n")
    r = runner.invoke(app, ["--home", str(tmp_path / "home"), "users", "import", str(tmp_path / "c.csv")])
    assert r.exit_code == 1, r.output
    assert "5 rows: 2 profiles stored (0 new), 3 failed" in r.output
    assert "line 4" in r.output and "finite" in r.output  # 1e999: an infinite number is no label
    assert "line 5" in r.output and "line 6" in r.output  # an empty id, a ragged row
    assert users.get("a").labels == {"tier": "gold", "age": 31, "club": "ACTIVE"} and users.get("a").comment == "vip"
    assert users.get("b").labels == {"age": 44}  # a tag list names no attribute: replaced
    assert users.attributes().loc["a", "age"] == 31
    again = ss.behaviour.import_profiles(tmp_path / "c.csv")
    assert (again.stored, again.new) == (2, 0) and users.get("a").labels["age"] == 31
    r = runner.invoke(app, ["--home", str(tmp_path / "home"), "users", "import", str(tmp_path / "c.csv"),
                            "--id-column", "customer"])
    assert r.exit_code == 2 and "no id column 'customer'" in r.output, r.output
