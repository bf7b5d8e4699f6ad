"""Visual: recommendations from clustered item vectors, cold items, items without vectors,
recency, real-time updates and save/load."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from stylesense.recommenders import load_recommender
from stylesense.recommenders.data import Interactions
from stylesense.recommenders.visual import Visual

N_CLUSTERS, PER_CLUSTER, DIM = 5, 10, 32
SOLD = 5  # items 0-4 of each cluster have events; 5-9 are catalogue items nobody bought
T0 = 1_700_000_000


def cluster_of(item: str) -> int:
    return int(item[1]) if item.startswith("c") else -1


def catalogue() -> tuple[list[str], np.ndarray]:
    """5 clusters of 10 unit vectors around random centres."""
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((N_CLUSTERS, DIM))
    ids, vecs = [], []
    for c in range(N_CLUSTERS):
        for k in range(PER_CLUSTER):
            ids.append(f"c{c}_{k}")
            vecs.append(centres[c] + 0.15 * np.linalg.norm(centres[c]) * rng.standard_normal(DIM) / DIM**0.5)
    vecs = np.asarray(vecs, dtype=np.float32)
    return ids, vecs / np.linalg.norm(vecs, axis=1, keepdims=True)


def events() -> pd.DataFrame:
    """Shopper s{c}_{j} views sold items of cluster c; everyone also buys the photo-less
    best sellers "nophoto_0/1", the most popular items of all."""
    rows, t = [], T0
    for c in range(N_CLUSTERS):
        for j in range(4):
            for k in range(SOLD):
                rows.append((f"s{c}_{j}", f"c{c}_{k}", "view", t))
                t += 60
            for n in range(2):
                rows.append((f"s{c}_{j}", f"nophoto_{n}", "purchase", t))
                t += 60
    rows.append(("photoless_fan", "nophoto_0", "view", t))
    return pd.DataFrame(rows, columns=["user_id", "item_id", "type", "ts"])


def fit(**params) -> Visual:
    ids, vecs = catalogue()
    # the catalogue universe: unsold items get a column too
    data = Interactions.from_frame(events(), items=ids + ["nophoto_0", "nophoto_1"])
    return Visual(**params).with_vectors(ids, vecs).fit(data)


def view(user: str, items: list[str], t0: int = T0 + 10**6) -> pd.DataFrame:
    return pd.DataFrame({"user_id": user, "item_id": items, "type": "view", "ts": range(t0, t0 + len(items))})


def test_recent_cluster_on_top_including_cold_items():
    m = fit()
    for c in range(N_CLUSTERS):
        recs = m.recommend(f"s{c}_0", 5)
        assert [cluster_of(r.item_id) for r in recs] == [c] * 5
        # the user has seen all sold items of c: these are items nobody ever bought
        assert all(int(r.item_id.split("_")[1]) >= SOLD for r in recs)
        assert recs[0].reason and recs[0].reason.startswith("looks like c")
        assert recs[0].reason.endswith(" you viewed")
        liked = recs[0].reason.split()[2]
        assert cluster_of(liked) == c and liked in set(m.item_ids[m.history[m.user_index[f's{c}_0']].indices])


def test_items_without_vectors_are_never_recommended():
    m = fit()
    nophoto = np.array([not i.startswith("c") for i in m.item_ids])
    assert nophoto.sum() == 2 and m.popularity[nophoto].max() == -np.inf
    m.update(view("browser", ["c0_0", "c3_4"]))  # has none of the photo-less items
    top, _ = m.recommend_batch(np.arange(len(m.user_ids)), k=len(m.item_ids))
    assert (top[m.user_index["browser"]] >= 0).sum() == N_CLUSTERS * PER_CLUSTER - 2
    assert not np.isin(top[top >= 0], np.flatnonzero(nophoto)).any()
    # a shopper whose only item has no photo: popularity among items with a vector
    fan = m.recommend("photoless_fan", 60)
    assert len(fan) == N_CLUSTERS * PER_CLUSTER and all(r.item_id.startswith("c") for r in fan)
    assert fan[0].score == 4.0 and cluster_of(fan[-1].item_id) >= 0
    # unknown shopper (cold start)
    assert all(r.item_id.startswith("c") for r in m.recommend("stranger", 60))
    assert m.similar_items("nophoto_0") == []
    assert all(r.item_id.startswith("c0") for r in m.similar_items("c0_3", 9))


def test_real_time_update_moves_to_the_new_cluster():
    m = fit()
    assert cluster_of(m.recommend("s0_1", 1)[0].item_id) == 0
    m.update(view("s0_1", ["c3_0", "c3_1", "c3_2"]))
    # weights: the 3 new ones 1 + .8 + .64 against .8^3 + ... + .8^7 for the 5 older ones
    assert [cluster_of(r.item_id) for r in m.recommend("s0_1", 5)] == [3] * 5
    # and a shopper the model has never seen, from their first view on
    m.update(view("walk_in", ["c2_9"]))
    assert [cluster_of(r.item_id) for r in m.recommend("walk_in", 9)] == [2] * 9


def test_recency_weighting_matters():
    base = fit()
    # six items of cluster 1 long ago, then two of cluster 2
    history = view("h", [f"c1_{k}" for k in range(6)] + ["c2_0", "c2_1"])
    answers = {}
    for params in ({"recent": 2}, {"recent": 10, "decay": 1.0}, {"recent": 10, "decay": 0.3}):
        m = fit(pooling="mean", **params)
        m.update(history)
        answers[tuple(sorted(params.items()))] = cluster_of(m.recommend("h", 1)[0].item_id)
    assert answers == {
        (("recent", 2),): 2,  # only the last two count
        (("decay", 1.0), ("recent", 10)): 1,  # equal weights: six beat two
        (("decay", 0.3), ("recent", 10)): 2,  # 1 + .3 against .09 + .027 + ...
    }
    assert base.recent_items(base.user_index["s0_0"])[0].tolist() == [
        base.data.item_index[f"c0_{k}"] for k in reversed(range(SOLD))
    ]


def test_max_pooling_follows_the_newest_taste_and_keeps_the_old_one():
    history = view("h", [f"c1_{k}" for k in range(6)] + ["c2_0", "c2_1"])
    tops = {}
    for pooling in ("mean", "max"):
        m = fit(pooling=pooling)
        m.update(history)
        tops[pooling] = [cluster_of(r.item_id) for r in m.recommend("h", 10)]
    assert tops["mean"][0] == 1  # six older views outweigh two new ones in the mean vector
    assert tops["max"][0] == 2  # the newest view leads ...
    assert {1, 2} <= set(tops["max"])  # ... and the older taste is still served
    with pytest.raises(ValueError, match="pooling"):
        Visual(pooling="median")


def test_repeated_views_count_once_at_their_latest_position():
    m = fit(recent=2)
    m.update(view("r", ["c1_0", "c4_0", "c1_0"]))
    items, w = m.recent_items(m.user_index["r"])
    assert [m.item_ids[i] for i in items] == ["c1_0", "c4_0"]
    np.testing.assert_allclose(w, [1.0, 0.8])


def test_fit_without_vectors_is_a_clear_error():
    data = Interactions.from_frame(events())
    with pytest.raises(ValueError, match="with_vectors"):
        Visual().fit(data)
    ids, vecs = catalogue()
    with pytest.raises(ValueError, match="shape"):
        Visual().with_vectors(ids[:3], vecs)
    with pytest.raises(ValueError, match="duplicate"):
        Visual().with_vectors(ids[:2] + ids[:1], vecs[:3])
    with pytest.raises(ValueError, match="none of the items"):
        Visual().with_vectors(["elsewhere"], vecs[:1]).fit(data)


def test_vectors_are_aligned_by_id_not_by_position():
    ids, vecs = catalogue()
    order = np.random.default_rng(1).permutation(len(ids))
    shuffled = fit()
    plain = Visual().with_vectors([ids[i] for i in order] + ["not_in_data"], np.vstack([vecs[order], vecs[:1]]))
    plain.fit(shuffled.data)
    np.testing.assert_array_equal(plain.vectors, shuffled.vectors)
    np.testing.assert_array_equal(plain.vector_items, shuffled.vector_items)
    assert shuffled.data.items[shuffled.vector_items].tolist() == ids
    np.testing.assert_allclose(shuffled.vectors, vecs, rtol=1e-6)


def test_save_load_round_trip(tmp_path):
    m = fit(recent=4, decay=0.5)
    m.update(view("s2_3", ["c4_1", "c4_2"]))
    m.update(view("walk_in", ["c1_8"]))
    m.save(tmp_path / "v.npz")
    with np.load(tmp_path / "v.npz") as f:
        assert f["state_vectors"].dtype == np.float32
    back = load_recommender(tmp_path / "v.npz")
    users = np.arange(len(m.user_ids))
    np.testing.assert_array_equal(back.scores(users), m.scores(users))
    np.testing.assert_array_equal(back.vectors, m.vectors)
    np.testing.assert_array_equal(back.vector_items, m.vector_items)
    assert back.recommend("walk_in") == m.recommend("walk_in")
    assert back.recommend("stranger") == m.recommend("stranger")
    assert back.similar_items("c3_3") == m.similar_items("c3_3")


@pytest.mark.parametrize("bad", [{"recent": 0}, {"recent": 2.5}, {"decay": 0}, {"decay": 1.5},
                                 {"decay": "x"}, {"k": 3}])
def test_bad_params(bad):
    with pytest.raises(ValueError):
        Visual(**bad)


class FakeTrial:
    def suggest_float(self, name, low, high, log=False):
        assert low < high and (not log or low > 0)
        return (low + high) / 2

    def suggest_int(self, name, low, high, log=False):
        assert low < high and (not log or low > 0)
        return (low + high) // 2

    def suggest_categorical(self, name, choices):
        return choices[-1]


def test_search_space_builds_a_valid_model():
    params = Visual.search_space(FakeTrial())
    assert set(params) == {"recent", "decay", "pooling"}
    fit(**params)
