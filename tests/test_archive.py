"""An uploaded zip of photos is unpacked without trusting it."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

from stylesense.catalog.archive import extract_photos, guess_template
from stylesense.errors import InvalidInput


def zipped(members: dict[str, bytes], compression: int = zipfile.ZIP_STORED) -> io.BytesIO:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as z:
        for name, data in members.items():
            z.writestr(name, data)
    buf.seek(0)
    return buf


def test_photos_and_csvs_are_written_and_the_rest_skipped(tmp_path: Path) -> None:
    files = extract_photos(zipped({"shop/img/a1.jpg": b"1", "shop/img/a2.PNG": b"2", "shop/list.csv": b"id\n",
                                   "shop/run.sh": b"rm -rf /", ".hidden.jpg": b"x", "__MACOSX/shop/a1.jpg": b"x"}),
                           tmp_path)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in files) == ["shop/img/a1.jpg", "shop/img/a2.PNG",
                                                                         "shop/list.csv"]
    assert guess_template(files, tmp_path, ["a1", "a2", "a3"]) in ("shop/img/{id}.jpg", "shop/img/{id}.PNG")
    assert guess_template(files, tmp_path, ["zz"]) is None


@pytest.mark.parametrize("name", ["../escape.jpg", "/etc/cron.d/x.jpg", "a/../../b.jpg", "C:/win.jpg", "..\\win.jpg"])
def test_a_member_leading_outside_the_folder_refuses_the_whole_zip(tmp_path: Path, name: str) -> None:
    dest = tmp_path / "up"
    with pytest.raises(InvalidInput, match="outside"):
        extract_photos(zipped({"ok.jpg": b"fine", name: b"evil"}), dest)
    assert not any(p.is_file() for p in tmp_path.rglob("*"))  # what was written first is gone too


def test_a_zip_bomb_stops_at_the_cap_by_the_bytes_inflated(tmp_path: Path) -> None:
    bomb = zipped({"big.jpg": b"\0" * (8 << 20)}, zipfile.ZIP_DEFLATED)  # 8 MB in ~8 KB
    assert len(bomb.getvalue()) < 100_000
    with pytest.raises(InvalidInput, match="inflates"):
        extract_photos(bomb, tmp_path, max_bytes=1 << 20)
    assert not (tmp_path / "big.jpg").exists()


def test_too_many_members_and_not_a_zip_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="members"):
        extract_photos(zipped({f"{i}.jpg": b"x" for i in range(5)}), tmp_path, max_members=4)
    with pytest.raises(InvalidInput, match="not a zip"):
        extract_photos(io.BytesIO(b"PK\x03\x04 but not really"), tmp_path)
