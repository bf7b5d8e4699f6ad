"""`stylesense doctor [--repair]` on really damaged homes: it finds each problem, rebuilds what
is derived (index, interrupted update, config, unloadable models) and never touches the
database."""

import json
import os
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from stylesense.catalog.store import Upsert
from stylesense.cli import app
from stylesense.doctor import check
from stylesense.engine import StyleSense
from stylesense.index import load_index
from stylesense.vision.adapter import FORMAT, VERSION, Adapter

runner = CliRunner()


def doctor(home: Path, *args: str) -> tuple[int, dict[str, dict]]:
    """(exit status, findings by check name) of `stylesense doctor --json`."""
    r = runner.invoke(app, ["--home", str(home), "--threads", "1", "doctor", "--json", *args])
    assert not isinstance(r.exception, Exception), r.output
    return r.exit_code, {f["check"]: f for f in json.loads(r.output)}


def test_a_healthy_home_passes_every_check(home_copy):
    code, found = doctor(home_copy)
    assert code == 0
    assert set(found) == {"config", "database", "index", "model popular"}
    assert all(f["ok"] and not f["repaired"] for f in found.values())
    assert "holds the 24 searchable items" in found["index"]["message"]
    assert "passed the integrity check" in found["database"]["message"]


def test_a_truncated_index_is_reported_then_rebuilt(home_copy):
    path = home_copy / "index" / "catalog.ssidx"
    os.truncate(path, path.stat().st_size // 2)
    torn = path.read_bytes()
    code, found = doctor(home_copy)
    assert code == 1 and not found["index"]["ok"]
    assert f"index file {path} is damaged (truncated zip)" in found["index"]["message"]
    assert path.read_bytes() == torn  # without --repair nothing changes

    code, found = doctor(home_copy, "--repair")
    assert code == 0 and found["index"]["repaired"], found
    assert len(load_index(path)) == 24
    assert [h.item_id for h in StyleSense(home_copy).search(item="1", k=3)]
    assert doctor(home_copy)[0] == 0


def test_an_interrupted_index_update_is_finished(home_copy):
    ss = StyleSense(home_copy)
    dim = ss.store.features()[1].shape[1]
    # a crash after the database commit and before the index save: one new item, one removal
    ss.store.upsert([Upsert("late", {"articleType": "Bags"}, None, "x", np.ones(dim, np.float32))])
    ss.store.mark_removed(["4"])
    before = ss.home.index_path.read_bytes()
    code, found = doctor(home_copy)
    assert code == 1 and "interrupted (1 items still to add, 1 to drop)" in found["index"]["message"]
    assert ss.home.index_path.read_bytes() == before

    code, found = doctor(home_copy, "--repair")
    assert code == 0 and found["index"]["repaired"]
    index = load_index(ss.home.index_path)
    pks = {it.item_id: it.pk for it in StyleSense(home_copy).items()}
    assert len(index) == 24 and pks["late"] in index and "4" not in pks


def test_an_index_that_disagrees_with_the_database_is_rebuilt(home_copy):
    path = home_copy / "index" / "catalog.ssidx"
    index = load_index(path)
    index.remove(index.ids()[:5])  # the bookkeeping still says they are indexed
    index.save(path)
    code, found = doctor(home_copy)
    assert code == 1 and "5 searchable items are missing from it" in found["index"]["message"]
    code, found = doctor(home_copy, "--repair")
    assert code == 0 and found["index"]["repaired"] and len(load_index(path)) == 24


def test_a_damaged_database_is_reported_and_never_touched(home_copy):
    database = home_copy / "stylesense.db"
    os.truncate(database, database.stat().st_size // 2)
    torn = database.read_bytes()
    code, found = doctor(home_copy, "--repair")
    assert code == 1 and list(found) == ["config", "database"]
    assert f"database {database} is damaged (database disk image is malformed)" in found["database"]["message"]
    assert "restore it from a backup" in found["database"]["message"]
    assert database.read_bytes() == torn and not list(home_copy.rglob("*.damaged"))


def test_a_damaged_model_is_moved_aside_for_a_retrain(home_copy):
    model = home_copy / "recommenders" / "popular.npz"
    model.write_bytes(b"")
    code, found = doctor(home_copy)
    assert code == 1 and f"model file {model} is damaged (empty file)" in found["model popular"]["message"]
    code, found = doctor(home_copy, "--repair")
    assert code == 0 and found["model popular"]["repaired"]
    assert "retrain it with `stylesense train --model popular`" in found["model popular"]["message"]
    assert not model.exists() and (model.parent / "popular.npz.damaged").exists()


def test_a_corrupt_config_is_rewritten_once_the_photos_confirm_the_embedder(home_copy):
    config = home_copy / "config.json"
    original = json.loads(config.read_text())
    config.write_text('{"embedder": "lite0", "pool')
    code, found = doctor(home_copy)
    assert code == 1 and list(found) == ["config", "database"] and "not valid JSON" in found["config"]["message"]

    code, found = doctor(home_copy, "--repair")
    assert code == 0 and found["config"]["repaired"], found
    assert "embedder lite0 (letterbox fit, gem pooling), confirmed by re-embedding 3 stored photos" in (
        found["config"]["message"])
    rewritten = json.loads(config.read_text())
    assert {k: rewritten[k] for k in ("embedder", "image_fit", "pooling", "adapter", "recommender")} == {
        k: original[k] for k in ("embedder", "image_fit", "pooling", "adapter", "recommender")}
    assert (home_copy / "config.json.damaged").read_text() == '{"embedder": "lite0", "pool'
    assert found["index"]["ok"] and found["model popular"]["ok"]


def test_a_config_nothing_can_confirm_is_left_alone(home_copy, tmp_path):
    ss = StyleSense(home_copy)
    hashes = ss.store.hashes()
    gone = str(tmp_path / "moved-away.jpg")  # every photo left its folder: nothing to re-embed
    ss.store.upsert([Upsert(item_id, attrs, gone, digest, None) for item_id, (digest, attrs, _) in hashes.items()])
    ss.store.engine.dispose()
    config = home_copy / "config.json"
    config.write_text("{oops")
    code, found = doctor(home_copy, "--repair")
    assert code == 1 and not found["config"]["ok"]
    assert "cannot be rewritten: no stored photo is still on disk unchanged" in found["config"]["message"]
    assert config.read_text() == "{oops" and not (home_copy / "config.json.damaged").exists()


def write_adapter(home: Path, features: dict, out_dim: int = 16) -> None:
    rng = np.random.default_rng(0)
    d, h = 1280, 8
    weights = {"mean": np.zeros(d), "w1": rng.standard_normal((d, h)), "b1": np.zeros(h),
               "w2": rng.standard_normal((h, out_dim)), "b2": np.zeros(out_dim), "skip": rng.standard_normal((d, out_dim))}
    Adapter(weights, {"format": FORMAT, "version": VERSION, "features": features}).save(home / "adapter.npz")
    config = json.loads((home / "config.json").read_text())
    (home / "config.json").write_text(json.dumps({**config, "adapter": "adapter.npz"}))


def test_an_adapter_is_checked_against_the_homes_recipe(home_copy):
    write_adapter(home_copy, {"embedder": "lite0", "image_fit": "letterbox", "pooling": "gem"})
    code, found = doctor(home_copy)  # the index still holds plain 1280-d vectors: rebuilt
    assert code == 1 and found["adapter"]["ok"]
    assert "holds 1280-d vectors, the home makes 16-d ones" in found["index"]["message"]
    code, found = doctor(home_copy, "--repair")
    assert code == 0 and found["index"]["repaired"] and load_index(home_copy / "index" / "catalog.ssidx").dim == 16

    write_adapter(home_copy, {"embedder": "lite0", "image_fit": "square", "pooling": "mean"})
    code, found = doctor(home_copy, "--repair")
    assert code == 1 and not found["adapter"]["ok"] and not found["index"]["ok"]
    assert "trained on embedder lite0 (square fit, mean pooling) features" in found["adapter"]["message"]


def test_check_without_a_home(tmp_path):
    assert [(f.name, f.ok) for f in check(tmp_path / "nowhere")] == [("home", False)]
    (tmp_path / "file").write_text("x")
    assert "is a file, not a folder" in check(tmp_path / "file")[0].message
