"""Gorse's data model over the library (stylesense.gorse) and shoppers' profiles
(stylesense.events.users): items without photos, feedback types, paging, deletion, category
filters, the popular answer before any model is trained, neighbours and sessions."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from stylesense.catalog.filters import Filters
from stylesense.catalog.store import Upsert
from stylesense.engine import StyleSense
from stylesense.errors import InvalidInput, NotFound, NotReady
from stylesense.events.users import User, UserStore, label_problem
from stylesense.gorse import Feedback, Gorse, GorseItem, parse_duration, parse_time

T0 = datetime(2024, 2, 1, tzinfo=timezone.utc)


@pytest.fixture
def ss(tmp_path) -> StyleSense:
    """A home with two photographed catalogue items (CSV-like metadata), no events."""
    ss = StyleSense(tmp_path / "home", threads=1)
    feats = np.random.default_rng(0).standard_normal((2, 16)).astype(np.float32)
    ss.store.upsert([Upsert(f"p{i}", {"articleType": "Bags", "price": 10.0 + i}, None, f"h{i}", feats[i])
                     for i in range(2)])
    ss.sync_index()
    return ss


def shoes_and_bags(g: Gorse) -> None:
    """Six Gorse items without photos (odd ones shoes), and feedback that makes g1 and g3 the
    most popular: every shopper starred them."""
    g.insert_items([GorseItem(f"g{i}", categories=["Shoes" if i % 2 else "Bags"], comment=f"item {i}")
                    for i in range(6)])
    g.insert_feedback([Feedback("star", f"u{u}", item, T0 + timedelta(minutes=u * 10 + j))
                       for u in range(4) for j, item in enumerate(["g1", "g3", "g2" if u % 2 else "g4"])])


def test_feedback_types_default_to_the_event_types_with_gorse_aliases_and_are_configurable(ss):
    g = Gorse(ss)
    types = g.feedback_types()
    assert types["star"] == "like" and types["read"] == "view" and types["purchase"] == "purchase"
    with pytest.raises(InvalidInput, match="unknown feedback type 'buy'.*gorse_feedback_types"):
        g.event_type("buy")
    g.set_feedback_types({"buy": "purchase", "star": "rating"})
    again = Gorse(StyleSense(ss.home.root))  # the mapping is the home's, in its config
    assert again.event_type("buy") == "purchase" and again.event_type("star") == "rating"
    g.set_feedback_types({"star": None})
    assert g.event_type("star") == "like"
    with pytest.raises(InvalidInput, match="not an event type"):
        g.set_feedback_types({"buy": "purchse"})
    with pytest.raises(InvalidInput, match="1 to 32"):
        g.set_feedback_types({"": "view"})


def test_feedback_is_stored_all_or_none_once_and_gives_shoppers_profiles(ss):
    g = Gorse(ss)
    batch = [Feedback("star", "u1", "g1", T0), Feedback("read", "u2", "p0", T0, value=2.5)]
    with pytest.raises(InvalidInput, match="unknown feedback type 'stars'"):
        g.insert_feedback([*batch, Feedback("stars", "u3", "g1", T0)])
    with pytest.raises(InvalidInput, match="whitespace"):
        g.insert_feedback([*batch, Feedback("star", " u3", "g1", T0)])
    with pytest.raises(InvalidInput, match="finite"):
        g.insert_feedback([*batch, Feedback("star", "u3", "g1", T0, value=float("nan"))])
    assert ss.behaviour.events.count() == 0 and g.users.page(None, 10)[0] == []
    assert g.insert_feedback(batch) == 2
    assert g.insert_feedback(batch) == 2 and ss.behaviour.events.count() == 2  # a retry stores nothing twice
    stored = {(e.user_id, e.type, e.value) for e in ss.behaviour.events.events()}
    assert stored == {("u1", "like", 0.0), ("u2", "view", 2.5)}
    assert [u.user_id for u in g.users.page(None, 10)[0]] == ["u1", "u2"]
    g.insert_feedback([Feedback("view", "u9", "g1")])  # no time: now
    assert abs(ss.behaviour.events.events(user_id="u9")[0].ts - datetime.now(timezone.utc)) < timedelta(minutes=1)


def test_feedback_lists_page_by_cursor_and_read_back_with_the_type_asked_for(ss):
    g = Gorse(ss)
    g.insert_feedback([Feedback("star" if i % 2 else "view", f"u{i % 3}", f"g{i}", T0 + timedelta(seconds=i))
                       for i in range(7)])
    seen, cursor, pages = [], "", 0
    while True:
        page, cursor = g.feedback(cursor=cursor, n=3)
        seen += page
        pages += 1
        if not cursor:
            break
    assert pages == 3 and [f.item_id for f in seen] == [f"g{i}" for i in range(7)]
    assert {f.feedback_type for f in seen} == {"like", "view"}  # an event's own name, a Gorse type too
    starred = g.feedback(feedback_type="star")[0]
    assert [f.item_id for f in starred] == ["g1", "g3", "g5"] and {f.feedback_type for f in starred} == {"star"}
    assert [f.item_id for f in g.feedback(user_id="u1")[0]] == ["g1", "g4"]
    assert g.feedback(user_id="u1", item_id="g4")[0][0].to_dict() == {
        "FeedbackType": "view", "UserId": "u1", "ItemId": "g4", "Value": 0.0, "Timestamp": "2024-02-01T00:00:04Z",
        "Updated": "2024-02-01T00:00:04Z", "Labels": None, "Comment": ""}
    with pytest.raises(InvalidInput, match="cursor"):
        g.feedback(cursor="not-a-cursor", n=3)
    with pytest.raises(InvalidInput, match="n must be"):
        g.feedback(n=0)


def test_deleting_feedback_and_users(ss):
    g = Gorse(ss)
    g.insert_feedback([Feedback("star", "u1", "g1", T0), Feedback("view", "u1", "g1", T0),
                       Feedback("view", "u1", "g2", T0), Feedback("view", "u2", "g1", T0)])
    assert g.delete_feedback("u1", "g1", "star") == 1
    assert g.delete_feedback("u1", "g1") == 1 and g.delete_feedback("u1", "g1") == 0
    g.users.upsert([User("u1", ["vip"], "a regular")])
    assert g.delete_user("u1") == 1 and g.delete_user("u1") == 0
    assert [e.user_id for e in ss.behaviour.events.events()] == ["u2"]
    with pytest.raises(NotFound, match="user u1 not found"):
        g.users.get("u1")


def test_items_without_photos_are_catalogue_items_recommended_but_not_searched(ss):
    g = Gorse(ss)
    g.insert_items([GorseItem("g1", categories=["Shoes", "Sale"], timestamp=T0, labels={"brand": "Acme", "size": {"eu": 40}},
                              comment="a shoe")])
    back = g.item("g1")
    assert back == GorseItem("g1", False, ["Shoes", "Sale"], T0, {"brand": "Acme", "size": {"eu": 40}}, "a shoe")
    assert ss.item("g1").attrs["labels.brand"] == "Acme"  # object labels are filterable columns
    assert [it.item_id for it in ss.matching_items(Filters.parse(["labels.brand=acme"]))] == ["g1"]
    with pytest.raises(NotFound):
        ss.search(item="g1")  # no photo: not in the image index
    assert [h.item_id for h in ss.search(item="p0")] == ["p1"]

    # A Gorse write on a photographed item keeps its photo, features and other columns.
    g.insert_items([GorseItem("p0", categories=["Bags"], labels=["leather"])])
    assert ss.item("p0").attrs == {"articleType": "Bags", "price": 10.0, "categories": ["Bags"], "comment": "",
                                   "labels": ["leather"]}
    assert [h.item_id for h in ss.search(item="p1")] == ["p0"]
    g.insert_items([GorseItem("p0", is_hidden=True)])  # replaces the Gorse fields, hides it
    assert "labels" not in ss.item("p0").attrs and g.item("p0").is_hidden
    assert ss.search(item="p1") == []

    g.patch_item("g1", comment="on sale", labels=["new"])
    assert g.item("g1").comment == "on sale" and g.item("g1").labels == ["new"] and g.item("g1").categories == ["Shoes", "Sale"]
    assert "labels.brand" not in ss.item("g1").attrs
    g.set_category("g1", "Sale", False)
    g.set_category("g1", "Boots", True)
    g.set_category("g1", "Boots", True)
    assert g.item("g1").categories == ["Shoes", "Boots"]
    assert g.delete_item("g1") == 1 and g.delete_item("g1") == 0
    with pytest.raises(NotFound, match="item g1 not found"):
        g.item("g1")


def test_items_are_checked_all_before_any_is_written(ss):
    g = Gorse(ss)
    bad = [GorseItem("g1"), GorseItem("g2", labels=["a", 1])]
    with pytest.raises(InvalidInput, match="only strings or only finite numbers"):
        g.insert_items(bad)
    with pytest.raises(InvalidInput, match="categories"):
        g.insert_items([GorseItem("g1"), GorseItem("g3", categories=[""])])
    with pytest.raises(InvalidInput, match="'='"):
        g.insert_items([GorseItem("g1", labels={"a=b": "c"})])
    assert [it.item_id for it in ss.items()] == ["p0", "p1"]
    with pytest.raises(NotFound):
        g.patch_item("nope", comment="x")


def test_item_pages(ss):
    g = Gorse(ss)
    g.insert_items([GorseItem(f"g{i}") for i in range(5)])
    page, cursor = g.items("", 4)
    rest, end = g.items(cursor, 4)
    assert [i.item_id for i in page + rest] == ["p0", "p1", "g0", "g1", "g2", "g3", "g4"] and end == ""
    with pytest.raises(InvalidInput):
        g.items("garbage", 4)


def test_recommendations_before_any_model_are_the_popular_items_in_the_category(ss):
    g = Gorse(ss)
    assert g.recommend("u1") == []  # no events: nothing is popular yet
    shoes_and_bags(g)
    assert [r.item_id for r in g.recommend("new")][:2] == ["g1", "g3"]
    assert {r.item_id for r in g.recommend("new", 10, categories=["Bags"])} <= {"g0", "g2", "g4"}
    assert [r.item_id for r in g.recommend("new", 1, offset=1)] == ["g3"]
    assert g.recommend("new", categories=["Hats"]) == []
    assert "g1" not in [r.item_id for r in g.recommend("u0")]  # what the shopper has is left out
    g.insert_items([GorseItem("g1", is_hidden=True, categories=["Shoes"])])
    assert "g1" not in [r.item_id for r in g.recommend("new")]
    with pytest.raises(InvalidInput, match="offset"):
        g.recommend("u1", 0)
    with pytest.raises(NotReady):
        g.neighbors("g1")  # neighbours need a model


def test_recommendations_by_the_trained_model_filter_by_category_and_write_back(ss):
    g = Gorse(ss)
    shoes_and_bags(g)
    ss.behaviour.train("itemknn")
    shoes = g.recommend("u0", 10, categories=["Shoes"])
    assert shoes and {r.item_id for r in shoes} <= {"g1", "g3", "g5"}

    before = ss.behaviour.events.count()
    recs = g.recommend("u0", 2, write_back_type="read", write_back_delay=timedelta(minutes=10))
    written = ss.behaviour.events.events(after_pk=ss.behaviour.events.max_pk() - len(recs))
    assert ss.behaviour.events.count() == before + len(recs)
    assert [e.item_id for e in written] == [r.item_id for r in recs] and {e.type for e in written} == {"view"}
    assert written[0].ts > datetime.now(timezone.utc) + timedelta(minutes=9)
    with pytest.raises(InvalidInput, match="unknown feedback type"):
        g.recommend("u0", write_back_type="seen")
    ss.remove_items([f"g{i}" for i in range(6)])  # now no item has categories: none is in one
    assert g.recommend("u0", categories=["Shoes"]) == []


def test_neighbours_and_session_recommendations(ss):
    g = Gorse(ss)
    shoes_and_bags(g)
    ss.behaviour.train("itemknn")
    near = g.neighbors("g1", 3)
    assert near[0].item_id == "g3" and "g1" not in [r.item_id for r in near]
    assert g.neighbors("p0") == []  # in the catalogue, unknown to the model: no neighbours yet
    with pytest.raises(NotFound, match="item nope not found"):
        g.neighbors("nope")
    session = g.session_recommend([Feedback("star", "", "g1"), Feedback("view", "", "nope")], 3)
    assert session[0].item_id == "g3" and {"g1", "nope"}.isdisjoint(r.item_id for r in session)
    assert ss.behaviour.events.count() == 12  # a session stores nothing
    assert all(r.item_id in {"g0", "g2", "g4"} for r in g.session_recommend([Feedback("star", "", "g1")], 3,
                                                                             categories=["Bags"]))
    with pytest.raises(InvalidInput, match="unknown feedback type"):
        g.session_recommend([Feedback("stars", "", "g1")])


def test_user_profiles(ss):
    users = UserStore(ss.store.engine)
    assert users.upsert([User("b", {"age": 30, "tags": ["x"]}, "hi"), User("a"), User("c", subscribe=["Shoes"])]) == 3
    assert users.get("b") == User("b", {"age": 30, "tags": ["x"]}, "hi")
    users.upsert([User("b", ["replaced"])])
    assert users.get("b") == User("b", ["replaced"])
    assert users.patch("b", comment="patched").labels == ["replaced"]
    assert users.get("b").comment == "patched"
    first, after = users.page(None, 2)
    rest, end = users.page(after, 2)
    assert [u.user_id for u in first + rest] == ["a", "b", "c"] and end is None
    assert users.ensure(["a", "d"]) == 1 and users.get("d") == User("d")
    assert users.delete("d") and not users.delete("d")
    with pytest.raises(NotFound):
        users.patch("d", comment="x")
    with pytest.raises(InvalidInput, match="labels of user 'e'"):
        users.upsert([User("a", ["ok"]), User("e", [True])])
    assert users.get("a") == User("a")  # one bad profile stores none
    with pytest.raises(InvalidInput, match="a page holds"):
        users.page(None, 0)


@pytest.mark.parametrize("labels, ok", [
    (None, True), ("x", True), (3.5, True), (["a", "b"], True), ([1, 2.5], True), ([], True),
    ({"a": {"b": ["c"]}, "n": 1}, True), (["a", 1], False), ([True], False), (True, False),
    ({"a": [{"b": 1}]}, False), (float("nan"), False),
])
def test_labels_follow_gorses_rule(labels, ok):
    assert (label_problem(labels) is None) is ok


def test_times_and_durations():
    assert parse_time("") is None and parse_time(None) is None
    assert parse_time("2024-02-01") == T0 == parse_time("2024-02-01T01:00:00+01:00") == parse_time("1706745600")
    assert parse_time("2024-02-01T00:00:00Z") == T0
    with pytest.raises(InvalidInput, match="ISO 8601"):
        parse_time("yesterday")
    assert parse_duration("1h30m") == timedelta(minutes=90) and parse_duration("-5s") == timedelta(seconds=-5)
    assert parse_duration("") == timedelta(0) == parse_duration("0") and parse_duration("1.5ms") == timedelta(microseconds=1500)
    for bad in ("10", "5 m", "1d", "h"):
        with pytest.raises(InvalidInput, match="Go duration"):
            parse_duration(bad)


def test_concurrent_first_feedback_of_one_new_shopper_makes_one_profile(ss):
    """Requests naming the same new shopper at once (the bench saw UNIQUE errors as 500s)."""
    import threading

    stores = [UserStore(ss.store.engine) for _ in range(8)]
    made: list[int] = []
    errors: list[BaseException] = []
    start = threading.Barrier(len(stores))

    def ensure(store: UserStore) -> None:
        start.wait()
        try:
            made.append(store.ensure([f"new-{i}" for i in range(20)]))
        except BaseException as e:  # noqa: BLE001 - collected for the assertion
            errors.append(e)

    threads = [threading.Thread(target=ensure, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and sum(made) == 20
    assert len(UserStore(ss.store.engine).page(None, 100)[0]) >= 20


def test_feedback_keeps_its_comment_and_labels_and_an_overwrite_replaces_the_shoppers_feedback(ss):
    g = Gorse(ss)
    g.insert_feedback([Feedback("star", "u1", "g1", T0, comment="nice", labels={"device": "ios"}),
                       Feedback("star", "u1", "g1", T0 + timedelta(hours=1)), Feedback("view", "u1", "g1", T0)])
    star = g.feedback(feedback_type="star", user_id="u1", item_id="g1")[0]
    assert [(f.comment, f.labels) for f in star] == [("nice", {"device": "ios"}), ("", None)]
    assert star[0].to_dict()["Comment"] == "nice" and star[0].to_dict()["Labels"] == {"device": "ios"}

    # Gorse keeps one feedback per type, user and item: an overwrite replaces both stars, not the view.
    assert g.insert_feedback([Feedback("star", "u1", "g1", T0 + timedelta(days=1), 2.0, "first"),
                              Feedback("star", "u1", "g1", T0 + timedelta(days=2), 5.0, "changed my mind"),
                              Feedback("star", "u2", "g1", T0)], overwrite=True) == 3
    assert [(f.timestamp, f.value, f.comment) for f in g.feedback(feedback_type="star", user_id="u1")[0]] == [
        (T0 + timedelta(days=2), 5.0, "changed my mind")]  # of one key given twice, the last
    assert [f.feedback_type for f in g.feedback(user_id="u1", item_id="g1")[0]] == ["view", "like"]
    assert ss.behaviour.events.count() == 3 and [u.user_id for u in g.users.page(None, 10)[0]] == ["u1", "u2"]

    with pytest.raises(InvalidInput, match="labels"):  # refused whole: nothing replaced
        g.insert_feedback([Feedback("star", "u1", "g1", T0), Feedback("star", "u3", "g1", T0, labels=[1, "a"])],
                          overwrite=True)
    with pytest.raises(InvalidInput, match="at most 4096"):
        g.insert_feedback([Feedback("star", "u3", "g1", T0, comment="x" * 4097)])
    assert ss.behaviour.events.count() == 3 and g.feedback(feedback_type="star", user_id="u1")[0][0].value == 5.0


def test_an_older_home_gains_the_event_comment_and_labels_columns(tmp_path):
    from sqlalchemy import inspect, text

    from stylesense.events.store import EventStore, NewEvent

    url = f"sqlite:///{tmp_path / 'old.db'}"
    old = EventStore.open(url)
    old.add("u", "a", "like", ts=T0)
    with old.engine.begin() as conn:  # the table as homes made before feedback comments have it
        conn.execute(text("ALTER TABLE events DROP COLUMN comment"))
        conn.execute(text("ALTER TABLE events DROP COLUMN labels"))
    old.engine.dispose()
    store = EventStore.open(url)
    assert {"comment", "labels"} <= {c["name"] for c in inspect(store.engine).get_columns("events")}
    store.add_many([NewEvent("u", "b", "like", T0, comment="kept", labels=["x"])])
    assert [(e.item_id, e.comment, e.labels) for e in store.events()] == [("a", None, None), ("b", "kept", ["x"])]


def test_several_categories_mean_items_in_all_of_them(ss):
    g = Gorse(ss)
    shoes_and_bags(g)
    for i in (1, 2, 5):
        g.set_category(f"g{i}", "Sale", True)
    for categories in (["Shoes", "Sale"], ["sale", "SHOES"]):  # matched as catalogue filters match
        # g1 and g5 are shoes on sale; nobody has g5, so the popular answer has only g1.
        assert {r.item_id for r in g.recommend("new", 10, categories=categories)} == {"g1"}
        assert {r.item_id for r in g.popular(10, categories=categories)} == {"g1"}
    ss.behaviour.train("itemknn")
    assert [r.item_id for r in g.recommend("newbie", 10, categories=["Shoes", "Sale"])] == ["g1", "g5"]
    assert {r.item_id for r in g.recommend("newbie", 10, categories=["Shoes"])} == {"g1", "g3", "g5"}
    assert [r.item_id for r in g.neighbors("g3", 10, categories=["Shoes", "Sale"])] == ["g1"]
    assert g.recommend("u1", categories=["Shoes", "Hats"]) == []


def test_popular_and_latest_items_with_categories_and_a_shoppers_items_left_out(ss):
    g = Gorse(ss)
    assert g.latest() == []  # the CSV-like items have no Gorse timestamp
    g.insert_items([GorseItem(f"g{i}", categories=["Shoes" if i % 2 else "Bags"], timestamp=T0 + timedelta(days=i))
                    for i in range(6)])
    g.insert_feedback([Feedback("star", f"u{u}", item, T0) for u in range(4) for item in ["g1", "g3"][: 1 + u % 2]]
                      + [Feedback("read", "u0", "g4", T0)])
    assert [(r.item_id, r.score) for r in g.popular(3)] == [("g1", 4.0), ("g3", 2.0), ("g4", 1.0)]
    assert [r.item_id for r in g.popular(3, user_id="u1")] == ["g4"]  # u1 has g1 and g3
    assert [r.item_id for r in g.popular(2, 1, categories=["Shoes"])] == ["g3"]

    newest = g.latest(3)
    assert [r.item_id for r in newest] == ["g5", "g4", "g3"] and newest[0].score == (T0 + timedelta(days=5)).timestamp()
    assert [r.item_id for r in g.latest(2, 1, categories=["Bags"])] == ["g2", "g0"]
    assert [r.item_id for r in g.latest(3, user_id="u0")] == ["g5", "g3", "g2"]
    g.patch_item("g5", is_hidden=True)
    assert g.latest(1)[0].item_id == "g4"  # never a hidden item
    assert g.latest(categories=["Hats"]) == [] and g.popular(categories=["Hats"]) == []
    with pytest.raises(InvalidInput, match="n must be"):
        g.latest(0)
    with pytest.raises(InvalidInput, match="whitespace"):
        g.popular(user_id=" u1")


def test_user_neighbours_are_the_shoppers_with_the_most_alike_histories(ss):
    g = Gorse(ss)
    shoes_and_bags(g)  # u0 and u2 starred g1, g3 and g4; u1 and u3 g1, g3 and g2
    with pytest.raises(NotReady):
        g.user_neighbors("u0")
    ss.behaviour.train("itemknn")
    near = g.user_neighbors("u0")
    assert [u.user_id for u in near] == ["u2", "u1", "u3"] and near[0].score == pytest.approx(1.0)
    assert near[1].score == pytest.approx(2 / 3) and near[1].to_dict() == {"Id": "u1", "Score": round(2 / 3, 6)}
    assert [u.user_id for u in g.user_neighbors("u0", 1, offset=1)] == ["u1"]
    g.insert_feedback([Feedback("star", "u9", "g4")])  # folded into the model: like u0 and u2 only
    assert {u.user_id for u in g.user_neighbors("u9")} == {"u0", "u2"}
    g.users.upsert([User("quiet")])
    assert g.user_neighbors("quiet") == []  # a profile, no events yet
    with pytest.raises(NotFound, match="user nobody not found"):
        g.user_neighbors("nobody")


def test_feedback_types_are_set_from_the_command_line(ss):
    from typer.testing import CliRunner

    from stylesense.cli import app

    config = ss.configure({"gorse_feedback_types": "buy:purchase, fav:like"})
    assert config.gorse_feedback_types == {"buy": "purchase", "fav": "like"}
    assert Gorse(ss).event_type("buy") == "purchase" and Gorse(ss).event_type("star") == "like"
    for text, words in (("buy=purchase", "FEEDBACK_TYPE:EVENT_TYPE"), ("buy:", "FEEDBACK_TYPE:EVENT_TYPE"),
                        ("buy:purchse", "not an event type")):
        with pytest.raises(InvalidInput, match=words):
            ss.configure({"gorse_feedback_types": text})
    assert ss.configure({"gorse_feedback_types": ""}).gorse_feedback_types is None  # only the defaults

    home = ["--home", str(ss.home.root)]
    run = CliRunner().invoke(app, [*home, "config", "gorse_feedback_types=star:purchase,like:cart"])
    assert run.exit_code == 0, run.output
    assert Gorse(StyleSense(ss.home.root)).feedback_types()["star"] == "purchase"
    assert '"like": "cart"' in run.output
    refused = CliRunner().invoke(app, [*home, "config", "gorse_feedback_types=star:stars"])
    assert refused.exit_code != 0 and "not an event type" in refused.output
