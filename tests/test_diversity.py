"""Diversity: MMR re-ranking against hand-computed cases, intra-list diversity, and
``diversity`` through the library, the CLI, the API and ``evaluate recommenders`` on a real home
whose best sellers are one look in ten near-identical photos."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from stylesense.cli import app
from stylesense.errors import InvalidInput, NotReady
from stylesense.evaluation.metrics import intra_list_diversity
from stylesense.recommenders.diversity import candidate_count, check_diversity, mmr
from stylesense.serving.app import Settings, create_app
from stylesense.serving.keys import KeyStore

from recsys_fixtures import look_of, looks_shop

A, A2, B = np.array([1.0, 0.0]), np.array([1.0, 0.0]), np.array([0.0, 1.0])


def test_mmr_by_hand():
    scores, vectors = np.array([1.0, 0.9, 0.0]), np.stack([A, A2, B])
    # diversity 0.5 after "a": a twin gains 0.5 * 0.9 - 0.5 * 1 = -0.05, b gains 0.5 * 0 - 0 = 0
    assert mmr(scores, vectors, 3, 0.5).tolist() == [0, 2, 1]
    # diversity 0.1: the twin gains 0.9 * 0.9 - 0.1 = 0.71 > b's 0
    assert mmr(scores, vectors, 3, 0.1).tolist() == [0, 1, 2]
    assert mmr(scores, vectors, 3, 0.0).tolist() == [0, 1, 2]
    assert mmr(scores, vectors, 2, 1.0).tolist() == [0, 2]  # after the best, only unlikeness counts


def test_mmr_scales_scores_ties_and_ineligible_candidates():
    vectors = np.stack([A, A2, B, np.zeros(2)])  # the last has no photo: like nothing
    big = np.array([1000.0, 990.0, 900.0, -np.inf])  # another model's scale, same ranking
    assert mmr(big, vectors, 4, 0.5).tolist() == mmr(np.array([1.0, 0.9, 0.0, -np.inf]), vectors, 4, 0.5).tolist()
    assert 3 not in mmr(big, vectors, 4, 0.5).tolist()  # -inf is never picked
    assert mmr(np.array([2.0, 2.0, 1.0]), np.stack([A, B, B]), 3, 0.0).tolist() == [0, 1, 2]  # ties: earlier first
    assert mmr(np.array([1.0, 1.0]), np.stack([A, A2]), 5, 0.5).tolist() == [0, 1]  # k past the candidates
    assert len(mmr(np.zeros(0), np.zeros((0, 2)), 3, 0.5)) == 0
    with pytest.raises(InvalidInput):
        mmr(np.ones(2), np.ones((3, 2)), 2, 0.5)


def test_diversity_values_and_candidates():
    assert check_diversity("0.3") == 0.3 and check_diversity(1) == 1.0
    for bad in (-0.1, 1.5, float("nan"), "lots", None):
        with pytest.raises(InvalidInput):
            check_diversity(bad)
    assert (candidate_count(10), candidate_count(12), candidate_count(30)) == (50, 50, 90)


def test_intra_list_diversity_by_hand():
    vectors = np.stack([A, A2, B, np.zeros(2)])
    ranked = np.array([[0, 2, -1], [0, 1, -1], [0, 1, 2], [3, 0, -1]])
    ild = intra_list_diversity(ranked, vectors)
    assert ild[:3] == pytest.approx([1.0, 0.0, 2 / 3])  # [a, b]; twins; (1 + 1 + 0) / 3 pairs
    assert np.isnan(ild[3])  # one photographed item: no pair


@pytest.fixture
def shop(tmp_path):
    ss = looks_shop(tmp_path / "home")
    ss.behaviour.train("popular")
    return ss


def test_recommend_with_diversity_reaches_other_looks_and_keeps_scores(shop):
    plain = shop.behaviour.recommend("me", 6)
    assert {look_of(r.item_id) for r in plain} == {0}
    assert [r.item_id for r in shop.behaviour.recommend("me", 6, diversity=0.0)] == [r.item_id for r in plain]
    diverse = shop.behaviour.recommend("me", 6, diversity=0.6)
    assert diverse[0] == plain[0]  # the best is always first
    assert {look_of(r.item_id) for r in diverse} == {0, 1, 2}
    scores = {r.item_id: r.score for r in shop.behaviour.recommend("me", 30)}
    assert all(r.score == scores[r.item_id] for r in diverse)  # each keeps its model score
    vectors = shop.item_vectors([r.item_id for r in plain] + [r.item_id for r in diverse])
    codes = np.arange(12).reshape(2, 6)
    before, after = intra_list_diversity(codes, vectors)
    assert after > before + 0.3
    with pytest.raises(InvalidInput):
        shop.behaviour.recommend("me", 6, diversity=1.2)


def test_diversity_and_a_dislike_together(shop):
    shop.behaviour.add_event("me", "l1_p0", "dislike")
    recs = [r.item_id for r in shop.behaviour.recommend("me", 6, diversity=0.6)]
    assert "l1_p0" not in recs and not any(i.startswith("l1_") for i in recs)  # look 1 is lowered whole
    assert {look_of(i) for i in recs} == {0, 2}


def test_an_anonymous_session_takes_diversity_in_the_library_and_the_api(shop):
    """A session that viewed one product gets the best sellers (one look); at 0.6 it spans the
    looks, the same through POST /v1/sessions/recommend."""
    session = [("l2_p0", "view")]
    plain = [r.item_id for r in shop.behaviour.recommend_session(session, 6)]
    diverse = [r.item_id for r in shop.behaviour.recommend_session(session, 6, diversity=0.6)]
    assert {look_of(i) for i in plain} == {0} and {look_of(i) for i in diverse} == {0, 1, 2}
    assert diverse[0] == plain[0]
    c = TestClient(create_app(shop.home.root, Settings(threads=1)))
    key = {"X-API-Key": KeyStore(shop.store.engine).create("read")[0]}
    body = {"events": [{"item_id": "l2_p0", "type": "view"}], "k": 6, "diversity": 0.6}
    r = c.post("/v1/sessions/recommend", json=body, headers=key)
    assert r.status_code == 200, r.text
    assert [x["item_id"] for x in r.json()["items"]] == diverse
    assert c.post("/v1/sessions/recommend", json={**body, "diversity": 3}, headers=key).status_code == 422
    with pytest.raises(InvalidInput):
        shop.behaviour.recommend_session(session, 6, diversity=-1)


def test_diversity_needs_photos(tmp_path, shop):
    from stylesense.engine import StyleSense

    bare = StyleSense(tmp_path / "bare", threads=1)
    bare.behaviour.events.import_frame(shop.behaviour.events.frame().drop(columns="pk"))
    bare.behaviour.train("popular")
    assert len(bare.behaviour.recommend("me", 5)) == 5
    with pytest.raises(NotReady):
        bare.behaviour.recommend("me", 5, diversity=0.5)
    result = bare.behaviour.evaluate("stratified", ["popular"], k=5)
    assert result.models["popular"]["intra_list_diversity"] is None
    with pytest.raises(InvalidInput, match="photos"):
        bare.behaviour.evaluate("stratified", ["popular"], k=5, diversity=[0, 0.5])


def test_evaluate_varies_diversity(shop):
    """Seen items included, popularity gives every test shopper the same five look-0 twins
    (intra-list diversity about 0); at 0.6 their lists span the looks. Seen items excluded,
    lists differ per shopper and diversity also widens the catalogue they reach."""
    result = shop.behaviour.evaluate("stratified", ["popular"], k=5, diversity=[0, 0.6], exclude_seen=False)
    plain, diverse = result.models["popular"], result.models["popular diversity=0.6"]
    assert plain["intra_list_diversity"] < 0.1 and diverse["intra_list_diversity"] > 0.5
    assert diverse["users"] == plain["users"] and diverse["recall_at_k"] < plain["recall_at_k"]
    result = shop.behaviour.evaluate("stratified", ["popular"], k=5, diversity=[0, 0.6])
    plain, diverse = result.models["popular"], result.models["popular diversity=0.6"]
    assert diverse["intra_list_diversity"] > plain["intra_list_diversity"] and diverse["coverage"] > plain["coverage"]


def test_cli_and_api_take_diversity(shop):
    runner = CliRunner()
    home = str(shop.home.root)
    r = runner.invoke(app, ["--home", home, "recommend", "--user", "me", "-k", "6", "--diversity", "0.6", "--json"])
    assert r.exit_code == 0, r.output
    assert {look_of(x["item_id"]) for x in json.loads(r.output)} == {0, 1, 2}
    assert runner.invoke(app, ["--home", home, "recommend", "--user", "me", "--diversity", "2"]).exit_code == 2
    out = shop.home.root / "eval.json"
    r = runner.invoke(app, ["--home", home, "evaluate", "recommenders", "--protocol", "stratified", "--models",
                            "popular", "-k", "5", "--diversity", "0,0.3", "--json", str(out)])
    assert r.exit_code == 0, r.output
    rows = json.loads(out.read_text())["models"]
    assert set(rows) == {"popular", "popular diversity=0.3"}
    assert rows["popular diversity=0.3"]["intra_list_diversity"] > rows["popular"]["intra_list_diversity"]
    r = runner.invoke(app, ["--home", home, "evaluate", "recommenders", "--protocol", "stratified", "--models",
                            "popular", "--diversity", "0,lots"])
    assert r.exit_code == 2 and "not comma-separated numbers" in r.output

    c = TestClient(create_app(shop.home.root, Settings(threads=1)))
    key = {"X-API-Key": KeyStore(shop.store.engine).create("read")[0]}
    url = "/v1/users/me/recommendations"
    items = c.get(url, params={"k": 6, "diversity": 0.6}, headers=key).json()["items"]
    assert {look_of(x["item_id"]) for x in items} == {0, 1, 2}
    assert {look_of(x["item_id"]) for x in c.get(url, params={"k": 6}, headers=key).json()["items"]} == {0}
    assert c.get(url, params={"diversity": 1.5}, headers=key).status_code == 422
