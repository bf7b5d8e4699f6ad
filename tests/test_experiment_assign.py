"""Assignment to an experiment's arms: a stable hash of (experiment, shopper), the same in every
process (not Python's salted ``hash``), sticky for a shopper, recorded on first serve, and
splitting shoppers in the configured proportions."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections import Counter

import pytest

from stylesense.errors import Conflict, InvalidInput, NotFound, NotReady
from stylesense.experiments.assign import bucket, choose_arm

from recsys_fixtures import block_shop


def test_the_bucket_is_sha256_of_experiment_and_shopper_read_as_a_fraction():
    digest = hashlib.sha256(b"exp1\x00alice").digest()
    assert bucket("exp1", "alice") == int.from_bytes(digest[:8], "big") / 2**64
    assert 0 <= bucket("exp1", "alice") < 1
    assert bucket("exp1", "alice") != bucket("exp2", "alice")  # experiments are independent


def test_assignment_is_the_same_in_another_process_with_another_hash_seed():
    mine = [choose_arm("exp", f"u{n}", ("a", "b", "c"), (0.2, 0.3, 0.5)) for n in range(50)]
    code = ("from stylesense.experiments.assign import choose_arm; "
            "print(','.join(choose_arm('exp', f'u{n}', ('a', 'b', 'c'), (0.2, 0.3, 0.5)) for n in range(50)))")
    theirs = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            env={**os.environ, "PYTHONHASHSEED": "12345"}).stdout.strip().split(",")
    assert theirs == mine


@pytest.mark.parametrize("split", [(0.5, 0.5), (0.9, 0.1), (0.2, 0.3, 0.5)])
def test_shoppers_fall_into_the_arms_in_the_configured_proportions(split):
    arms = tuple("abc"[:len(split)])
    n = 20_000
    counts = Counter(choose_arm("proportions", f"shopper-{i}", arms, split) for i in range(n))
    for arm, share in zip(arms, split):
        # Within 4 standard errors of the binomial share: fails by chance about once in 15,000 runs.
        assert abs(counts[arm] / n - share) < 4 * (share * (1 - share) / n) ** 0.5, counts


@pytest.fixture
def shop(tmp_path):
    ss = block_shop(tmp_path / "home", 60, 40, 4, 6, seed=0)
    ss.behaviour.train("popular")
    ss.behaviour.train("itemknn", {"threads": 1})
    return ss


def test_serving_records_a_sticky_assignment_per_shopper(shop):
    experiment = shop.experiments.create("sticky", ["popular", "itemknn"], [50, 50])
    users = shop.behaviour.events.users()[:30]
    first = {u: shop.experiments.recommend_for(u, 5).arm for u in users}
    assert first == {u: choose_arm("sticky", u, experiment.arms, experiment.split) for u in users}
    assert set(first.values()) == {"popular", "itemknn"}
    again = {u: shop.experiments.recommend_for(u, 5).arm for u in reversed(users)}
    assert again == first
    assert shop.experiments.store.assignments("sticky") == first  # recorded once per shopper
    # A new process (a second API worker) sees the same records and assigns the same way.
    from stylesense.engine import StyleSense

    other = StyleSense(shop.home.root, threads=1)
    assert {u: other.experiments.recommend_for(u, 5).arm for u in users} == first


def test_the_recorded_arm_wins_over_the_hash(shop):
    shop.experiments.create("recorded", ["popular", "itemknn"])
    user = "b0_u0"
    hashed = choose_arm("recorded", user, ("popular", "itemknn"), (0.5, 0.5))
    other = "itemknn" if hashed == "popular" else "popular"
    from datetime import datetime, timezone

    assert shop.experiments.store.arm_of("recorded", user) is None
    shop.experiments.store.record_impression("recorded", other, other, user, ["x"], datetime.now(timezone.utc))
    assert shop.experiments.store.arm_of("recorded", user) == other
    served = shop.experiments.recommend_for(user, 5)
    assert served.arm == served.model == other


def test_a_failed_answer_records_no_assignment(shop):
    shop.experiments.create("failing", ["popular", "itemknn"])
    shop.behaviour.model_path("itemknn").unlink()  # the arm can no longer answer
    outcomes = []
    for user in shop.behaviour.events.users()[:20]:
        try:
            outcomes.append(shop.experiments.recommend_for(user, 3).arm)
        except NotReady:
            outcomes.append(None)
    assert None in outcomes and "popular" in outcomes
    assert set(shop.experiments.store.assignments("failing").values()) == {"popular"}


def test_each_arm_answers_with_its_own_model_and_an_explicit_model_is_outside_the_experiment(shop):
    shop.experiments.create("models", ["popular", "itemknn"])
    for user in shop.behaviour.events.users()[:10]:
        served = shop.experiments.recommend_for(user, 4)
        assert [r.item_id for r in served.items] == [r.item_id for r in shop.behaviour.recommend(user, 4, model=served.arm)]
        assert served.impression_id is not None and served.experiment == "models"
        named = shop.experiments.recommend_for(user, 4, model="popular")
        assert (named.arm, named.impression_id, named.experiment, named.model) == (None, None, None, "popular")
    assert len(shop.experiments.store.impressions(experiment="models")) == 10


def test_outside_a_running_experiment_the_served_model_answers_and_nothing_is_recorded(shop):
    served = shop.experiments.recommend_for("b1_u1", 3)
    assert (served.model, served.arm, served.impression_id) == ("itemknn", None, None)  # the last trained
    shop.experiments.create("over", ["popular", "itemknn"])
    shop.experiments.stop("over")
    assert shop.experiments.recommend_for("b1_u1", 3).arm is None
    assert shop.experiments.store.impressions() == []
    assert shop.experiments.get("over").status == "stopped" and shop.experiments.stop("over").status == "stopped"


def test_creating_is_checked(shop):
    with pytest.raises(InvalidInput, match="two or more distinct arms"):
        shop.experiments.create("one", ["popular"])
    with pytest.raises(InvalidInput, match="two or more distinct arms"):
        shop.experiments.create("twice", ["popular", "popular"])
    with pytest.raises(InvalidInput, match="unknown model 'nope'"):
        shop.experiments.create("x", ["popular", "nope"])
    with pytest.raises(NotReady, match="arm 'ease' has no trained model"):
        shop.experiments.create("x", ["popular", "ease"])
    with pytest.raises(InvalidInput, match="the split has 3 values for 2 arms"):
        shop.experiments.create("x", ["popular", "itemknn"], [1, 1, 1])
    with pytest.raises(InvalidInput, match="share above 0"):
        shop.experiments.create("x", ["popular", "itemknn"], [100, 0])
    with pytest.raises(InvalidInput, match="unknown metric"):
        shop.experiments.create("x", ["popular", "itemknn"], metric="likes")
    with pytest.raises(InvalidInput, match="experiment name"):
        shop.experiments.create("../x", ["popular", "itemknn"])
    with pytest.raises(NotFound, match="experiment 'missing' not found"):
        shop.experiments.report("missing")
    assert shop.experiments.create("x", ["popular", "itemknn"], [9, 1]).split == (0.9, 0.1)
    with pytest.raises(Conflict, match="'x' is running"):
        shop.experiments.create("y", ["popular", "itemknn"])
    shop.experiments.stop("x")
    with pytest.raises(Conflict, match="'x' exists already"):
        shop.experiments.create("x", ["popular", "itemknn"])
    assert [e.name for e in shop.experiments.list()] == ["x"]


def test_concurrent_creates_start_one_experiment_and_concurrent_serves_record_one_arm(shop):
    from concurrent.futures import ThreadPoolExecutor

    from stylesense.engine import StyleSense

    homes = [StyleSense(shop.home.root, threads=1) for _ in range(8)]  # as 8 API workers would

    def create(n: int) -> str:
        try:
            return homes[n].experiments.create(f"race{n}", ["popular", "itemknn"]).name
        except Conflict:
            return ""

    with ThreadPoolExecutor(8) as pool:
        started = [name for name in pool.map(create, range(8)) if name]
    assert len(started) == 1 and [e.name for e in shop.experiments.list() if e.running] == started
    with ThreadPoolExecutor(8) as pool:
        arms = set(pool.map(lambda n: homes[n].experiments.recommend_for("newcomer", 3).arm, range(8)))
    assert len(arms) == 1 and shop.experiments.store.assignments(started[0]) == {"newcomer": arms.pop()}
    assert len(shop.experiments.store.impressions(experiment=started[0])) == 8
