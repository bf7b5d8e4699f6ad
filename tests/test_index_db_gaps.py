"""A home on a database-kept index (pgvector, Milvus) behaves as one on an index file where the
two used to differ: a filter on a column no item has is the same error, not an empty answer;
`stylesense doctor` checks the table or collection; reading a few items' vectors fetches just
those ids; and pgvector shares the home's connection pool. Real servers throughout: the
session's embedded Postgres and Milvus Lite (tests/index_backends.py)."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from stylesense.catalog.filters import FilterError, Filters
from stylesense.catalog.store import CatalogStore, Upsert
from stylesense.cli import app
from stylesense.doctor import check
from stylesense.engine import StyleSense
from stylesense.errors import NotFound
from stylesense.index import DATABASE_KINDS
from stylesense.index.synthetic import clustered_unit_vectors

from index_backends import BACKENDS, Built, statements

runner = CliRunner()
DIM = 16
N = 400


def vector_statements(sent: list[str]) -> list[str]:
    return [s for s in sent if "stylesense_vectors" in s]


@pytest.fixture
def file_home(home_copy) -> StyleSense:
    """The same catalogue as ``database_homes`` in an index file (flat)."""
    return StyleSense(home_copy)


# -- 1. a filter on a column no item has ----------------------------------------------------------
@pytest.mark.parametrize("kind", ["file", *DATABASE_KINDS])
def test_a_filter_on_an_unknown_column_is_an_error_on_every_index(kind, database_homes, file_home):
    ss = file_home if kind == "file" else database_homes[kind]
    for filters in (Filters.parse(["colr=red"]), Filters.parse(["gender=Women", "colr=red"]),
                    Filters.parse([], max_price=20, price_column="cost")):
        with pytest.raises(FilterError, match=r"no item has column\(s\) (colr|cost); known columns: .*gender"):
            ss.search(item="1", k=5, filters=filters)
    assert ss.search(item="1", k=5, filters=Filters.parse(["gender=Kids"])) == []  # a known column: no match
    assert len(ss.search(item="1", k=5, filters=Filters.parse(["gender=women"]))) == 5


@pytest.mark.parametrize("kind", DATABASE_KINDS)
def test_the_cli_names_the_unknown_column_on_a_database_index(kind, database_homes):
    root = str(database_homes[kind].home.root)
    r = runner.invoke(app, ["--home", root, "search", "--item", "1", "--where", "colr=red"])
    assert r.exit_code == 2 and "no item has column(s) colr" in r.output, r.output


def test_a_filtered_search_that_finds_k_asks_nothing_about_columns(database_homes):
    """The column check runs only when a filtered search comes back short: the happy path of a
    filtered search costs no catalogue scan, however rare its column."""
    ss = database_homes["pgvector"]
    ss.search(item="1", k=3)  # the index is open
    with statements(ss.store.engine) as sent:
        assert len(ss.search(item="1", k=3, filters=Filters.parse(["gender=women"]))) == 3
    assert vector_statements(sent) and not [q for q in sent if "json_object_keys" in q], sent
    with statements(ss.store.engine) as sent, pytest.raises(FilterError):
        ss.search(item="1", k=3, filters=Filters.parse(["colr=red"]))
    assert [q for q in sent if "json_object_keys" in q], sent


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_the_catalogue_knows_its_columns(database, tmp_path, request):
    """Hidden items' columns count (the back office filters them too), removed items' do not;
    a column name is a value, never SQL."""
    url = f"sqlite:///{tmp_path / 'c.db'}" if database == "sqlite" else request.getfixturevalue("fresh_database")
    store = CatalogStore(url)
    odd = "it's \"odd\"; --"
    store.upsert([Upsert("a", {"gender": "Men", "price": 10.0}, None, None, None),
                  Upsert("b", {"gender": "Women", "season": "Summer"}, None, None, None),
                  Upsert("c", {"gone": 1, odd: "x"}, None, None, None)])
    store.set_hidden(["b"], True)
    assert store.columns() == {"gender", "price", "season", "gone", odd}
    store.mark_removed(["c"])
    assert store.columns() == {"gender", "price", "season"}
    assert store.missing_columns(["season", "gone", "colr", "gender", odd]) == sorted(["colr", "gone", odd])
    store.engine.dispose()


# -- 2. the doctor on a database index ------------------------------------------------------------
def index_finding(ss: StyleSense, repair: bool = False) -> dict:
    found = {f.name: f.to_dict() for f in check(ss.home.root, repair=repair, threads=1)}
    return found["index"]


def where(kind: str) -> str:
    """How the doctor names the home's index."""
    if kind == "pgvector":
        return "pgvector table stylesense_vectors in postgresql"
    return "Milvus collection stylesense_vectors at"


