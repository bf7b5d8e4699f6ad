"""Ranker: each candidate source on a small log with a known answer, features that never see the
window they are labelled by (leakage), the learned ranking beating the repurchase heuristic in a
world where shoppers come back for other colours, a product imported after training recommended
without a retrain (library and home), live events, save/load, and parameter checks. Also the
``repurchase`` heuristic itself."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from recsys_fixtures import QUICK, block_events, block_of, reloaded
from stylesense.errors import InvalidInput
from stylesense.evaluation.splits import temporal_split
from stylesense.recommenders import Interactions, make_recommender
from stylesense.recommenders.ranker import Ranker
from stylesense.recommenders.ranking.candidates import Shopper, SourceParams, generate
from stylesense.recommenders.ranking.content import Catalogue, Content
from stylesense.recommenders.ranking.snapshot import DAY, Shoppers, Snapshot, before, log_end
from stylesense.recommenders.repurchase import Repurchase

T0 = 1_700_006_400  # a midnight (UTC): the worlds below are day-stamped, like H&M's log
WEEK = 7 * DAY
N_PRODUCTS, COLOURS, DIM = 24, 4, 16
PARAMS = {"threads": 1, "windows": 3, "window_days": 14, "rounds": 60, "min_leaf": 5, "candidates": 30,
          "params": {"als": {"factors": 8, "iterations": 5}}}


# -- a small fashion world ----------------------------------------------------------------------
def item(p: int, c: int) -> str:
    return f"p{p}_c{c}"


def catalogue(extra: dict[str, tuple[int, np.ndarray]] | None = None) -> Catalogue:
    """Products of COLOURS colours: one image direction per product (colours close to it),
    category = product % 4, group column ``product_code``."""
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((N_PRODUCTS, DIM)).astype(np.float32)
    ids, vecs, rows = [], [], []
    for p in range(N_PRODUCTS):
        for c in range(COLOURS):
            ids.append(item(p, c))
            vecs.append(centres[p] + 0.25 * rng.standard_normal(DIM).astype(np.float32))
            rows.append({"product_code": f"P{p}", "category": f"cat{p % 4}", "colour": f"col{c}"})
    for new_id, (p, vec) in (extra or {}).items():
        ids.append(new_id)
        vecs.append(vec)
        rows.append({"product_code": f"P{p}", "category": f"cat{p % 4}", "colour": "new"})
    attrs = pd.DataFrame(rows, index=ids)
    return Catalogue(ids, np.asarray(vecs, np.float32), attrs, group_column="product_code", version=len(ids))


def centre(p: int) -> np.ndarray:
    return np.asarray(catalogue().vectors[p * COLOURS : (p + 1) * COLOURS].mean(axis=0), np.float32)


def colours_world(n_users: int = 240, weeks: int = 16, seed: int = 0) -> pd.DataFrame:
    """Products launch a new colour every few weeks (colour 0 from the start). Each shopper
    buys, every other week or so, a product of their category in a colour on sale; one to three
    weeks later they usually come back for another colour of it, most often the newest. The
    repurchase heuristic (own items, then best sellers) cannot name those; the group source,
    with the item's age and sales, can."""
    rng = np.random.default_rng(seed)
    launch = {(p, c): 0 if c == 0 else 3 * c + p % 4 for p in range(N_PRODUCTS) for c in range(COLOURS)}
    rows = []
    for u in range(n_users):
        products = [p for p in range(N_PRODUCTS) if p % 4 == u % 4]
        for week in range(0, weeks, 2):
            if rng.random() < 0.3:
                continue
            day = T0 + (week * 7 + int(rng.integers(0, 7))) * DAY
            p = int(rng.choice(products))
            first = int(rng.choice([c for c in range(COLOURS) if launch[p, c] <= week]))
            rows.append((f"u{u}", item(p, first), "purchase", day))
            later = day + int(rng.integers(7, 21)) * DAY
            others = [c for c in range(COLOURS) if c != first and launch[p, c] <= (later - T0) // WEEK]
            if others and rng.random() < 0.8:
                newest = max(others, key=lambda c: launch[p, c])
                pick = newest if rng.random() < 0.7 else int(rng.choice(others))
                rows.append((f"u{u}", item(p, pick), "purchase", later))
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "type", "ts"])
    return frame.sort_values("ts", kind="stable").reset_index(drop=True)


