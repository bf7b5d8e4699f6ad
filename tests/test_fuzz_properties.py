"""Property-based tests (hypothesis) of everything that parses outside input: the catalogue CSV
reader, the filters parser, the event importer and the image decoder.

The one property: any input gives a result or the parser's own error (CsvError, FilterError,
ValueError, ImageError), never another exception, so every surface can turn a bad input into a
message instead of a traceback; and an event import that is refused stores nothing. Where the
expected result is known (a CSV that csv.writer wrote, a filter that matched) it is checked too.
Example counts are bounded so the file runs in well under a minute; fuzz/ runs the same parsers
for longer, guided by coverage.
"""

from __future__ import annotations

import csv
import io
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from typer.testing import CliRunner

from stylesense.catalog.csvtable import CsvError, read_table
from stylesense.catalog.filters import FilterError, Filters, _norm
from stylesense.catalog.store import make_engine
from stylesense.cli import app
from stylesense.events import EventStore, import_events
from stylesense.vision.images import ImageError, load_image
from stylesense.weights import DEFAULT_WEIGHTS

BOUNDED = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Text made mostly of what CSV parsing turns on (delimiters, quotes, line breaks, a BOM, NUL,
# Unicode digits and spaces), with any other character mixed in.
STRUCTURE = list('id,;\t|"\'\r\n =0123456789.eE+-x\ufeff\x00\u00a0\u2003\uff11\u0663é')
csvish = st.text(st.sampled_from(STRUCTURE) | st.characters(), max_size=400)
file_bytes = st.one_of(
    st.binary(max_size=1500),
    csvish.map(lambda s: s.encode("utf-8", "surrogatepass")),
    st.builds(lambda head, body: (head + body).encode("utf-8", "surrogatepass"),
              st.sampled_from(["id,name,price\n", "id;name\n", "user,item,ts,type,price\n", "\ufeffid\tx\n"]),
              csvish),
)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    """One file that each example overwrites (hypothesis reuses module-scoped fixtures)."""
    return tmp_path_factory.mktemp("fuzz") / "input.csv"


# -- catalogue CSV -------------------------------------------------------------------------
@BOUNDED
@given(data=file_bytes, id_column=st.sampled_from(["id", "name", "user", ""]),
       encoding=st.sampled_from(["utf-8", "latin-1", "cp1252", "utf-16", "no-such-codec"]))
def test_read_table_gives_a_table_or_a_csv_error(scratch, data, id_column, encoding):
    scratch.write_bytes(data)
    try:
        table = read_table(scratch, id_column, encoding)
    except CsvError:
        return
    ids = [values[id_column] for _, values in table.rows]
    assert all(ids) and len(set(ids)) == len(ids)
    assert all(list(values) == table.columns for _, values in table.rows)
    lines = [line for line, _ in table.rows]
    assert lines == sorted(lines) and all(line >= 2 for line in lines)
    assert all(b.row >= 2 and b.reason for b in table.bad)


cell = st.text(st.characters(exclude_characters="\x00", exclude_categories=("Cs",)), max_size=12)
names = st.lists(st.from_regex(r"[a-z][a-z0-9_]{0,7}", fullmatch=True), min_size=1, max_size=4, unique=True)


@BOUNDED
@given(names=names.filter(lambda n: "id" not in n), delimiter=st.sampled_from(",;\t|"), data=st.data())
def test_read_table_reads_back_what_csv_writer_wrote(scratch, names, delimiter, data):
    header = ["id", *names]
    rows = data.draw(st.lists(st.lists(cell, min_size=len(header), max_size=len(header)), max_size=12))
    buf = io.StringIO(newline="")
    csv.writer(buf, delimiter=delimiter).writerows([header, *rows])
    scratch.write_bytes(buf.getvalue().encode("utf-8"))

    table = read_table(scratch, "id")
    expected, seen, bad = [], set(), 0
    for row in rows:
        values = [v.strip() for v in row]
        if not any(values):
            continue  # blank rows are skipped
        if not values[0] or values[0] in seen:
            bad += 1  # an empty or repeated id is a bad row
            continue
        seen.add(values[0])
        expected.append(dict(zip(header, values)))
    assert table.columns == header and table.delimiter == delimiter
    assert [values for _, values in table.rows] == expected
    assert len(table.bad) == bad


# -- filters -------------------------------------------------------------------------------
bound = st.none() | st.floats(allow_nan=True, allow_infinity=True) | st.integers(-10**6, 10**6)
attr_value = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=6)


