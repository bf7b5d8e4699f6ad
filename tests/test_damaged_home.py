"""A damaged home says what is wrong and how to fix it: one `error:` line naming the file and
the repair, exit status 2, no traceback, from the real command line on really damaged files."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from stylesense.cli import app
from stylesense.vision.adapter import FORMAT, VERSION

runner = CliRunner()


def error_line(home: Path, *args: str) -> str:
    """The one line a failing command prints, after checking it failed cleanly."""
    r = runner.invoke(app, ["--home", str(home), "--threads", "1", *args])
    assert r.exit_code == 2, r.output
    assert not isinstance(r.exception, Exception) and "Traceback" not in r.output  # only SystemExit
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.output
    return lines[0]


def truncate(path: Path) -> None:
    os.truncate(path, path.stat().st_size // 2)


def test_a_truncated_index_names_the_file_and_the_rebuild(home_copy):
    index = home_copy / "index" / "catalog.ssidx"
    truncate(index)
    line = error_line(home_copy, "search", "--item", "1")
    assert f"index file {index} is damaged (truncated zip)" in line
    assert "stylesense doctor --repair" in line and "stylesense index build" in line


@pytest.mark.parametrize("text, reason", [
    ('{"embedder": "lite0", ', "not valid JSON"),
    ("\xff\xfe garbage", "not valid JSON"),
    ("[1, 2, 3]", "not a JSON object"),
    ('{"embeder": "lite0"}', "unknown setting(s) embeder"),
])
def test_a_corrupt_config_says_what_is_wrong(home_copy, text, reason):
    config = home_copy / "config.json"
    config.write_bytes(text.encode("latin-1"))
    line = error_line(home_copy, "catalog", "list")
    assert f"config {config} is damaged ({reason}" in line
    assert "restore it from a backup" in line and "stylesense doctor --repair" in line


def test_a_lost_config_is_not_silently_replaced_by_defaults(home_copy):
    """Defaults could name another embedder than the one that made the stored features."""
    config = home_copy / "config.json"
    config.unlink()
    line = error_line(home_copy, "catalog", "list")
    assert f"config {config} is missing, though the home holds a database" in line
    assert "stylesense doctor --repair" in line and not config.exists()


@pytest.mark.parametrize("damage, reason", [
    (truncate, "database disk image is malformed"),
    (lambda p: p.write_bytes(b"not a database, just text" * 50), "file is not a database"),
])
def test_a_damaged_database_says_restore_from_a_backup(home_copy, damage, reason):
    database = home_copy / "stylesense.db"
    assert not (home_copy / "stylesense.db-wal").exists()  # everything is in the file we damage
    damage(database)
    line = error_line(home_copy, "catalog", "list")
    assert f"database {database} is damaged ({reason})" in line and "restore it from a backup" in line


def test_a_damaged_model_says_retrain(home_copy):
    model = home_copy / "recommenders" / "popular.npz"
    truncate(model)
    line = error_line(home_copy, "recommend", "--user", "alice")
    assert f"model file {model} is damaged (truncated zip)" in line
    assert "retrain it with `stylesense train --model popular`" in line


def test_a_damaged_adapter_says_where_it_came_from(home_copy):
    config = json.loads((home_copy / "config.json").read_text())
    (home_copy / "config.json").write_text(json.dumps({**config, "adapter": "adapter.npz"}))
    (home_copy / "adapter.npz").write_bytes(b"PK\x03\x04 torn")
    line = error_line(home_copy, "index", "build")
    assert f"adapter file {home_copy / 'adapter.npz'} is damaged" in line
    assert "stylesense init --adapter" in line


def test_an_unsupported_adapter_is_damaged_too(home_copy):
    np.savez(home_copy / "adapter.npz", header=np.frombuffer(json.dumps(
        {"format": FORMAT, "version": VERSION + 1}).encode(), dtype=np.uint8),
        **{k: np.zeros((2, 2)) for k in ("mean", "w1", "b1", "w2", "b2", "skip")})
    config = json.loads((home_copy / "config.json").read_text())
    (home_copy / "config.json").write_text(json.dumps({**config, "adapter": "adapter.npz"}))
    assert "(unsupported adapter format)" in error_line(home_copy, "index", "build")


def test_home_pointing_at_a_file_through_the_installed_command(tmp_path):
    """The real entry point (not the test runner): stderr holds one line, no traceback."""
    not_a_folder = tmp_path / "notes.txt"
    not_a_folder.write_text("hello")
    r = subprocess.run([sys.executable, "-m", "stylesense.cli", "--home", str(not_a_folder), "catalog", "list"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.strip().splitlines() == [
        f"error: home {not_a_folder} is a file, not a folder: give --home (or $STYLESENSE_HOME) a folder; "
        "a missing one is created"
    ]
    assert not_a_folder.read_text() == "hello"