def fit_world(events: pd.DataFrame, **params) -> Ranker:
    cat = catalogue()
    data = Interactions.from_frame(events, items=list(cat.vector_ids))
    return Ranker(**{**PARAMS, **params}).with_catalogue(cat).fit(data)


@pytest.fixture(scope="module")
def world():
    """(training events, test events of the last two weeks, the ranker fitted on training)."""
    train, test = temporal_split(colours_world(), test_days=14)
    return train, test, fit_world(train)


# -- candidate sources ----------------------------------------------------------------------------
def snapshot(events: pd.DataFrame, now: int, *, cat: Catalogue | None = None, shoppers: pd.DataFrame | None = None,
             models: tuple[str, ...] = (), n: int = 10) -> tuple[Snapshot, Interactions]:
    items = [] if cat is None else list(cat.vector_ids)
    data = Interactions.from_frame(events, items=items)
    content = Content.build(data.items, cat)
    table = Shoppers.build(data.users, shoppers)
    past = before(data, now)
    components = {m: make_recommender(m, **QUICK.get(m, {})).fit(past) for m in models}
    return Snapshot(past, now, content, table, components, n), data


def found_for(snap: Snapshot, data: Interactions, user: str, sources: tuple[str, ...], n: int = 10):
    u = data.user_index[user]
    shopper = Shopper(u, snap.history(u), snap.data.matrix[u], snap.now)
    return generate(snap, [shopper], sources, SourceParams(n, 30.0, 10, 0.9))[0]


def ids(data: Interactions, found, source: str) -> list[str]:
    return [str(data.items[i]) for i in found[source][0]]


def log(rows) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["user_id", "item_id", "type", "ts"])


def test_repurchase_source_ranks_own_items_by_decayed_weight():
    now = T0 + 100 * DAY
    events = log([("s", "old", "purchase", T0), ("s", "recent", "purchase", T0 + 90 * DAY),
                  ("s", "twice", "purchase", T0 + 60 * DAY), ("s", "twice", "purchase", T0 + 61 * DAY),
                  ("other", "theirs", "purchase", T0 + 95 * DAY), ("s", "later", "purchase", now + DAY)])
    snap, data = snapshot(events, now)
    got = ids(data, found_for(snap, data, "s", ("repurchase",)), "repurchase")
    assert got == ["twice", "recent", "old"]  # two purchases 40 days ago outweigh one 10 days ago; nothing after now


def test_group_source_offers_the_other_colours_of_bought_products():
    cat = catalogue()
    events = log([("s", item(3, 0), "purchase", T0), ("s", item(5, 1), "view", T0 + DAY),
                  ("x", item(9, 0), "purchase", T0)])
    snap, data = snapshot(events, T0 + 2 * DAY, cat=cat)
    got = ids(data, found_for(snap, data, "s", ("group",)), "group")
    # the bought product's colours (heavier: a purchase) first, then the viewed one's
    assert set(got[:COLOURS]) == {item(3, c) for c in range(COLOURS)}
    assert set(got[COLOURS:]) == {item(5, c) for c in range(COLOURS)}


