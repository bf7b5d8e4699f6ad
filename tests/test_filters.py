"""Metadata filters: parsing, case- and type-tolerant matching, price budget, unknown columns."""

import pytest

from stylesense.catalog.filters import FilterError, Filters


def test_parse_and_match():
    f = Filters.parse(["gender=men", "articleType=Tshirts", "articleType=Shirts"], max_price=20)
    assert f.where == {"gender": ("men",), "articleType": ("Tshirts", "Shirts")}
    assert f.matches({"gender": "Men", "articleType": "Shirts", "price": 19.99})
    assert not f.matches({"gender": "Men", "articleType": "Shirts", "price": 20.5})
    assert not f.matches({"gender": "Women", "articleType": "Shirts", "price": 5})
    assert not f.matches({"gender": "Men", "articleType": "Shirts"})  # no price: outside a budget


def test_numbers_match_their_text():
    f = Filters.parse(["year=2011"])
    assert f.matches({"year": 2011}) and f.matches({"year": 2011.0}) and not f.matches({"year": 2012})


def test_errors():
    with pytest.raises(FilterError, match="COLUMN=VALUE"):
        Filters.parse(["gender"])
    with pytest.raises(FilterError, match="above"):
        Filters.parse([], min_price=10, max_price=5)
    with pytest.raises(FilterError, match="colour"):
        Filters.parse(["colour=red"]).check_columns({"gender", "price"})
    with pytest.raises(FilterError, match="price"):
        Filters.parse([], min_price=1).check_columns({"gender"})


@pytest.mark.parametrize("bounds", [{"min_price": float("nan")}, {"max_price": float("nan")},
                                    {"min_price": float("-inf")}, {"max_price": float("inf")}])
def test_a_price_bound_must_be_a_finite_number(bounds):
    # NaN compares false with every price: it would quietly filter nothing, not be an error
    with pytest.raises(FilterError, match="must be a finite number"):
        Filters.parse([], **bounds)


def test_a_list_column_matches_when_any_element_does():
    # Gorse items carry a list of categories: "in category Shoes" is membership
    f = Filters.parse(["categories=shoes"])
    assert f.matches({"categories": ["Sale", "Shoes"]}) and f.matches({"categories": "Shoes"})
    assert not f.matches({"categories": ["Sale"]}) and not f.matches({"categories": []})
    assert not f.matches({})
