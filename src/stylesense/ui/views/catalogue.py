"""Import a catalogue: a CSV plus its photos (a zip upload, or a folder under one of the
server's import roots), with a progress bar and the bad-rows report to download.

Uploads are unpacked into the home (``uploads/<time>/``), never trusted: the zip is checked
member by member (catalog.archive), and the import may read only that folder, so a row
naming ``/etc/passwd`` is a bad row, not a leak.
"""

from __future__ import annotations

import csv
import io
import os
from datetime import datetime, timezone
from pathlib import Path

import streamlit as st

from stylesense.catalog.archive import extract_photos, guess_template
from stylesense.catalog.csvtable import read_table
from stylesense.errors import InvalidInput
from stylesense.ui.common import IMPORT_ROOTS_ENV, guard, home

st.title("Catalogue")


def _roots() -> list[Path]:
    return [Path(p).resolve() for p in os.environ.get(IMPORT_ROOTS_ENV, "").split(os.pathsep) if p]


def _report_csv(rows: list[dict]) -> bytes:
    out = io.StringIO()
    w = csv.DictWriter(out, fieldnames=["kind", "row", "id", "reason"])
    w.writeheader()
    w.writerows(rows)
    return out.getvalue().encode()


def _relative(reason: str, prefixes: dict[str, str]) -> str:
    for prefix, by in prefixes.items():
        reason = reason.replace(prefix, by)
    return reason


with guard():
    ss = home()
    st.caption(f"{ss.store.count():,} items in the catalogue")
    where = st.radio("Photos from", ["A zip upload", "A folder on the server"], horizontal=True, key="cat_where")
    table = st.file_uploader("Catalogue CSV", type=["csv"], key="cat_csv")
    photos = None
    folder = None
    if where == "A zip upload":
        photos = st.file_uploader("Photos (zip)", type=["zip"], key="cat_zip")
    else:
        roots = _roots()
        if not roots:
            st.info("The server offers no folders: start it with `stylesense ui --import-root DIR`.")
        else:
            choices = [str(r) for r in roots] + sorted(str(p) for r in roots for p in r.iterdir() if p.is_dir())
            folder = st.selectbox("Folder", choices, key="cat_folder")
    id_column = st.text_input("Id column", "id", key="cat_id").strip()
    template = st.text_input("Photo path template (relative to the photos)", "", key="cat_template",
                             placeholder="guessed from the photos' names, e.g. images/{id}.jpg")
    if st.button("Import", key="cat_import", type="primary", disabled=table is None):
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%f")
        upload_dir = ss.home.root / "uploads" / stamp
        upload_dir.mkdir(parents=True)
        csv_path = upload_dir / "catalogue.csv"
        csv_path.write_bytes(table.getvalue())
        root = Path(folder) if folder else upload_dir
        files: list[Path] = []
        if photos is not None:
            with st.spinner("unpacking the photos..."):
                files = extract_photos(io.BytesIO(photos.getvalue()), upload_dir)
        elif folder:
            files = [p for p in root.rglob("*") if p.is_file()]
        ids = [v[id_column] for _, v in read_table(csv_path, id_column).rows] if not template else []
        chosen = template or guess_template(files, root, ids)
        if chosen is None:
            raise InvalidInput(f"no photo is named after an id of column {id_column!r}: give the path template")
        bar = st.progress(0.0, text="importing...")
        report = ss.import_catalog(csv_path, str(root / chosen), id_column=id_column,
                                   progress=lambda done, total: bar.progress(done / max(total, 1),
                                                                             text=f"{done:,} / {total:,} rows"),
                                   allowed_roots=[upload_dir, root])
        bar.progress(1.0, text="done")
        st.success(f"{report.rows:,} rows: {report.added:,} added, {report.updated:,} updated, "
                   f"{report.unchanged:,} unchanged, {report.embedded:,} photos embedded")
        # Reasons name files under the upload folder: shown relative to it, never the server's folders.
        hide = {f"{root}/": "", f"{upload_dir}/": ""}
        problems = [{"kind": kind, "row": r.row, "id": r.item_id, "reason": _relative(r.reason, hide)}
                    for kind, rows in (("bad", report.bad), ("warning", report.warnings)) for r in rows]
        st.session_state["cat_report"] = problems
    if problems := st.session_state.get("cat_report"):
        st.subheader(f"{len(problems)} rows with problems")
        st.dataframe(problems, width="stretch")
        st.download_button("Download the report (CSV)", _report_csv(problems), "import-report.csv", "text/csv",
                           key="cat_download")
