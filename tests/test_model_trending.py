"""Trending: time-decayed popularity, checked against hand-computed decayed counts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from stylesense.recommenders import load_recommender
from stylesense.recommenders.data import Interactions
from stylesense.recommenders.trending import Trending

T0 = 1_700_000_000
DAY = 86_400


def log() -> pd.DataFrame:
    """"old" was bought by 4 shoppers two weeks ago, "mid" liked once a week ago, "hot" viewed
    by 2 shoppers today; "new" is in the catalogue with no events yet."""
    rows = [(f"u{k}", "old", "view", T0) for k in range(1, 5)]
    rows += [("u7", "mid", "like", T0 + 7 * DAY)]  # like weighs 3
    rows += [("u5", "hot", "view", T0 + 14 * DAY), ("u6", "hot", "view", T0 + 14 * DAY)]
    return pd.DataFrame(rows, columns=["user_id", "item_id", "type", "ts"])


def fit(**params) -> Trending:
    return Trending(**params).fit(Interactions.from_frame(log(), items=["new"]))


def cold(model: Trending) -> dict[str, float]:
    return {r.item_id: r.score for r in model.recommend("nobody", k=10)}


def test_decayed_scores_by_hand():
    m = fit()  # half-life 7 days; t_ref = day 14
    assert m.t_ref == T0 + 14 * DAY
    got = cold(m)
    # hot: 2 * 0.5^0; mid: 3 * 0.5^1; old: 4 * 0.5^2; new: no events
    assert got == pytest.approx({"hot": 2.0, "mid": 1.5, "old": 1.0, "new": 0.0}, rel=1e-6)
    assert [r.item_id for r in m.recommend("nobody", k=3)] == ["hot", "mid", "old"]
    # all-time popularity would put "old" (4 shoppers) first: trending does not
    assert m.data.matrix.getnnz(axis=0)[m.data.item_index["old"]] == 4


def test_known_user_gets_the_trending_list_minus_what_they_have():
    m = fit()
    recs = m.recommend("u1", k=3)  # u1 has "old"
    assert [r.item_id for r in recs] == ["hot", "mid", "new"]
    assert recs[0].reason is not None and recs[0].reason.startswith("trending:")


def test_half_life_changes_the_order():
    long = cold(fit(half_life_days=28.0))
    # old: 4 * 0.5^0.5, mid: 3 * 0.5^0.25, hot: 2
    assert long == pytest.approx({"old": 4 * 0.5**0.5, "mid": 3 * 0.5**0.25, "hot": 2.0, "new": 0.0}, rel=1e-6)
    assert sorted(long, key=long.get, reverse=True)[:3] == ["old", "mid", "hot"]
    short = cold(fit(half_life_days=1.0))
    assert short == pytest.approx({"hot": 2.0, "mid": 3 * 0.5**7, "old": 4 * 0.5**14, "new": 0.0}, rel=1e-5)


def test_update_moves_a_new_hot_item_up_and_ages_the_rest():
    m = fit()
    taken = m.update(pd.DataFrame({
        "user_id": ["a", "b", "c"], "item_id": ["new"] * 3, "type": ["view"] * 3, "ts": [T0 + 21 * DAY] * 3,
    }))
    assert taken == 3 and m.t_ref == T0 + 21 * DAY
    # a week later everything counted before halves once more
    assert cold(m) == pytest.approx({"new": 3.0, "hot": 1.0, "mid": 0.75, "old": 0.5}, rel=1e-6)
    assert [r.item_id for r in m.recommend("u1", k=2)] == ["new", "hot"]
    # a late event (older than t_ref) counts decayed, and time does not move back
    m.update(pd.DataFrame({"user_id": ["d"], "item_id": ["old"], "type": ["view"], "ts": [T0 + 14 * DAY]}))
    assert m.t_ref == T0 + 21 * DAY
    assert cold(m)["old"] == pytest.approx(0.5 + 0.5, rel=1e-6)


def test_update_with_datetime_timestamps():
    frame = log()
    frame["ts"] = pd.to_datetime(frame["ts"], unit="s")
    m = Trending().fit(Interactions.from_frame(frame, items=["new"]))
    m.update(pd.DataFrame({"user_id": ["a"], "item_id": ["new"], "type": ["purchase"],
                           "ts": [pd.Timestamp(T0 + 14 * DAY, unit="s")]}))
    assert cold(m)["new"] == pytest.approx(8.0)


def test_save_load_round_trip(tmp_path):
    m = fit(half_life_days=3.0)
    m.update(pd.DataFrame({"user_id": ["zed"], "item_id": ["new"], "type": ["cart"], "ts": [T0 + 20 * DAY]}))
    m.save(tmp_path / "t.npz")
    back = load_recommender(tmp_path / "t.npz")
    users = np.arange(len(m.user_ids))
    np.testing.assert_array_equal(back.scores(users), m.scores(users))
    assert back.t_ref == m.t_ref and back.params == m.params
    assert back.recommend("nobody") == m.recommend("nobody")
    # and it keeps updating from where it was
    for model in (m, back):
        model.update(pd.DataFrame({"user_id": ["q"], "item_id": ["hot"], "type": ["view"], "ts": [T0 + 30 * DAY]}))
    np.testing.assert_array_equal(back.scores(users), m.scores(users))


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), "abc", "0"])
def test_bad_params(bad):
    with pytest.raises(ValueError):
        Trending(half_life_days=bad)
    with pytest.raises(ValueError):
        Trending(half_life=7)


def test_string_param_from_cli():
    assert Trending(half_life_days="2.5").params == {"half_life_days": 2.5}


class FakeTrial:
    def suggest_float(self, name, low, high, log=False):
        assert low < high and (not log or low > 0)
        return (low * high) ** 0.5 if log else (low + high) / 2


def test_search_space_builds_a_valid_model():
    params = Trending.search_space(FakeTrial())
    assert set(params) == {"half_life_days"}
    Trending(**params).fit(Interactions.from_frame(log()))