@BOUNDED
@given(where=st.lists(st.text(st.sampled_from(list("ab= \tPé")) | st.characters(), max_size=10), max_size=5),
       min_price=bound, max_price=bound,
       items=st.lists(st.dictionaries(st.sampled_from(["a", "b", "price", "P"]), attr_value), max_size=6))
def test_filters_parse_gives_filters_or_a_filter_error_and_matches_what_they_say(where, min_price, max_price, items):
    try:
        f = Filters.parse(where, min_price, max_price)
    except FilterError:
        return
    assert all(col and col == col.strip() for col in f.where)
    assert f.active == bool(f.where or min_price is not None or max_price is not None)
    for attrs in items:
        try:
            f.check_columns(set(attrs))
        except FilterError:
            pass
        if not f.matches(attrs):
            continue
        for col, values in f.where.items():
            assert _norm(attrs.get(col)) in {v.casefold() for v in values}
        if f.min_price is not None or f.max_price is not None:
            price = attrs["price"]
            assert (f.min_price is None or price >= f.min_price) and (f.max_price is None or price <= f.max_price)


# -- event import --------------------------------------------------------------------------
TYPES = sorted(DEFAULT_WEIGHTS)
# A NUL byte (or text that is not UTF-8) refuses the whole file, by design: not in these cells.
no_nul = st.characters(exclude_characters="\x00", exclude_categories=("Cs",))
event_cell = {
    "user": st.sampled_from(["u1", "u2", " u3 ", ""]) | st.text(no_nul, max_size=6),
    "item": st.sampled_from(["i1", "0012", "i 2"]) | st.text(no_nul, max_size=6),
    "ts": st.sampled_from(["2024-01-02", "2024-01-02T03:04:05+02:00", "1700000000", "1700000000000",
                           "1e300", "-1e20", "nan", "2024-13-45", "", "\uff11\uff12", "\u0663"])
          | st.integers().map(str) | st.floats().map(str) | st.text(no_nul, max_size=10),
    "type": st.sampled_from([*TYPES, " VIEW ", "wishlist", ""]) | st.text(no_nul, max_size=6),
    "price": st.sampled_from(["", "12.5", "-1", "1e400", "nan", "\uff15", " 3 "]) | st.floats().map(str)
             | st.text(no_nul, max_size=6),
}
event_rows = st.lists(st.fixed_dictionaries(event_cell), max_size=8)


def events_csv(rows: list[dict[str, str]], delimiter: str) -> bytes:
    buf = io.StringIO(newline="")
    w = csv.DictWriter(buf, fieldnames=list(event_cell), delimiter=delimiter,
                       quoting=csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL, escapechar="\\")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue().encode("utf-8", "surrogatepass")


event_files = st.one_of(file_bytes, st.builds(events_csv, event_rows, st.sampled_from([",", ";", "\t"])))
event_options = st.fixed_dictionaries(
    {"user_column": st.just("user"), "item_column": st.just("item"), "time_column": st.just("ts")},
    optional={"price_column": st.sampled_from(["price", "no_such_column"]),
              "time_unit": st.sampled_from(["s", "ms"]),
              "delimiter": st.sampled_from([",", "\t"])},
).flatmap(lambda o: st.one_of(st.just({**o, "type_column": "type"}),
                              st.sampled_from(["view", "purchase", "wishlist"]).map(lambda t: {**o, "type": t})))


@pytest.fixture(scope="module")
def event_store(tmp_path_factory):
    """A real SQLite store shared by the examples: each one checks its own before/after count."""
    return EventStore(make_engine(f"sqlite:///{tmp_path_factory.mktemp('events') / 'events.db'}"))


@BOUNDED
@given(data=event_files, options=event_options)
def test_event_import_gives_a_report_or_an_error_and_never_a_partial_write(scratch, event_store, data, options):
    scratch.write_bytes(data)
    before = event_store.count()
    try:
        report = import_events(event_store, scratch, **options)
    except ValueError:  # CsvError included: the whole file is refused
        assert event_store.count() == before, "a refused import stored events"
        return
    assert report.rows == report.inserted + report.duplicates + len(report.bad)
    assert event_store.count() == before + report.inserted
    assert all(b.row >= 2 and b.reason for b in report.bad)


