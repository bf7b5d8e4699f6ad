"""Reading catalogue CSVs: delimiters, encodings, ragged rows, duplicate ids, typing."""

from pathlib import Path

import pytest

from stylesense.catalog.csvtable import CsvError, column_types, read_table, typed


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
    assert typed(t.rows[1][1], types, skip={"article_id"}) == {"product_code": 222, "price": 1.0}
