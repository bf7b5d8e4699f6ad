"""Popular and trending lists from the event log (GET /v1/popular, /v1/trending): the popular
and trending models' rankings without training either, kept up to date event by event (the
same counts as a recount), counted once per event generation, under the catalogue's rules and
filters, and safe to read while events stream in."""

import threading

import numpy as np
import pandas as pd
import pytest

from stylesense.catalog.filters import Filters
from stylesense.engine import StyleSense
from stylesense.errors import InvalidInput
from stylesense.events import NewEvent
from stylesense.events.popularity import EventPopularity
from stylesense.recommenders import Interactions, make_recommender

from recsys_fixtures import T0, block_shop


@pytest.fixture
def shop(tmp_path):
    ss = block_shop(tmp_path / "home", 60, 24, 3, 5, 5)
    return ss


def _ranking(recs):
    return [(r.item_id, round(r.score, 4)) for r in recs]


@pytest.mark.parametrize("kind", ["popular", "trending"])
def test_the_log_ranks_as_the_model_does_without_training_it(shop, kind):
    b = shop.behaviour
    model = make_recommender(kind).fit(Interactions.from_frame(b.events.frame(), b.weights))
    expected = model.recommend("nobody", 10)  # the cold-start list is the model's ranking
    got = getattr(b, kind)(10)
    assert _ranking(got) == _ranking(expected)
    assert got[0].reason.startswith(f"{kind}: ")


def test_counts_follow_new_events_exactly_as_a_recount(shop):
    b = shop.behaviour
    b.popular(3)  # counted once...
    steps = [
        [NewEvent("b0_u0", "b0_i0", "purchase")],  # a pair counted already: no new shopper
        [NewEvent("fresh", "b1_i1", "view"), NewEvent("fresh", "b1_i1", "cart")],  # one new shopper
        [NewEvent("fresh", "brand-new", "purchase", T0 + 10**6)],  # an item the log never had
        [NewEvent("z", "b2_i2", "view", T0 - 86400 * 30)],  # an old event: trending ages it
    ]
    for batch in steps:
        b.add_events(batch)
        live = b._popularity.counts(b.events, b.weights)
        recount = EventPopularity().counts(b.events, b.weights)
        assert live.pk == recount.pk == b.events.max_pk()
        order = pd.Index(recount.item_ids).get_indexer(live.item_ids)
        np.testing.assert_array_equal(live.shoppers, recount.shoppers[order])
        np.testing.assert_allclose(live.decayed, recount.decayed[order], rtol=1e-9)
    assert b.popular(1)[0].score == max(b.popular(100), key=lambda r: r.score).score


def test_counted_once_per_event_generation(shop):
    b = shop.behaviour
    first = b._popularity.counts(b.events, b.weights)
    assert b._popularity.counts(b.events, b.weights) is first  # no new event: the same counts
    b.add_event("u", "b0_i0", "view")
    assert b._popularity.counts(b.events, b.weights) is not first
    second = b._popularity.counts(b.events, b.weights)
    b.set_weights({"view": 0.0})  # another weight table: counted again, views now count for nothing
    assert b._popularity.counts(b.events, b.weights) is not second
    b.add_event("viewer", "nothing-but-views", "view")
    assert "nothing-but-views" not in {r.item_id for r in b.popular(100) + b.trending(100)}


def test_catalogue_rules_and_filters_hold(shop):
    b = shop.behaviour
    top = b.popular(3)[0].item_id
    shop.set_hidden([top])
    assert top not in {r.item_id for r in b.popular(100) + b.trending(100)}
    block1 = b.popular(100, filters=Filters.parse(["block=b1"]))
    assert block1 and all(r.item_id.startswith("b1_") for r in block1)
    with pytest.raises(InvalidInput, match="k must be at least 1"):
        b.trending(0)
    assert StyleSense(shop.home.root.parent / "empty").behaviour.popular() == []  # no events: nothing yet


def test_readers_while_events_stream_in(shop):
    b = shop.behaviour
    errors: list[BaseException] = []
    stop = threading.Event()

    def read() -> None:
        try:
            while not stop.is_set():
                assert len(b.popular(5)) == 5 and len(b.trending(5)) == 5
        except BaseException as e:  # noqa: BLE001 - handed to the test
            errors.append(e)

    readers = [threading.Thread(target=read) for _ in range(3)]
    for t in readers:
        t.start()
    for k in range(40):
        b.add_events([NewEvent(f"s{k}", f"b{k % 3}_i{k % 8}", "purchase")])
    stop.set()
    for t in readers:
        t.join()
    assert not errors
    live = b._popularity.counts(b.events, b.weights)
    recount = EventPopularity().counts(b.events, b.weights)
    np.testing.assert_array_equal(live.shoppers, recount.shoppers[pd.Index(recount.item_ids).get_indexer(live.item_ids)])
