"""atheris harness: CSV loading, the catalogue reader and the event log reader on the same
bytes. Either must give its table and per-row reports or refuse the whole file with a
CsvError; any other exception (the options here are valid, so a ValueError is a finding too),
a hang or a memory blow-up is a finding.

    python fuzz/csv_files.py CORPUS_DIR [libFuzzer flags]   (python fuzz/run.py sets them up)
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import atheris
import numpy  # noqa: F401 - imported before instrumentation: only our code is traced
import pandas  # noqa: F401

with atheris.instrument_imports(include=["stylesense"]):
    from stylesense.catalog.csvtable import CsvError, column_types, read_table, typed
    from stylesense.events.importer import read_events_csv

# The readers take a path: each input is written to this one file (fuzz/run.py points TMPDIR
# at a folder it removes afterwards; libFuzzer exits without running Python's clean-up).
PATH = Path(tempfile.gettempdir()) / f"stylesense-fuzz-{os.getpid()}.csv"


def TestOneInput(data: bytes) -> None:  # noqa: N802 - the name atheris calls
    PATH.write_bytes(data)
    try:
        table = read_table(PATH, "id")
    except CsvError:
        pass
    else:
        types = column_types(table, numeric=["price"] if "price" in table.columns else [])
        for _, values in table.rows:
            typed(values, types, skip={"id"})
    for layout in ({"type_column": "type", "price_column": "price"}, {"type": "view"}):
        try:
            read_events_csv(PATH, user_column="user", item_column="item", time_column="ts", **layout)
        except CsvError:
            pass


if __name__ == "__main__":
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()
