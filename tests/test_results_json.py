"""Results serialise themselves: one JSON shape per result, used by the CLI's --json and the
REST API alike, with no local paths in it."""

from __future__ import annotations

import json

from stylesense.catalog.csvtable import BadRow
from stylesense.engine import Hit, ImportReport
from stylesense.events import EventImportReport
from stylesense.recommenders import Recommendation


def test_each_result_is_plain_json():
    hit = Hit("15970", 0.123456789, {"price": 12.5, "gender": "Men"}, "/srv/shop/photos/15970.jpg")
    assert hit.to_dict() == {"item_id": "15970", "score": 0.123457, "attrs": {"price": 12.5, "gender": "Men"}}
    rec = Recommendation("0706016001", 3.0000004, "similar to 0706016002 you interacted with")
    assert rec.to_dict() == {"item_id": "0706016001", "score": 3.0, "reason": "similar to 0706016002 you interacted with"}
    bad = BadRow(7, "x1", "truncated image")
    report = ImportReport(rows=3, added=1, embedded=1, bad=[bad], warnings=[BadRow(5, "x2", "price: 'N/A'")],
                          report_path=None)
    shape = report.to_dict()
    assert shape["ok"] is False and shape["bad"] == [{"row": 7, "item_id": "x1", "reason": "truncated image"}]
    assert shape["warnings"][0]["row"] == 5 and shape["rows"] == 3 and shape["added"] == 1
    events = EventImportReport(rows=4, inserted=2, duplicates=1, bad=[bad]).to_dict()
    assert events == {"rows": 4, "inserted": 2, "duplicates": 1, "bad": [bad.to_dict()]}
    for value in (hit.to_dict(), rec.to_dict(), shape, events):
        assert json.loads(json.dumps(value)) == value
    assert "/srv" not in json.dumps(hit.to_dict())
