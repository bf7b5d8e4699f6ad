"""Reading catalogue CSVs: delimiters, encodings, ragged rows, duplicate ids, typing, open
quotes, and paths that are not regular files."""

import os
from pathlib import Path

import pytest

from stylesense.catalog.csvtable import MAX_CSV_BYTES, BadRow, CsvError, column_types, read_table, typed

from conftest import within


def write(tmp_path: Path, text: str | bytes, name: str = "items.csv") -> Path:
    p = tmp_path / name
    p.write_bytes(text if isinstance(text, bytes) else text.encode())
    return p


def test_semicolon_and_tab_delimiters_are_detected(tmp_path):
    for d in (";", "\t"):
        t = read_table(write(tmp_path, f"id{d}name{d}price\n1{d}a, b{d}9.5\n"), "id")
        assert t.delimiter == d
        assert t.rows == [(2, {"id": "1", "name": "a, b", "price": "9.5"})]


def test_quoted_commas_survive(tmp_path):
    t = read_table(write(tmp_path, 'id,name\n1,"Shirt, blue"\n'), "id")
    assert t.rows[0][1]["name"] == "Shirt, blue"


def test_missing_id_column_names_columns_and_delimiter_hint(tmp_path):
    with pytest.raises(CsvError) as e:
        read_table(write(tmp_path, "sku,name\n1,a\n"), "id")
    assert "no id column 'id'" in str(e.value) and "sku, name" in str(e.value)


def test_wrong_encoding_is_a_clear_error_and_latin1_works(tmp_path):
    p = write(tmp_path, "id,name\n1,Kleid gr\xfcn\n".encode("latin-1"))
    with pytest.raises(CsvError, match="not valid utf-8.*line 2.*--encoding"):
        read_table(p, "id")
    assert read_table(p, "id", encoding="latin-1").rows[0][1]["name"] == "Kleid grün"


def test_utf8_bom_is_ignored(tmp_path):
    t = read_table(write(tmp_path, "\ufeffid,name\n1,a\n"), "id")
    assert t.columns == ["id", "name"]


def test_binary_and_empty_files_are_rejected(tmp_path):
    with pytest.raises(CsvError, match="empty"):
        read_table(write(tmp_path, ""), "id")
    with pytest.raises(CsvError, match="NUL"):
        read_table(write(tmp_path, b"\xff\xd8\xff\xe0\x00\x10JFIF\x00"), "id")
    with pytest.raises(CsvError, match="not found"):
        read_table(tmp_path / "nope.csv", "id")


def test_bad_rows_are_reported_with_line_numbers_and_good_rows_kept(tmp_path):
    text = "id,name,price\n1,a,1\n2,b\n,c,3\n1,dup,4\n3,d,5,extra\n\n4,e,6\n"
    t = read_table(write(tmp_path, text), "id")
    assert [r[1]["id"] for r in t.rows] == ["1", "4"]
    reasons = {(b.row, b.item_id): b.reason for b in t.bad}
    assert reasons[(3, "2")] == "2 fields, header has 3"
    assert reasons[(4, "")].startswith("empty id")
    assert reasons[(5, "1")] == "duplicate id (first seen on line 2)"
    assert reasons[(6, "3")] == "4 fields, header has 3"


def test_column_types_keep_leading_zero_ids_as_text(tmp_path):
    t = read_table(write(tmp_path, "article_id,product_code,price,colour\n0111565001,111565,0.02,Black\n0222,222,1,\n"), "article_id")
    types = column_types(t)
    assert types == {"article_id": str, "product_code": int, "price": float, "colour": str}
    assert typed(t.rows[1][1], types, skip={"article_id"}) == ({"product_code": 222, "price": 1.0}, [])