def test_visual_and_new_sources_find_look_alikes_and_unsold_look_alikes():
    cat = catalogue()
    events = log([("s", item(7, 0), "view", T0), ("x", item(7, 1), "purchase", T0), ("x", item(2, 0), "purchase", T0)])
    snap, data = snapshot(events, T0 + DAY, cat=cat)
    found = found_for(snap, data, "s", ("visual", "new"), n=COLOURS)
    assert set(ids(data, found, "visual")) == {item(7, c) for c in range(COLOURS)}  # its own colours look alike
    assert set(ids(data, found, "new")) <= {item(7, c) for c in (2, 3)} | {i for i in cat.vector_ids if i[:3] != "p7_"}
    assert ids(data, found, "new")[:2] and set(ids(data, found, "new")[:2]) == {item(7, 2), item(7, 3)}  # unsold only


@pytest.mark.parametrize("model", ["itemknn", "als", "ease"])
def test_model_sources_recommend_the_shoppers_block(model):
    events = block_events(120, 48, 4, per_user=8, seed=2)
    events["ts"] = T0 + np.arange(len(events)) * 60
    snap, data = snapshot(events, T0 + 10**6, models=(model,))
    for user in ("b1_u1", "b2_u2", "b3_u3"):
        got = ids(data, found_for(snap, data, user, (model,), n=5), model)
        assert len(got) == 5 and all(block_of(i) == block_of(user) for i in got)


def test_gru4rec_source_names_the_next_item_of_a_sequence():
    """Shoppers walk the items of their block in cycle order: after items 0-3 of a block comes 4."""
    rng = np.random.default_rng(0)
    rows, t = [], T0
    for u in range(96):
        b, start = u % 4, int(rng.integers(8))
        for step in range(10):
            rows.append((f"u{u}", f"b{b}_i{(start + step) % 8}", "view", t))
            t += 60
    rows += [("probe", f"b2_i{k}", "view", t + k) for k in range(4)]
    small = {"hidden_size": 32, "embedding_size": 16, "epochs": 6, "batch_size": 16, "n_sample": 16,
             "learning_rate": 0.01, "dropout": 0.0, "threads": 1}
    data = Interactions.from_frame(log(rows))
    past = before(data, t + 10)
    snap = Snapshot(past, t + 10, Content.empty(data.n_items), Shoppers.empty(data.n_users),
                    {"gru4rec": make_recommender("gru4rec", **small).fit(past)}, 10)
    assert ids(data, found_for(snap, data, "probe", ("gru4rec",), n=3), "gru4rec")[0] == "b2_i4"


def test_popular_and_segment_sources_follow_recent_sales_and_age_bands():
    now = T0 + 30 * DAY
    rows = [(f"young{k}", "hoodie", "purchase", now - DAY) for k in range(5)]
    rows += [(f"old{k}", "cardigan", "purchase", now - 2 * DAY) for k in range(3)]
    rows += [(f"old{k}", "coat", "purchase", now - 25 * DAY) for k in range(4)]  # four, but long ago
    rows += [("young0", "cap", "purchase", now - 20 * DAY), ("old0", "cardigan", "purchase", now + DAY)]
    ages = pd.DataFrame({"age": [21, 22, 23, 24, 25, 61, 62, 63, 64]},
                        index=[*(f"young{k}" for k in range(5)), *(f"old{k}" for k in range(4))])
    snap, data = snapshot(log(rows), now, shoppers=ages)
    found = found_for(snap, data, "young1", ("popular", "segment"))
    assert ids(data, found, "popular")[:3] == ["hoodie", "cardigan", "coat"]
    assert ids(data, found, "segment")[0] == "hoodie"
    assert ids(data, found_for(snap, data, "old1", ("segment",)), "segment")[:2] == ["cardigan", "coat"]


def test_segment_falls_back_to_the_shoppers_main_category():
    cat = catalogue()
    now = T0 + 10 * DAY
    rows = [("s", item(0, 0), "purchase", T0), ("s", item(4, 0), "purchase", T0 + DAY)]  # both cat0
    rows += [(f"x{k}", item(8, 1), "purchase", now - DAY) for k in range(3)]  # cat0, selling
    rows += [(f"y{k}", item(1, 1), "purchase", now - DAY) for k in range(5)]  # cat1, selling more
    snap, data = snapshot(log(rows), now, cat=cat)
    got = ids(data, found_for(snap, data, "s", ("segment",)), "segment")
    assert got[0] == item(8, 1) and all(g.split("_")[0] in {f"p{p}" for p in range(0, N_PRODUCTS, 4)} for g in got)


