"""Importing behaviour logs from CSV: presets for H&M and MovieLens, bad rows, whole-file errors."""

import os
import re
from pathlib import Path

import pandas as pd
import pytest

from stylesense.catalog.csvtable import BadRow, CsvError
from stylesense.events import PRESETS, EventImportReport, EventStore, import_events, read_events_csv

from conftest import within

HM_HEADER = "t_dat,customer_id,article_id,price,sales_channel_id\n"
ML_HEADER = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
CLICKS = dict(user_column="user", item_column="sku", time_column="when", type_column="event")


def write(tmp_path: Path, text: str, name: str = "events.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.fixture
def store(tmp_path) -> EventStore:
    return EventStore.open(f"sqlite:///{tmp_path / 'home.db'}")


def test_hm_preset_keeps_leading_zeros_and_repeat_purchases(tmp_path, store):
    path = write(tmp_path, HM_HEADER
                 + "2018-09-20,c1,0663713001,0.0508,2\n"
                 + "2018-09-20,c1,0663713001,0.0508,2\n"  # bought twice: a real repeat
                 + "2018-09-21,c2,0541518023,0.0305,1\n", "transactions.csv")
    events, bad = read_events_csv(path, **PRESETS["hm"])
    assert bad == []
    assert events["item_id"].tolist() == ["0663713001", "0663713001", "0541518023"]
    assert events["type"].unique().tolist() == ["purchase"]
    assert events["price"].tolist() == [0.0508, 0.0508, 0.0305]
    assert events["ts"].iloc[2] == pd.Timestamp("2018-09-21", tz="UTC")

    assert import_events(store, path, preset="hm") == EventImportReport(3, 3, 0, [])
    assert import_events(store, path, preset="hm") == EventImportReport(3, 0, 3, [])
    assert store.frame()["item_id"].tolist() == ["0663713001", "0663713001", "0541518023"]


def test_movielens_preset_reads_recbole_atomic_ratings(tmp_path, store):
    path = write(tmp_path, ML_HEADER + "196\t242\t3\t881250949\n186\t302\t4.5\t891717742\n", "ml.inter")
    report = import_events(store, path, preset="movielens")
    assert report == EventImportReport(2, 2, 0, [])
    f = store.frame()
    assert f[["user_id", "item_id", "type", "value"]].values.tolist() == [
        ["196", "242", "rating", 3.0], ["186", "302", "rating", 4.5]]
    assert f["ts"].iloc[0] == pd.Timestamp("1997-12-04 15:55:49", tz="UTC")  # 881250949 s


def test_bad_rows_are_reported_with_line_numbers_and_the_rest_imports(tmp_path, store):
    path = write(tmp_path, "user,sku,when,event,price\n"
                 "u1,a,2024-01-01T10:00:00,view,\n"       # 2: fine (no price)
                 ",b,2024-01-01,view,\n"                  # 3: no user
                 "u1,,2024-01-01,view,\n"                 # 4: no item
                 "u1,c,yesterday,view,\n"                 # 5: bad time
                 "u1,d,2024-01-01,wishlist,\n"            # 6: unknown type
                 "u1,e,2024-01-01,purchase,ten\n"         # 7: bad price
                 "u1,f,2024-01-01\n"                      # 8: ragged
                 "\n"                                     # 9: blank, skipped
                 "U2,g,1704103200,Purchase,12.5\n")       # 10: fine (epoch, capitalised type)
    report = import_events(store, path, **CLICKS, price_column="price")
    assert (report.rows, report.inserted, report.duplicates) == (8, 2, 0)
    assert report.bad == [
        BadRow(3, "b", "empty user id"),
        BadRow(4, "", "empty item id"),
        BadRow(5, "c", "time in column 'when' is not an ISO date or an epoch number: 'yesterday'"),
        BadRow(6, "d", "unknown event type 'wishlist' (known: cart, click, dislike, like, not_interested, purchase, "
                       "rating, view)"),
        BadRow(7, "e", "price in column 'price' is not a number: 'ten'"),
        BadRow(8, "", "3 fields, header has 5"),
    ]
    f = store.frame()
    assert f[["user_id", "item_id", "type"]].values.tolist() == [["u1", "a", "view"], ["U2", "g", "purchase"]]
    assert pd.isna(f["price"].iloc[0]) and f["price"].iloc[1] == 12.5
    assert f["ts"].tolist() == [pd.Timestamp("2024-01-01 10:00", tz="UTC")] * 2


def test_rows_breaking_the_store_rules_are_reported_and_the_rest_imports(tmp_path, store):
    path = write(tmp_path, "user,sku,when,event,price\n"
                 "  alice  ,a,2024-01-01,purchase,5\n"       # 2: fine; a CSV cell is stripped
                 "u1,b,2024-01-01,purchase,-5\n"             # 3: negative price
                 "u1,c,1900-01-01,view,\n"                   # 4: before 1970
                 "u1,d,1704103200000,view,\n"                # 5: milliseconds read as seconds
                 "   ,e,2024-01-01,view,\n"                  # 6: whitespace-only user
                 "u1,f,2999-01-01,view,\n")                  # 7: the far future
    report = import_events(store, path, **CLICKS, price_column="price")
    assert (report.rows, report.inserted) == (6, 1)
    assert [(b.row, b.item_id) for b in report.bad] == [(3, "b"), (4, "c"), (5, "d"), (6, "e"), (7, "f")]
    reasons = [b.reason for b in report.bad]
    assert reasons[0] == "price must be a finite number >= 0, got -5.0"
    assert reasons[1].startswith("time 1900-01-01 00:00:00+00:00 is outside 1970-01-01 .. now + 1 day")
    assert reasons[2].startswith("time 55970-") and reasons[4].startswith("time 2999-01-01")
    assert reasons[3] == "empty user id"
    assert store.users() == ["alice"]


def test_a_quote_left_open_is_reported_not_swallowed(tmp_path, store):
    """The csv module reads an open quote to the end of the file as one field: here the
    session cell of line 2 would swallow the events of lines 3 and 4 without a word."""
    path = write(tmp_path, 'user,sku,when,visit\nu,a,2024-01-01,"s1\nu,b,2024-01-02,s2\nu,c,2024-01-03,s3\n')
    report = import_events(store, path, user_column="user", item_column="sku", time_column="when",
                           type="view", session_column="visit")
    assert (report.rows, report.inserted) == (1, 0)
    assert report.bad == [BadRow(2, "", "unterminated quote: read to the end of the file as one field; "
                                        "lines 2-4 not imported")]
    assert store.count() == 0


def test_only_regular_files_are_read(tmp_path):
    fifo = tmp_path / "events.csv"
    os.mkfifo(fifo)
    for path, kind in ((fifo, "pipe (FIFO)"), (Path("/dev/zero"), "character device")):
        with pytest.raises(CsvError, match=re.escape(f"not a regular file ({kind})")):
            within(10, lambda: read_events_csv(path, user_column="user", item_column="sku", time_column="when",
                                               type="view"))


def test_times_with_offsets_and_epoch_units(tmp_path):
    path = write(tmp_path, "user,sku,when\nu,a,2024-01-01T12:00:00+02:00\nu,b,1704103200000\n")
    events, bad = read_events_csv(path, user_column="user", item_column="sku", time_column="when",
                                  type="click", time_unit="ms")
    assert bad == []
    assert events["ts"].tolist() == [pd.Timestamp("2024-01-01 10:00", tz="UTC")] * 2


def test_sessions_and_ratings_columns(tmp_path):
    path = write(tmp_path, "user;sku;when;stars;visit\nu;a;2024-01-01;4;s-1\nu;b;2024-01-02;;\n")
    events, bad = read_events_csv(path, user_column="user", item_column="sku", time_column="when",
                                  type="rating", value_column="stars", session_column="visit")
    assert bad == []
    assert events["session_id"].tolist() == ["s-1", ""]
    assert events["value"].iloc[0] == 4.0 and pd.isna(events["value"].iloc[1])


def test_missing_column_names_the_columns_found(tmp_path):
    path = write(tmp_path, HM_HEADER.replace("article_id", "sku") + "2018-09-20,c1,0663713001,0.05,2\n")
    with pytest.raises(CsvError) as e:
        read_events_csv(path, **PRESETS["hm"])
    assert "no item column 'article_id'" in str(e.value)
    assert "columns found: t_dat, customer_id, sku, price, sales_channel_id" in str(e.value)


@pytest.mark.parametrize("content, message", [
    (None, "file not found"),
    ("", "file is empty"),
    ("user,sku,when\n", "no data rows"),
    ("user,user,when\nu,a,2024-01-01\n", "repeated column name"),
])
def test_unreadable_or_empty_files_raise_csv_error(tmp_path, content, message):
    path = tmp_path / "events.csv"
    if content is not None:
        path.write_text(content)
    with pytest.raises(CsvError, match=message):
        read_events_csv(path, user_column="user", item_column="sku", time_column="when", type="view")


def test_type_must_be_given_once_and_known(tmp_path):
    path = write(tmp_path, "user,sku,when\nu,a,2024-01-01\n")
    with pytest.raises(ValueError, match="exactly one of type"):
        read_events_csv(path, user_column="user", item_column="sku", time_column="when")
    with pytest.raises(ValueError, match="unknown event type 'buy'"):
        read_events_csv(path, user_column="user", item_column="sku", time_column="when", type="buy")
    with pytest.raises(ValueError, match="unknown preset 'amazon'"):
        import_events(EventStore.open(f"sqlite:///{tmp_path / 'h.db'}"), path, preset="amazon")


@pytest.mark.shared
def test_real_hm_transactions_import_once(shared_data, store):
    path = shared_data / "hm" / "transactions.csv"
    first = import_events(store, path, preset="hm")
    assert (first.rows, first.inserted, first.duplicates, first.bad) == (30_451, 30_451, 0, [])
    again = import_events(store, path, preset="hm")
    assert (again.inserted, again.duplicates) == (0, 30_451)
    f = store.frame()
    assert len(f) == 30_451 and f["item_id"].str.len().eq(10).all() and f["item_id"].str[0].eq("0").all()
    assert f["user_id"].nunique() == 1_332 and f["item_id"].nunique() == 16_378


@pytest.mark.shared
def test_real_movielens_import(shared_data, store):
    report = import_events(store, shared_data / "movielens-100k" / "ml-100k.inter", preset="movielens")
    assert (report.rows, report.inserted, report.bad) == (100_000, 100_000, [])
    assert store.count() == 100_000 and len(store.users()) == 943
    assert store.frame()["value"].between(1, 5).all()