@BOUNDED
@given(rows=event_rows, delimiter=st.sampled_from([",", ";", "\t"]))
def test_event_import_reports_bad_rows_one_by_one(scratch, event_store, rows, delimiter):
    """A well-formed file with every named column is never refused as a whole for what its
    cells hold: each bad row is reported with its line, and the others are stored."""
    scratch.write_bytes(events_csv(rows, delimiter))
    before = event_store.count()
    try:
        report = import_events(event_store, scratch, user_column="user", item_column="item", time_column="ts",
                               type_column="type", price_column="price")
    except CsvError as e:
        assert "no data rows" in str(e) and event_store.count() == before
        return
    assert report.rows == report.inserted + report.duplicates + len(report.bad) > 0
    assert event_store.count() == before + report.inserted


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=event_files)
def test_cli_events_import_answers_with_a_report_or_a_message(tmp_path_factory, data):
    """The same inputs through `stylesense events import`: an exit status and words, no traceback."""
    root = tmp_path_factory.mktemp("cli")
    path = root / "log.csv"
    path.write_bytes(data)
    result = CliRunner().invoke(app, ["--home", str(root / "home"), "events", "import", str(path),
                                      "--user-column", "user", "--item-column", "item", "--time-column", "ts",
                                      "--type-column", "type"])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert result.exit_code in (0, 1, 2)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=file_bytes)
def test_cli_catalog_import_answers_with_a_report_or_a_message(tmp_path_factory, data):
    """Any file through `stylesense catalog import` (no photo exists, so no CNN runs)."""
    root = tmp_path_factory.mktemp("cli")
    path = root / "styles.csv"
    path.write_bytes(data)
    result = CliRunner().invoke(app, ["--home", str(root / "home"), "catalog", "import", str(path),
                                      "--images", "{id}.jpg"])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert result.exit_code in (0, 1, 2)


# -- images --------------------------------------------------------------------------------
def _encoded(fmt: str, mode: str, **save) -> bytes:
    img = Image.new(mode, (23, 17), 100 if mode in ("L", "P", "I;16") else (200, 30, 30, 128)[: len(mode)])
    out = io.BytesIO()
    img.save(out, fmt, **save)
    return out.getvalue()


SEEDS = [_encoded("JPEG", "RGB"), _encoded("PNG", "RGBA"), _encoded("PNG", "I;16"), _encoded("GIF", "P"),
         _encoded("BMP", "RGB"), _encoded("TIFF", "CMYK"), _encoded("WEBP", "RGB"), _encoded("JPEG", "L", progressive=True)]


@pytest.mark.filterwarnings("ignore::UserWarning:PIL")  # PIL's notes on damaged TIFF tags
@BOUNDED
@given(seed=st.sampled_from(SEEDS), edits=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=8),
       cut=st.none() | st.integers(0, 4000), draft=st.none() | st.sampled_from([8, 224]))
def test_load_image_gives_rgb_or_an_image_error(seed, edits, cut, draft):
    data = bytearray(seed[:cut] if cut is not None else seed)
    for pos, byte in edits:
        if data:
            data[pos % len(data)] = byte
    try:
        img = load_image(bytes(data), max_pixels=1_000_000, draft=draft)
    except ImageError as e:
        assert str(e)
        return
    assert img.mode == "RGB" and img.width > 0 and img.height > 0


# -- what the fuzzing found: each was a crash or a wrong answer, fixed, kept as a regression ----
def test_a_nan_price_passes_no_budget():
    """It compared false with both bounds, so an item with a NaN price matched every budget."""
    assert not Filters.parse([], 0, 10).matches({"price": math.nan})
    assert Filters.parse([], 0, 10).matches({"price": 5})


def test_event_times_finer_than_a_microsecond_are_cut_to_it(scratch, event_store):
    """Nanosecond ISO times and epoch seconds with 7 decimals failed the whole import with a
    TypeError (a traceback on the command line): pandas parsed them at nanoseconds."""
    scratch.write_text("user,item,ts,type\nfine1,i1,1700000000.1234567,view\n"
                       "fine1,i2,2024-01-01T00:00:00.123456789Z,view\n")
    report = import_events(event_store, scratch, user_column="user", item_column="item", time_column="ts",
                           type_column="type")
    assert report.inserted == 2 and not report.bad
    stored = event_store.frame(users=["fine1"])["ts"].dt.microsecond.tolist()
    assert sorted(stored) == [123456, 123456]


def test_unicode_digits_in_a_time_are_one_bad_row(scratch, event_store):
    """Fullwidth "１２" matched the number pattern (\\d is any Unicode digit) and pandas refused
    it: a ValueError that refused the whole file instead of reporting the one row."""
    scratch.write_text("user,item,ts,type\nuni,i1,1700000000,view\nuni,i2,\uff11\uff12,view\n", encoding="utf-8")
    report = import_events(event_store, scratch, user_column="user", item_column="item", time_column="ts",
                           type_column="type")
    assert report.inserted == 1 and [b.row for b in report.bad] == [3]