# -- leakage --------------------------------------------------------------------------------------
def _auc(score: np.ndarray, label: np.ndarray) -> float:
    ranks = pd.Series(score).rank().to_numpy()
    pos = label.astype(bool)
    return float((ranks[pos].sum() - pos.sum() * (pos.sum() + 1) / 2) / (pos.sum() * (~pos).sum()))


def test_no_feature_of_a_training_window_sees_the_window():
    """Shoppers buy uniformly random items, so nothing known before a window predicts what they
    buy in it: a feature computed from the window's own events (sales that count the labels,
    "days since" a purchase made inside it) would single the bought items out. Every feature
    must stay near chance."""
    rng = np.random.default_rng(1)
    cat = catalogue()
    n = 4000
    events = pd.DataFrame({"user_id": [f"u{k}" for k in rng.integers(0, 150, n)],
                           "item_id": np.asarray(cat.vector_ids)[rng.integers(0, len(cat.vector_ids), n)],
                           "type": "purchase", "ts": np.sort(T0 + rng.integers(0, 70, n) * DAY)})
    data = Interactions.from_frame(events, items=list(cat.vector_ids))
    model = Ranker(**{**PARAMS, "candidates": 96}).with_catalogue(cat)
    model.fit(data)
    start = log_end(data.ts) - 14 * DAY
    rows, _ = model._window(data, start, start + 14 * DAY)
    assert rows.positives >= 50
    for j, name in enumerate(model.names):
        values = np.nan_to_num(rows.X[:, j], nan=-1e9)
        assert abs(_auc(values, rows.y) - 0.5) < 0.15, name


def test_training_windows_end_before_the_test_starts(world):
    train, test, model = world
    cutoff = int(pd.to_datetime(test["ts"], unit="s").min().timestamp()) if len(test) else None
    stops = [w["stop"] for w in model.report["windows"]]
    assert len(stops) == PARAMS["windows"] + 1 and max(stops) == log_end(train["ts"].to_numpy()) <= cutoff
    starts = [w["start"] for w in model.report["windows"]]
    assert stops[0] - starts[0] == 14 * DAY and all(b <= starts[0] for b in stops[1:])  # none overlaps validation


# -- what it learns -------------------------------------------------------------------------------
def _hits(model, test: pd.DataFrame, k: int = 10) -> int:
    users = [u for u in pd.unique(test["user_id"]) if u in model.user_index]
    top, _ = model.recommend_batch(np.array([model.user_index[u] for u in users]), k, exclude_seen=False)
    want = test.groupby("user_id")["item_id"].apply(set)
    return sum(len(want[u] & set(model.item_ids[row[row >= 0]].tolist())) for u, row in zip(users, top))


def test_ranker_learns_other_colours_and_beats_the_heuristic(world):
    train, test, model = world
    assert model.report["learned"] and len(model.report["rounds"]) == 5 and min(model.report["rounds"]) >= 1
    heuristic = Repurchase().fit(Interactions.from_frame(train, items=list(catalogue().vector_ids)))
    ranked, baseline = _hits(model, test), _hits(heuristic, test)
    assert ranked >= 2 * max(baseline, 5)
    top = list(model.feature_importances)[:8]
    assert any(name.startswith("group") for name in top), top
    assert model.report["windows"][0]["recall"]["group"] > model.report["windows"][0]["recall"]["popular"]