@pytest.mark.parametrize("kind", DATABASE_KINDS)
def test_the_doctor_checks_a_database_index_and_rebuilds_it(kind, database_homes):
    ss = database_homes[kind]
    n = len(ss.store.features(searchable=True)[0])
    healthy = index_finding(ss)
    assert healthy["ok"] and where(kind) in healthy["message"]
    assert f"holds the {n} searchable items" in healthy["message"]

    index = ss.index()
    pks = index.ids()
    index.remove(pks[:2])  # the bookkeeping still says they are indexed
    index.add(np.array([10**9]), index.vectors(pks[2:3]))  # and one the catalogue does not have
    broken = index_finding(ss)
    assert not broken["ok"] and not broken["repaired"]
    assert "2 searchable items are missing from it, 1 of its ids are not searchable" in broken["message"]
    assert "`stylesense doctor --repair`" in broken["message"] and "`stylesense index build`" in broken["message"]
    assert len(index) == n - 1  # reporting changes nothing

    repaired = index_finding(ss, repair=True)
    assert repaired["ok"] and repaired["repaired"], repaired
    np.testing.assert_array_equal(ss.index().ids(), np.sort(ss.store.features(searchable=True)[0]))
    assert index_finding(ss)["ok"]


@pytest.mark.parametrize("kind", DATABASE_KINDS)
def test_the_doctor_finds_a_database_index_of_another_dimension(kind, database_homes):
    ss = database_homes[kind]
    index = ss.index()
    if kind == "pgvector":
        from stylesense.index.pgvector import PgVectorIndex

        other = PgVectorIndex(index.engine.url.render_as_string(hide_password=False), 8, engine=index.engine)
    else:
        from stylesense.index.milvus import MilvusIndex

        other = MilvusIndex(index.uri, 8, client=index.client)
    other.build(np.arange(3), clustered_unit_vectors(3, 8, seed=0))  # another home's vectors, same table
    found = index_finding(ss)
    assert not found["ok"] and f"holds 8-d vectors, the home makes {index.dim}-d ones" in found["message"]
    assert index_finding(ss, repair=True)["repaired"]
    assert index_finding(ss)["ok"]


@pytest.mark.parametrize("kind", DATABASE_KINDS)
def test_the_doctor_reports_a_missing_database_index(kind, database_homes):
    ss = database_homes[kind]
    index = ss.index()
    if kind == "pgvector":
        with index.engine.begin() as conn:
            conn.exec_driver_sql("DROP TABLE stylesense_vectors")
    else:
        index.client.drop_collection(index.collection)
    found = index_finding(ss)
    assert not found["ok"] and f"no {where(kind)}" in found["message"] and "items are searchable" in found["message"]
    assert index_finding(ss, repair=True)["repaired"]
    assert index_finding(ss)["ok"]


def test_the_doctor_reports_a_milvus_server_it_cannot_reach(home):
    StyleSense.init(home, index_kind="milvus", milvus_uri="http://127.0.0.1:1")  # nothing listens there
    for repair in (False, True):
        found = {f.name: f for f in check(home, repair=repair, threads=1)}
        assert found["database"].ok and not found["index"].ok and not found["index"].repaired
        assert "Milvus collection stylesense_vectors at http://127.0.0.1:1 cannot be read" in found["index"].message
        assert "correct the home's milvus_uri" in found["index"].message


def test_the_doctor_cli_answers_in_the_same_shape_for_a_database_index(database_homes):
    r = runner.invoke(app, ["--home", str(database_homes["milvus"].home.root), "--threads", "1", "doctor", "--json"])
    assert r.exit_code == 0, r.output
    found = {f["check"]: f for f in json.loads(r.output)}
    assert set(found["index"]) == {"check", "ok", "repaired", "message"} and found["index"]["ok"]


