"""What only some backends have to show: metadata filters evaluated by the database itself
(pgvector SQL, Milvus expressions) agree with the catalogue's own ``Filters.matches``;
a database index outlives its client object; concurrent searches share a pool; and a whole home
runs on pgvector and on Milvus exactly as on an index file. Real servers throughout: the
session's embedded Postgres and a Milvus Lite server (tests/index_backends.py)."""

import os
import random
import threading

import numpy as np
import pytest

from stylesense.catalog.filters import Filters
from stylesense.engine import StyleSense
from stylesense.errors import InvalidInput
from stylesense.index import DATABASE_KINDS
from stylesense.index.exact import exact_topk
from stylesense.index.filters import Filter, ItemScalars
from stylesense.index.milvus import milvus_expression
from stylesense.index.pgvector import sql_predicates
from stylesense.index.synthetic import clustered_unit_vectors
from stylesense.index.tuning import recall_at_k

from conftest import draw_product

DIM = 32
N = 3000
TYPES = ("Shirts", "Tshirts", "Shoes", "Bags", "Dresses", "Jeans", "Watches", "Caps", "Socks", "Belts")


@pytest.fixture(scope="module")
def catalogue():
    """(ids, vectors, queries, attrs, in_stock): metadata as a feed carries it: mixed case,
    numbers, a list-valued column, missing and text prices, a quote in a value."""
    rng = np.random.default_rng(5)
    x = clustered_unit_vectors(N + 50, DIM, n_clusters=30, seed=5)
    attrs = []
    for i in range(N):
        a = {"articleType": TYPES[i % 10], "gender": ("Men", "WOMEN", "unisex")[i % 3], "year": 2010 + i % 4,
             "categories": [f"Cat{i % 7}", f"Cat{(i + 3) % 7}"], "brand": 'Levi\'s "501"' if i % 50 == 0 else "Acme"}
        if i % 11:
            a["price"] = float(rng.integers(5, 200))
        elif i % 2:
            a["price"] = "call us"  # a text price is no price
        attrs.append(a)
    in_stock = [i % 4 != 0 for i in range(N)]
    return np.arange(N, dtype=np.int64) * 5 + 1, x[:N], x[N:], attrs, in_stock


@pytest.fixture(scope="module")
def filled(catalogue, new_index):
    ids, x, _, attrs, in_stock = catalogue
    scalars = [ItemScalars.of(a, s) for a, s in zip(attrs, in_stock, strict=True)]
    built = {}
    for kind in DATABASE_KINDS:
        built[kind] = new_index(kind, DIM)
        built[kind].build(ids, x, scalars)
    return built


FILTERS = [
    Filters.parse(["articleType=shoes"]),  # 10%, case-insensitive
    Filters.parse(["articleType=Shoes", "articleType=Bags"], in_stock=True),  # any-of, and in stock
    Filters.parse(["gender=women", "year=2011"], max_price=60),  # about 1%; the year an int
    Filters.parse(["categories=cat2"]),  # a list-valued cell matches by any element
    Filters.parse([], min_price=20, max_price=25),  # a price range; text and missing prices never pass
    Filters.parse(['brand=levi\'s "501"']),  # quotes in a value
    Filters.parse(["gender=Kids"]),  # nothing matches
]


@pytest.mark.parametrize("kind", DATABASE_KINDS)
@pytest.mark.parametrize("case", range(len(FILTERS)))
def test_database_filters_agree_with_the_catalogue(kind, case, catalogue, filled):
    ids, x, queries, attrs, in_stock = catalogue
    filters = FILTERS[case]
    ok = np.array([filters.matches({**a, "in_stock": s}) for a, s in zip(attrs, in_stock, strict=True)])
    scores, found = filled[kind].search(queries, 10, where=Filter(match=filters))
    want = min(10, int(ok.sum()))
    assert ((found >= 0).sum(axis=1) == want).all()  # k come back whenever k match
    assert np.isin(found[found >= 0], ids[ok]).all()
    if want:
        truth = ids[ok][exact_topk(queries, x[ok], 10)[1]]
        assert recall_at_k(found, truth) >= 0.95
        assert (np.diff(scores[:, :want], axis=1) <= 1e-6).all()