def test_reasons_name_the_colour_bought(world):
    _, _, model = world
    user = model.user_ids[0]
    for rec in model.recommend(user, 5):
        assert rec.reason is None or rec.reason.startswith(("another colour of", "looks like", "you bought", "selling"))
    assert any((r.reason or "").startswith("another colour of") for r in model.recommend(user, 5))


# -- new products ---------------------------------------------------------------------------------
def test_a_new_colour_imported_after_training_is_recommended_at_once(world):
    train, _, fitted = world
    model = reloaded(fitted, _tmp() / "ranker.npz")  # not the fixture's: add_items changes it
    user = train.iloc[-1]["user_id"]
    product = int(train[train["user_id"] == user].iloc[-1]["item_id"].split("_")[0][1:])
    new_vec = centre(product) + 0.05
    assert model.add_items(catalogue({"p_new_colour": (product, new_vec)})) == 1
    assert "p_new_colour" in model.item_ids.tolist()
    recs = [r.item_id for r in model.recommend(user, 10, exclude_seen=True)]
    assert "p_new_colour" in recs
    reason = next(r.reason for r in model.recommend(user, 10) if r.item_id == "p_new_colour")
    assert reason.startswith("another colour of p")
    assert model.add_items(catalogue({"p_new_colour": (product, new_vec)})) == 0  # known: nothing added
    back = reloaded(model, _tmp() / "again.npz")  # the grown universe survives a save
    users = np.arange(len(model.user_ids))
    np.testing.assert_array_equal(back.scores(users), model.scores(users))


def _tmp():
    import tempfile
    from pathlib import Path

    return Path(tempfile.mkdtemp(prefix="ranker-"))


def test_home_recommends_a_product_imported_after_training(tmp_path):
    """Through the home: train, then a new colour reaches the catalogue (store upsert, what an
    import does after embedding), and the next recommendation has it without a retrain."""
    from stylesense.catalog.store import Upsert
    from stylesense.engine import StyleSense

    ss = StyleSense(tmp_path / "home", threads=1)
    train, _ = temporal_split(colours_world(n_users=160), test_days=14)
    events = train.copy()
    events["ts"] = pd.to_datetime(events["ts"], unit="s", utc=True)
    ss.behaviour.events.import_frame(events)
    cat = catalogue()
    ss.store.upsert([Upsert(i, cat.attributes.loc[i].to_dict(), None, f"h{i}", v)
                     for i, v in zip(cat.vector_ids, cat.vectors)])
    model, _ = ss.behaviour.train("ranker", {**PARAMS, "params": json.dumps(PARAMS["params"])})
    assert model.feature_importances
    user = train.iloc[-1]["user_id"]
    product = int(train[train["user_id"] == user].iloc[-1]["item_id"].split("_")[0][1:])
    before_ids = [r.item_id for r in ss.behaviour.recommend(user, 10)]
    ss.store.upsert([Upsert("fresh_colour", {"product_code": f"P{product}", "category": f"cat{product % 4}",
                                             "colour": "new"}, None, "hfresh", centre(product) + 0.05)])
    after = ss.behaviour.recommend(user, 10)
    assert "fresh_colour" not in before_ids and "fresh_colour" in [r.item_id for r in after]


def test_wide_vectors_are_projected_and_new_ones_follow_the_same_projection():
    """Photos' vectors wider than MAX_DIM keep their neighbours in the projection, and a
    product added later lands next to its look-alike."""
    from stylesense.recommenders.ranking.content import MAX_DIM

    rng = np.random.default_rng(3)
    base = rng.standard_normal((400, 600)).astype(np.float32)
    ids = [f"i{k}" for k in range(400)]
    content = Content.build(np.asarray(ids), Catalogue(ids, base))
    assert content.projection.shape == (600, MAX_DIM) and content.vectors.shape == (400, MAX_DIM)
    np.testing.assert_allclose(np.linalg.norm(content.vectors, axis=1), 1.0, rtol=1e-5)
    twin = base[7] + 0.05 * rng.standard_normal(600).astype(np.float32)
    grown = content.extended(np.array([400]), np.array(["twin"]), Catalogue(["twin"], twin[None, :]))
    sims = grown.vectors @ grown.unit([400])[0]
    assert int(np.argsort(-sims)[1]) == grown.row[7]  # after itself, its look-alike
    with pytest.raises(InvalidInput):
        content.extended(np.array([400]), np.array(["x"]), Catalogue(["x"], np.ones((1, 5), np.float32)))


