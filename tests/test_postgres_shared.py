"""Two machines on one PostgreSQL database: two home folders with the same database URL share
the catalogue, the events, the API keys and the trained models. A model trained on one is
served by the other, a retrain reaches it on its next request, and live events recorded on
either are folded into both."""

from pathlib import Path

from stylesense.engine import StyleSense
from stylesense.serving.keys import KeyStore

from recsys_fixtures import block_events


def test_a_model_trained_on_one_machine_is_served_by_the_other(tmp_path: Path, fresh_database: str) -> None:
    a = StyleSense.init(tmp_path / "machine-a", database_url=fresh_database)
    b = StyleSense.init(tmp_path / "machine-b", database_url=fresh_database)
    try:
        a.put_item("shirt-1", {"articleType": "Tshirts"})
        assert [it.item_id for it in b.store.items()] == ["shirt-1"]

        events = block_events(n_users=80, n_items=40, per_user=6, seed=1)
        assert a.behaviour.events.import_frame(events).inserted == len(events)
        assert b.behaviour.events.count() == len(events)

        assert b.behaviour.trained() == []
        a.behaviour.train("itemknn")
        assert b.behaviour.trained() == ["itemknn"]
        user = events["user_id"].iloc[0]
        served_by_a = [r.item_id for r in a.behaviour.recommend(user, 5, model="itemknn")]
        served_by_b = [r.item_id for r in b.behaviour.recommend(user, 5)]  # b's default: the newest model
        assert served_by_b == served_by_a and len(served_by_b) == 5
        assert (tmp_path / "machine-b" / "recommenders" / "itemknn.npz").is_file()  # b's local copy

        # a live event on b reaches a's model through the shared log (fold-in)
        newcomer_item = served_by_a[0]
        b.behaviour.add_event("newcomer", newcomer_item, "purchase")
        assert a.behaviour.recommend("newcomer", 3, model="itemknn")

        # a retrain on a, with other parameters, is what b serves next
        a.behaviour.train("popular")
        a.behaviour.train("itemknn", {"neighbours": 5})
        assert b.behaviour.model("itemknn").params["neighbours"] == 5
        assert set(b.behaviour.trained()) == {"itemknn", "popular"}

        key, _ = KeyStore(a.store.engine).create("read", name="web")
        assert KeyStore(b.store.engine).authenticate(key).name == "web"

        # an experiment started on b between models trained on a is served by a
        b.experiments.create("knn-vs-popular", ["itemknn", "popular"])
        served = a.experiments.recommend_for(user, 3)
        assert served.experiment == "knn-vs-popular" and served.arm in ("itemknn", "popular")
        arms = {row.arm: row.impressions for row in b.experiments.report("knn-vs-popular").arms}
        assert arms[served.arm] == 1 and sum(arms.values()) == 1
    finally:
        a.store.engine.dispose()
        b.store.engine.dispose()