# -- 3. a few items' vectors, fetched by id ----------------------------------------------------------
@pytest.fixture(scope="module")
def built(new_index):
    x = clustered_unit_vectors(N, DIM, n_clusters=8, seed=2)
    ids = np.arange(N, dtype=np.int64) * 3 + 2
    return Built(new_index, DIM, ids, x), ids, x


@pytest.mark.parametrize("kind", BACKENDS)
def test_lookup_answers_as_a_comparison_with_every_id(kind, built):
    indexes, ids, x = built
    index = indexes[kind]
    asked = np.array([ids[5], 4, -1, ids[5], ids[-1], 10**12], dtype=np.int64)
    held, vectors = index.lookup(asked)
    np.testing.assert_array_equal(held, np.isin(asked, index.ids()))  # what the engine compared before
    np.testing.assert_allclose(vectors[held], x[[5, 5, N - 1]], atol=1e-6)
    assert not vectors[~held].any() and vectors.shape == (6, DIM) and vectors.dtype == np.float32
    empty_held, empty = index.lookup(np.empty(0, np.int64))
    assert empty_held.shape == (0,) and empty.shape == (0, DIM)
    with pytest.raises(NotFound, match=r"\[4, -1"):
        index.vectors(asked)


def test_pgvector_fetches_only_the_ids_asked_for(built):
    indexes, ids, _ = built
    index = indexes["pgvector"]
    with statements(index.engine) as sent:
        index.lookup(np.array([ids[1], ids[2], 7], dtype=np.int64))
    fetches = [s for s in sent if index.table in s]
    assert len(fetches) == 1 and "WHERE id = ANY" in fetches[0], sent


@pytest.mark.parametrize("kind", DATABASE_KINDS)
def test_item_vectors_look_alikes_and_item_search_equal_the_index_files(kind, database_homes, file_home):
    ss = database_homes[kind]
    wanted = ["1", "7", "nope", "13", "24", "1"]
    db, flat = ss.item_vectors(wanted), file_home.item_vectors(wanted)
    np.testing.assert_allclose(db, flat, atol=1e-5)
    assert not db[2].any() and db[0].any()

    def alike(s: StyleSense) -> dict[str, float]:
        return s.look_alikes(["1", "13"], k=30, threshold=0.5)

    a, b = alike(ss), alike(file_home)
    assert a.keys() == b.keys() and len(a) > 5
    assert all(abs(a[i] - b[i]) < 1e-4 for i in a)
    hits = {h.item_id: h.score for h in ss.search(item="7", k=30)}
    want = {h.item_id: h.score for h in file_home.search(item="7", k=30)}
    assert hits.keys() == want.keys() and all(abs(hits[i] - want[i]) < 1e-4 for i in hits)


def test_item_vectors_on_pgvector_never_read_every_id(database_homes):
    ss = database_homes["pgvector"]
    ss.search(item="1", k=3)  # the index is open
    with statements(ss.store.engine) as sent:
        ss.item_vectors(["1", "2", "3"])
        ss.look_alikes(["1"], k=5, threshold=0.0)
        ss.search(item="2", k=3)
    reads = vector_statements(sent)
    assert reads and all("ORDER BY id" not in s for s in reads), reads
    assert sum("embedding FROM" in s for s in reads) == 3  # one fetch by id each


# -- 4. one connection pool per home ---------------------------------------------------------------
def test_pgvector_shares_the_homes_engine(database_homes, postgres_server):
    from stylesense.index.pgvector import connect

    ss = database_homes["pgvector"]
    assert ss.index().engine is ss.store.engine
    other = StyleSense(ss.home.root)  # another worker: one pool of its own, for both
    assert other.index().engine is other.store.engine
    url = ss.store.engine.url.render_as_string(hide_password=False)
    assert connect(url, ss.store.engine) is ss.store.engine
    assert connect(url.replace("+psycopg", "", 1), ss.store.engine) is ss.store.engine  # psycopg 3 either way
    assert connect(postgres_server.get_uri(), ss.store.engine) is not ss.store.engine  # another database