# -- real time, persistence, parameters ---------------------------------------------------------
def test_live_events_move_the_next_recommendation(world):
    _, _, fitted = world
    model = reloaded(fitted, _tmp() / "live.npz")
    before_recs = [r.item_id for r in model.recommend("walk-in", 10)]
    view = pd.DataFrame({"user_id": "walk-in", "item_id": [item(6, 0)], "type": "purchase", "ts": [T0 + 200 * DAY]})
    assert model.update(view) == 1
    after = [r.item_id for r in model.recommend("walk-in", 10)]
    assert after != before_recs and {after[0], after[1]} <= {item(6, c) for c in range(1, COLOURS)}
    back = reloaded(model, _tmp() / "live2.npz")
    assert [r.item_id for r in back.recommend("walk-in", 10)] == after


def test_saved_model_keeps_its_report_and_importances(world, tmp_path):
    _, _, model = world
    back = reloaded(model, tmp_path / "r.npz")
    assert back.report == model.report and back.feature_importances == model.feature_importances
    assert abs(sum(back.feature_importances.values()) - 1.0) < 1e-3


def test_fits_without_a_catalogue_and_without_enough_history():
    """No photos, no groups: the event sources alone. A log too short for any window falls back
    to fusing the sources' ranks."""
    events = block_events(60, 60, 3, per_user=6, seed=4)
    events["ts"] = T0 + np.arange(len(events))  # one day: no window has history before it
    model = Ranker(**QUICK["ranker"]).fit(Interactions.from_frame(events))
    assert not model.report["learned"] and not model.feature_importances
    recs = model.recommend(model.user_ids[0], 5)
    assert len(recs) == 5 and sum(block_of(r.item_id) == block_of(model.user_ids[0]) for r in recs) >= 3


@pytest.mark.parametrize("bad", [{"sources": "visual,nope"}, {"sources": "als,als"}, {"candidates": 0},
                                 {"window_days": -1}, {"visual_decay": 1.5}, {"params": {"bpr": {}}},
                                 {"params": "{not json"}, {"step_days": -2}, {"windows": 0}])
def test_bad_parameters_are_refused(bad):
    with pytest.raises(InvalidInput):
        make_recommender("ranker", **bad)


# -- the heuristic --------------------------------------------------------------------------------
def test_repurchase_heuristic_puts_own_items_first_latest_first_then_best_sellers():
    now = T0 + 20 * DAY
    rows = [("s", "a", "purchase", T0), ("s", "b", "purchase", T0 + DAY), ("s", "a", "purchase", T0 + 2 * DAY)]
    rows += [(f"x{k}", "hit", "purchase", now - DAY) for k in range(4)]
    rows += [(f"x{k}", "old_hit", "purchase", T0) for k in range(6)]
    rows += [("x0", "minor", "purchase", now - 2 * DAY)]
    model = Repurchase().fit(Interactions.from_frame(log(rows)))
    assert [r.item_id for r in model.recommend("s", 5, exclude_seen=False)] == ["a", "b", "hit", "minor", "old_hit"]
    assert [r.item_id for r in model.recommend("nobody", 2)] == ["hit", "minor"]
    model.update(log([("s", "old_hit", "view", now)]))
    assert model.recommend("s", 1, exclude_seen=False)[0].item_id == "old_hit"
    assert model.recommend("s", 1, exclude_seen=False)[0].reason == "you bought or viewed it before"