def test_a_mostly_numeric_column_stays_numeric_and_its_bad_cells_are_named(tmp_path):
    prices = [f"{10 + i}.50" for i in range(27)] + ["N/A", "$12", "12,50"]  # 90% numbers
    lines = "".join(f'{i},"{p}",{i % 4},{i}\n' for i, p in enumerate(prices, 1))
    t = read_table(write(tmp_path, "id,price,size,stock\n" + lines + '31,,1,"2.5"\n'), "id")
    types = column_types(t)
    assert types == {"id": int, "price": float, "size": int, "stock": float}  # a few floats: float
    by_id = {r["id"]: r for _, r in t.rows}
    assert typed(by_id["1"], types, skip={"id"}) == ({"price": 10.5, "size": 1, "stock": 1.0}, [])
    for row_id, cell in (("28", "N/A"), ("29", "$12"), ("30", "12,50")):
        attrs, problems = typed(by_id[row_id], types, skip={"id"})
        assert "price" not in attrs and attrs["size"] == int(row_id) % 4
        assert problems == [f"column 'price': {cell!r} is not a number (the column is numeric); "
                            "stored empty, the rest of the row imported"]


def test_a_declared_numeric_column_is_numeric_whatever_its_cells_hold(tmp_path):
    t = read_table(write(tmp_path, 'id,price\n1,10\n2,N/A\n3,$12\n4,"12,50"\n5,20\n'), "id")
    assert column_types(t)["price"] is str  # 2 numbers in 5: text, unless it is the price column
    types = column_types(t, numeric=["price"])
    assert types["price"] is int
    rows = [typed(r, types, skip={"id"}) for _, r in t.rows]
    assert [attrs for attrs, _ in rows] == [{"price": 10}, {}, {}, {}, {"price": 20}]
    assert [len(problems) for _, problems in rows] == [0, 1, 1, 1, 0]


def test_zero_padded_codes_keep_their_column_text(tmp_path):
    codes = "".join(f"{i},{100 + i}\n" for i in range(1, 20)) + "20,0111565\n"
    types = column_types(read_table(write(tmp_path, "id,code\n" + codes), "id"))
    assert types["code"] is str


def test_a_quote_left_open_is_reported_not_swallowed(tmp_path):
    t = read_table(write(tmp_path, 'id,name\n1,a\n2,"b\n3,c\n4,d\n'), "id")
    assert [r["id"] for _, r in t.rows] == ["1"]
    assert t.bad == [BadRow(3, "", "unterminated quote: read to the end of the file as one field; "
                                   "lines 3-5 not imported")]
    t = read_table(write(tmp_path, 'id,name\n1,"a"b\n2,"multi\nline"\n3,c\n'), "id")
    assert [(line, r["id"]) for line, r in t.rows] == [(3, "2"), (5, "3")]  # a record's first line
    assert [(b.row, b.reason.split(";")[1].strip()) for b in t.bad] == [(2, "line 2 not imported")]
    assert t.bad[0].reason.startswith("malformed CSV")


def test_only_regular_files_are_read(tmp_path):
    fifo = tmp_path / "feed.csv"
    os.mkfifo(fifo)
    with pytest.raises(CsvError, match=r"not a regular file \(pipe \(FIFO\)\)"):
        within(10, lambda: read_table(fifo, "id"))  # used to wait forever for a writer
    with pytest.raises(CsvError, match=r"/dev/zero: not a regular file \(character device\)"):
        within(10, lambda: read_table(Path("/dev/zero"), "id"))
    with pytest.raises(CsvError, match="not a regular file \\(directory\\)"):
        read_table(tmp_path, "id")


def test_a_file_above_the_byte_cap_is_refused_unread(tmp_path):
    big = tmp_path / "big.csv"
    with big.open("wb") as f:
        f.truncate(MAX_CSV_BYTES + 1)  # sparse: no disk, and never read
    with pytest.raises(CsvError, match=f"file too large: {MAX_CSV_BYTES + 1} bytes > cap {MAX_CSV_BYTES}"):
        within(10, lambda: read_table(big, "id"))
