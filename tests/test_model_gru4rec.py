"""GRU4Rec on logs with a known next item: users walk a cycle inside one block of items (item k is
followed by item k + 1 of the same block), so a sequence model must learn the transitions, not
just the block. Loss falls and the next item is found for every loss; fits are deterministic for
a seed; save/load keeps the scores; an update moves the next recommendation at once; sessions are
cut at pauses; bad parameters are refused."""

import numpy as np
import pandas as pd
import pytest
import torch

from recsys_fixtures import T0, block_of, item_id, sampled_search_space
from stylesense.atomic import load_npz
from stylesense.recommenders import Interactions
from stylesense.recommenders.base import FORMAT_VERSION, Recommender
from stylesense.recommenders.data import session_starts
from stylesense.recommenders.gru4rec import GRU4Rec, training_sequences

N_BLOCKS, PER_BLOCK = 4, 8
SMALL = {"hidden_size": 32, "embedding_size": 16, "epochs": 6, "batch_size": 16, "n_sample": 16,
         "learning_rate": 0.01, "dropout": 0.0, "threads": 1}


def cycle_events(n_users: int = 96, length: int = 10, seed: int = 0, pause: int = 60) -> pd.DataFrame:
    """Each user (``b{block}_u{k}``) views ``length`` items of their block in cycle order from a
    random start, ``pause`` seconds apart; users' walks are interleaved in time."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        b, start = u % N_BLOCKS, int(rng.integers(PER_BLOCK))
        for j in range(length):
            rows.append((f"b{b}_u{u}", item_id(b, (start + j) % PER_BLOCK), "view", T0 + u + j * pause))
    return pd.DataFrame(rows, columns=["user_id", "item_id", "type", "ts"]).sort_values("ts", kind="stable")


def next_of(item: str) -> str:
    b, k = block_of(item), int(item.split("_i")[1])
    return item_id(b, (k + 1) % PER_BLOCK)


def next_item_hit_rate(model: GRU4Rec) -> float:
    """Share of users whose top-1 (seen items allowed: cycles repeat) is their next cycle item."""
    users = np.arange(model.n_fitted_users)
    top, _ = model.recommend_batch(users, 1, exclude_seen=False)
    last = [model.item_ids[model.sequence(u)[-1]] for u in users]
    return float(np.mean([model.item_ids[t] == next_of(i) for t, i in zip(top[:, 0], last)]))


@pytest.fixture(scope="module")
def data() -> Interactions:
    return Interactions.from_frame(cycle_events())


@pytest.fixture(scope="module")
def fitted(data) -> GRU4Rec:
    return GRU4Rec(**SMALL).fit(data)


@pytest.mark.parametrize("loss", ["cross-entropy", "bpr-max", "full-cross-entropy"])
def test_loss_falls_and_the_next_item_is_learnt(data, loss):
    model = GRU4Rec(**{**SMALL, "loss": loss}).fit(data)
    assert len(model.loss_history) == SMALL["epochs"]
    assert model.loss_history[-1] < 0.5 * model.loss_history[0]
    assert next_item_hit_rate(model) >= 0.95


@pytest.mark.parametrize("loss", ["cross-entropy", "bpr-max"])
def test_in_batch_negatives_only_and_lanes_without_negatives_stay_finite(data, loss):
    model = GRU4Rec(**{**SMALL, "loss": loss, "n_sample": 0, "batch_size": 1, "epochs": 1}).fit(data)
    assert np.isfinite(model.loss_history).all()  # one lane: no negative at all, loss 0
    assert np.isfinite(model.scores(np.arange(4))).all()
    model = GRU4Rec(**{**SMALL, "loss": loss, "n_sample": 0, "batch_size": 32}).fit(data)
    assert next_item_hit_rate(model) >= 0.9


def test_default_params_learn_the_cycles_too(data):
    model = GRU4Rec(threads=1, epochs=4).fit(data)
    assert next_item_hit_rate(model) >= 0.95


def test_same_seed_gives_identical_scores_and_restores_torch_state(data, fitted):
    users = np.arange(data.n_users)
    threads = torch.get_num_threads()
    rng_state = torch.random.get_rng_state()
    again = GRU4Rec(**SMALL).fit(data)
    assert torch.equal(torch.random.get_rng_state(), rng_state)  # the caller's RNG is untouched
    assert torch.get_num_threads() == threads
    np.testing.assert_array_equal(again.scores(users), fitted.scores(users))
    assert again.loss_history == fitted.loss_history
    other = GRU4Rec(**{**SMALL, "seed": 1}).fit(data)
    assert not np.array_equal(other.scores(users), fitted.scores(users))


def test_training_and_scoring_with_two_threads(data, fitted):
    threads = torch.get_num_threads()
    few = Interactions.from_frame(cycle_events(n_users=8))  # 2 threads crawl on a busy machine
    two = GRU4Rec(**{**SMALL, "threads": 2, "epochs": 2}).fit(few)
    one = GRU4Rec(**{**SMALL, "threads": 1, "epochs": 2}).fit(few)
    assert two.loss_history[-1] < two.loss_history[0]
    np.testing.assert_allclose(two.loss_history, one.loss_history, rtol=1e-3)
    assert torch.get_num_threads() == threads
    # Scoring the one-thread model on two threads gives the same scores.
    users = np.arange(data.n_users)
    fitted_scores = fitted.scores(users)
    fitted.params["threads"] = 2
    try:
        np.testing.assert_allclose(fitted.scores(users), fitted_scores, rtol=1e-5, atol=1e-5)
        assert torch.get_num_threads() == threads
    finally:
        fitted.params["threads"] = 1


def test_scores_read_only_the_last_max_len_items(data):
    model = GRU4Rec(**{**SMALL, "max_len": 3}).fit(data)
    u = 5
    seq = model.sequence(u)
    assert len(seq) > 3
    np.testing.assert_array_equal(model._recent(u), seq[-3:])
    # Users scored in one padded batch get what they get alone.
    users = np.arange(data.n_users)
    batch = model.scores(users)
    alone = np.vstack([model.scores(np.array([v])) for v in users[:7]])
    np.testing.assert_allclose(batch[:7], alone, rtol=1e-5, atol=1e-5)


def test_save_load_round_trip_keeps_the_scores(data, fitted, tmp_path):
    model = GRU4Rec(**SMALL).fit(data)
    model.update(pd.DataFrame({"user_id": "newcomer", "item_id": [item_id(2, 0), item_id(2, 1)], "type": "view",
                               "ts": T0 + 10**6}))
    path = tmp_path / "gru4rec.npz"
    model.save(path)
    header, arrays = load_npz(path, FORMAT_VERSION, "model")
    assert header["model"] == "gru4rec"
    back = Recommender._load_into(GRU4Rec(**header["params"]), header, arrays)
    assert back.params == model.params and back.loss_history == model.loss_history
    users = np.arange(len(model.user_ids))
    np.testing.assert_array_equal(back.scores(users), model.scores(users))
    assert back.recommend("newcomer") == model.recommend("newcomer")
    assert back.similar_items(item_id(1, 3)) == model.similar_items(item_id(1, 3))


def test_real_time_update_moves_the_next_item_without_a_refit(data):
    model = GRU4Rec(**SMALL).fit(data)
    users = np.arange(data.n_users)
    before = model.scores(users)
    user = "b0_u0"  # walks block 0
    last = model.item_ids[model.sequence(model.user_index[user])[-1]]
    assert model.recommend(user, k=1, exclude_seen=False)[0].item_id == next_of(last)
    clicks = [item_id(3, k) for k in (2, 3, 4)]
    model.update(pd.DataFrame({"user_id": user, "item_id": clicks, "type": "view", "ts": T0 + 10**6 + np.arange(3)}))
    recs = model.recommend(user, k=1, exclude_seen=False)
    assert recs[0].item_id == item_id(3, 5)  # the next step of the cycle just walked
    after = model.scores(users)
    u = model.user_index[user]
    others = users != u
    np.testing.assert_array_equal(after[others], before[others])  # nobody else moved
    # A shopper first seen in update() gets the sequence model's answer, not popularity.
    model.update(pd.DataFrame({"user_id": "newcomer", "item_id": [item_id(1, 6), item_id(1, 7)], "type": "view",
                               "ts": T0 + 10**6}))
    assert model.recommend("newcomer", k=1)[0].item_id == item_id(1, 0)


def test_similar_items_are_output_embedding_cosines(fitted):
    similar = fitted.similar_items(item_id(2, 4), k=5)
    assert len(similar) == 5 and item_id(2, 4) not in [r.item_id for r in similar]
    assert all(-1.0 - 1e-5 <= r.score <= 1.0 + 1e-5 for r in similar)
    w = fitted.net.out.detach().numpy()
    i, j = fitted.data.item_index[item_id(2, 4)], fitted.data.item_index[similar[0].item_id]
    expected = w[i] @ w[j] / np.linalg.norm(w[i]) / np.linalg.norm(w[j])
    assert similar[0].score == pytest.approx(expected, abs=1e-5)


def test_sessions_are_cut_at_pauses_or_by_session_id():
    hour = 3600
    ev = pd.DataFrame(
        {
            "user_id": ["u"] * 6 + ["v"] * 3,
            "item_id": ["a", "b", "b", "c", "d", "e", "a", "c", "e"],
            "type": "view",
            # u: a, b, b (a repeat) | 3 h pause | c, d | 2 h pause | e;  v: one session.
            "ts": [0, 60, 70, 3 * hour + 70, 3 * hour + 80, 5 * hour + 80, 10, 20, 30],
        }
    )
    data = Interactions.from_frame(ev)

    def as_ids(items, offsets):
        return [[str(data.items[i]) for i in items[a:b]] for a, b in zip(offsets[:-1], offsets[1:])]

    sessions = as_ids(*training_sequences(data, "session", 1.0))  # repeats dropped, 1-item "e" left out
    assert sorted(sessions) == [["a", "b"], ["a", "c", "e"], ["c", "d"]]
    longer = as_ids(*training_sequences(data, "session", 2.5))  # the 2 h pause no longer cuts
    assert sorted(longer) == [["a", "b"], ["a", "c", "e"], ["c", "d", "e"]]
    timelines = as_ids(*training_sequences(data, "timeline", 1.0))
    assert sorted(timelines) == [["a", "b", "c", "d", "e"], ["a", "c", "e"]]
    windows = as_ids(*training_sequences(data, "timeline", 1.0, max_len=3))  # windows overlap by one
    assert sorted(windows) == [["a", "b", "c"], ["a", "c", "e"], ["c", "d", "e"]]
    # Session ids, where given, decide; events without one fall back to the pause rule.
    first = np.array([True, False, False, False, False])
    ts = np.array([0, 10, 20, 5 * hour, 5 * hour + 10])
    sid = np.array(["s1", "s1", "s2", "", ""], dtype=object)
    assert session_starts(first, ts, sid, 1.0).tolist() == [True, False, True, True, False]
    model = GRU4Rec(**{**SMALL, "train_on": "session", "epochs": 1}).fit(data)
    assert len(model.loss_history) == 1


def test_a_day_stamped_log_gets_one_session_per_day():
    day = 86_400
    ev = pd.DataFrame({"user_id": "u", "item_id": list("abcd"), "type": "purchase",
                       "ts": [0, 0, 3 * day, 3 * day]})
    data = Interactions.from_frame(ev)
    items, offsets = training_sequences(data, "session", GRU4Rec.defaults["session_gap_hours"])
    assert np.diff(offsets).tolist() == [2, 2]


def test_users_without_history_get_popularity_and_empty_logs_fit(data, fitted):
    scores = fitted.scores(np.arange(data.n_users))
    assert np.isfinite(scores).all()
    lonely = Interactions.from_frame(
        pd.DataFrame({"user_id": ["a", "b"], "item_id": ["x", "y"], "type": "view", "ts": [0, 1]})
    )
    model = GRU4Rec(**SMALL).fit(lonely)  # no sequence has a next item: nothing to train on
    assert model.loss_history == [] and model.scores(np.arange(2)).shape == (2, 2)


@pytest.mark.parametrize(
    "params",
    [
        {"loss": "hinge"},
        {"train_on": "day"},
        {"hidden_size": 0},
        {"embedding_size": -1},
        {"epochs": 1.5},
        {"batch_size": 0},
        {"n_sample": -1},
        {"max_len": 0},
        {"train_len": 1},
        {"logq": -1.0},
        {"learning_rate": 0.0},
        {"dropout": 1.0},
        {"embedding_dropout": -0.1},
        {"sample_alpha": float("nan")},
        {"session_gap_hours": 0},
        {"threads": 0},
        {"seed": -1},
        {"factors": 8},
    ],
)
def test_bad_params_raise(params):
    with pytest.raises(ValueError):
        GRU4Rec(**params)


def test_cli_style_string_params_are_coerced():
    model = GRU4Rec(hidden_size="64", dropout="0.2", loss="bpr-max")
    assert model.params["hidden_size"] == 64 and model.params["dropout"] == 0.2


def test_search_space_gives_valid_models():
    for params in sampled_search_space(GRU4Rec):
        assert set(params) <= set(GRU4Rec.defaults)
        GRU4Rec(**params)


def test_catalogue_items_nobody_touched_are_not_recommended():
    ev = cycle_events(n_users=48)
    data = Interactions.from_frame(ev, items=["never-1", "never-2"])
    model = GRU4Rec(**SMALL).fit(data)
    top, _ = model.recommend_batch(np.arange(data.n_users), 10)
    assert not np.isin(top, [data.item_index["never-1"], data.item_index["never-2"]]).any()
