"""What a catalogue's columns are for: roles by name across feeds, facets by cardinality."""

from __future__ import annotations

from stylesense.catalog.facets import column_roles, facets


def test_roles_are_found_under_each_feeds_own_names() -> None:
    kaggle = ["id", "gender", "masterCategory", "subCategory", "articleType", "baseColour", "productDisplayName"]
    hm = ["article_id", "product_code", "prod_name", "product_type_name", "colour_group_name", "index_group_name"]
    assert column_roles(kaggle) == {"name": "productDisplayName", "category": "articleType",
                                    "colour": "baseColour", "gender": "gender"}
    assert column_roles(hm) == {"name": "prod_name", "category": "product_type_name",
                                "colour": "colour_group_name", "gender": "index_group_name"}
    assert column_roles(["Category", "Colour"]) == {"category": "Category", "colour": "Colour"}
    assert column_roles(["sku", "size"]) == {}


def test_facets_are_the_few_valued_text_columns_roles_first_and_the_price_a_range() -> None:
    rows = [{"articleType": t, "baseColour": c, "name": f"product {i}", "price": 10.0 + i, "season": "Summer",
             "size": s} for i, (t, c, s) in enumerate([("Shoes", "Black", "M"), ("Bags", "Red", "L"),
                                                        ("Shoes", "Red", "S"), ("Shoes", "Blue", "M")])]
    rows.append({"articleType": "Bags", "price": float("nan")})  # a missing price is no bound
    found = facets(rows)
    assert list(found.values) == ["articleType", "baseColour", "size"]  # names are unique; one season: no filter
    assert found.values["articleType"] == ["Shoes", "Bags"]  # most common first
    assert found.price_range == (10.0, 13.0)
    assert found.roles["name"] == "name"
    assert facets([{"x": "a"}]).price_range is None


def test_a_category_with_many_values_is_still_a_facet_but_another_such_column_is_not() -> None:
    rows = [{"articleType": f"type {i % 80}", "pattern": f"pattern {i % 80}"} for i in range(400)]
    assert list(facets(rows).values) == ["articleType"]
