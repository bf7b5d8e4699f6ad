"""One error hierarchy: everything the library raises on purpose is a StyleSenseError of one of
five kinds, and the CLI maps them once (an `error:` line, exit status 2, no traceback)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from stylesense.catalog.csvtable import CsvError
from stylesense.catalog.filters import FilterError, Filters
from stylesense.cli import app
from stylesense.engine import StyleSense
from stylesense.errors import Conflict, Damaged, InvalidInput, NotFound, NotReady, StyleSenseError
from stylesense.recommenders import make_recommender
from stylesense.vision.images import ImageError, load_image


def test_the_specific_errors_are_kinds_of_invalid_input():
    for cls in (CsvError, FilterError, ImageError):
        assert issubclass(cls, InvalidInput) and issubclass(cls, ValueError)
    for cls in (InvalidInput, NotFound, NotReady, Conflict, Damaged):
        assert issubclass(cls, StyleSenseError)
    assert str(NotFound("no item 'x'")) == "no item 'x'"  # unlike KeyError: no added quotes


def test_library_entry_points_raise_the_hierarchy(tmp_path):
    ss = StyleSense(tmp_path / "home")
    with pytest.raises(NotReady, match="no index yet"):
        ss.search(item="1")
    with pytest.raises(NotReady, match="no events yet"):
        ss.behaviour.train("popular")
    with pytest.raises(NotReady, match="no model trained"):
        ss.behaviour.recommend("u1")
    with pytest.raises(InvalidInput, match="unknown model"):
        make_recommender("als2")
    with pytest.raises(InvalidInput, match="factors"):
        make_recommender("als", factors="many")
    with pytest.raises(InvalidInput, match="finite"):
        Filters.parse(min_price=float("nan"))
    with pytest.raises(ImageError, match="empty"):
        load_image(b"")
    with pytest.raises(InvalidInput, match="cannot be set"):
        ss.configure({"embedder": "lite2"})


@pytest.mark.parametrize("args, message", [
    (["search", "--item", "42"], "no index yet"),
    (["recommend", "--user", "u1"], "no model trained yet"),
    (["train", "--model", "als", "--param", "factors=many"], "factors"),
    (["train", "--model", "nope"], "unknown model"),
    (["events", "import", "/nonexistent.csv", "--preset", "hm"], "file not found"),
    (["config", "embedder=lite2"], "cannot be set"),
    (["search", "--item", "42", "--min-price", "nan"], "finite"),
])
def test_the_cli_maps_every_library_error_once(tmp_path, args, message):
    result = CliRunner().invoke(app, ["--home", str(tmp_path / "home"), *args])
    assert result.exit_code == 2, result.output
    assert "error:" in result.output and message in result.output
    assert "Traceback" not in result.output and result.exception is None or isinstance(result.exception, SystemExit)