@pytest.mark.parametrize("kind", DATABASE_KINDS)
def test_predicates_and_an_id_set_combine(kind, catalogue, filled):
    ids, x, queries, attrs, _ = catalogue
    allowed = ids[: N // 2]
    filters = Filters.parse(["articleType=Shirts"])
    _, found = filled[kind].search(queries[:5], 10, where=Filter(match=filters, ids=allowed))
    ok = np.array([a["articleType"] == "Shirts" for a in attrs]) & np.isin(ids, allowed)
    np.testing.assert_array_equal(found, ids[ok][exact_topk(queries[:5], x[ok], 10)[1]])


@pytest.mark.parametrize("kind", DATABASE_KINDS)
def test_reconnecting_finds_the_same_index(kind, catalogue, filled):
    """The database is the index: a new client object (another worker) sees it whole."""
    _, _, queries, _, _ = catalogue
    index = filled[kind]
    if kind == "pgvector":
        again = type(index)(str(index.engine.url.render_as_string(hide_password=False)), table=index.table)
    else:
        again = type(index)(index.uri, collection=index.collection, client=index.client)
    assert again.dim == DIM and len(again) == N
    where = Filter(match=FILTERS[1])
    for kwargs in ({}, {"where": where}):
        np.testing.assert_array_equal(again.search(queries, 10, **kwargs)[1], index.search(queries, 10, **kwargs)[1])


@pytest.mark.parametrize("kind", DATABASE_KINDS)
def test_concurrent_searches_and_a_writer(kind, catalogue, new_index):
    """Eight threads search while one upserts: every answer is complete, none fails."""
    ids, x, queries, attrs, in_stock = catalogue
    index = new_index(kind, DIM)
    index.build(ids[:1000], x[:1000], [ItemScalars.of(a, s) for a, s in zip(attrs[:1000], in_stock[:1000])])
    errors: list[BaseException] = []

    def search() -> None:
        try:
            for q in queries[:10]:
                _, found = index.search(q[None], 10, where=Filter(match=FILTERS[0]))
                assert (found >= 0).all()
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            errors.append(e)

    threads = [threading.Thread(target=search) for _ in range(8)]
    for t in threads:
        t.start()
    index.add(ids[1000:1200], x[1000:1200], [ItemScalars.of(a, s) for a, s in zip(attrs[1000:1200], in_stock[1000:1200])])
    for t in threads:
        t.join()
    assert not errors, errors[0]
    assert len(index) == 1200


def test_expressions_bind_values_instead_of_splicing_them():
    """A quote or a keyword in a value stays a value in both languages."""
    evil = Filters.parse(["brand=x') OR true --", 'brand=a" or id > 0 or "'], max_price=10, in_stock=True)
    sql, params = sql_predicates(Filter(match=evil, ids=np.array([3, 4])))
    assert "OR true" not in sql and "id > 0" not in sql and params["allowed"] == [3, 4]
    expr = milvus_expression(Filter(match=evil))
    assert '"a\\" or id > 0 or \\""' in expr and "in_stock == true" in expr
    assert sql_predicates(None) == ("", {}) and milvus_expression(None) == ""
    assert milvus_expression(Filter(ids=np.array([], np.int64))) == "id < 0"


# -- a whole home on a database index (tests/index_backends.py's database_homes) -------------------
@pytest.mark.parametrize("kind", DATABASE_KINDS)
def test_a_home_searches_with_filters_on_a_database_index(kind, database_homes, tmp_path):
    """The same cases as test_search.py's filters on the index file."""
    ss = database_homes[kind]
    assert ss.index().kind == kind and not ss.home.index_path.exists()
    women = ss.search(item="1", k=10, filters=Filters.parse(["gender=women"]))
    assert len(women) == 10 and all(h.attrs["gender"] == "Women" for h in women)
    cheap_shoes = ss.search(item="1", k=10, filters=Filters.parse(["articleType=Shoes"], max_price=20))
    assert sorted(h.item_id for h in cheap_shoes) == ["7", "8", "9"]
    assert ss.search(item="1", k=5, filters=Filters.parse(["gender=Kids"])) == []
    hits = ss.search(item="7", k=23)
    assert len(hits) == 23 and "7" not in {h.item_id for h in hits}
    photo = tmp_path / "shoe.jpg"
    draw_product("Shoes", random.Random(99)).save(photo)
    assert sum(h.attrs["articleType"] == "Shoes" for h in ss.search(photo, k=5)) >= 4


@pytest.mark.parametrize("kind", DATABASE_KINDS)
def test_a_home_keeps_a_database_index_in_step(kind, database_homes, tmp_path):
    """Hide, show, remove and metadata edits reach the database index incrementally, and another
    StyleSense object over the same home (another worker) sees each change at once."""
    ss = database_homes[kind]
    other = StyleSense(ss.home.root)
    n = len(ss.index())
    ss.set_hidden(["2"])
    assert len(other.index()) == n - 1 and all(h.item_id != "2" for h in other.search(item="1", k=23))
    ss.set_hidden(["2"], hidden=False)
    assert "2" in {h.item_id for h in other.search(item="1", k=23)}
    ss.remove_items(["3"])
    assert len(other.index()) == n - 1
    ss.patch_item("4", {"gender": "Kids"})  # metadata alone: the filter fields are written again
    assert [h.item_id for h in other.search(item="1", k=5, filters=Filters.parse(["gender=kids"]))] == ["4"]
    rebuilt = ss.build_index()
    assert rebuilt.kind == kind and len(other.index()) == n - 1


def test_pgvector_needs_a_postgres_home(tmp_path):
    with pytest.raises(InvalidInput, match="database-url"):
        StyleSense.init(tmp_path / "h", index_kind="pgvector")
    with pytest.raises(InvalidInput, match="unknown index kind"):
        StyleSense.init(tmp_path / "h2", index_kind="annoy")


def test_milvus_standalone_server(catalogue):
    """Against a standalone Milvus server named by $STYLESENSE_MILVUS_URI (e.g.
    http://127.0.0.1:19530): HNSW there instead of Lite's FLAT, same contract."""
    uri = os.environ.get("STYLESENSE_MILVUS_URI")
    if not uri:
        pytest.skip("no standalone Milvus server: set STYLESENSE_MILVUS_URI to run this (none can be started "
                    "on this offline machine: no milvus binary, and its docker image cannot be pulled)")
    from stylesense.index.milvus import MilvusIndex

    ids, x, queries, attrs, in_stock = catalogue
    index = MilvusIndex(uri, DIM, collection=f"t_{random.randrange(1 << 30)}")
    try:
        index.build(ids, x, [ItemScalars.of(a, s) for a, s in zip(attrs, in_stock, strict=True)])
        assert recall_at_k(index.search(queries, 10)[1], ids[exact_topk(queries, x, 10)[1]]) >= 0.95
        ok = np.array([FILTERS[0].matches(a) for a in attrs])
        _, found = index.search(queries, 10, where=Filter(match=FILTERS[0]))
        assert recall_at_k(found, ids[ok][exact_topk(queries, x[ok], 10)[1]]) >= 0.95
    finally:
        index.client.drop_collection(index.collection)
