"""The CLI starts fast because it imports only what a command uses: each case runs a command in
a fresh interpreter and checks which heavy libraries ended up in ``sys.modules``. A behaviour
test, not a timing: bench/cli.py measures the seconds."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from stylesense.index import KINDS
from stylesense.recommenders import MODELS

from recsys_fixtures import block_events

HEAVY = ("torch", "sklearn", "faiss", "onnx", "onnxruntime", "openvino", "optuna", "matplotlib")
PROBE = """
import json, sys
from stylesense.cli import app
try:
    app(sys.argv[1:])
except SystemExit as e:
    code = e.code
else:
    code = 0
print(json.dumps({"code": code, "modules": sorted(m.split(".")[0] for m in sys.modules)}))
"""


def loaded_by(*args: str) -> set[str]:
    """Top-level modules loaded by `stylesense ARGS` run in a fresh interpreter (exit 0)."""
    done = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["code"] in (0, None), done.stdout + done.stderr
    return set(result["modules"])


def test_help_imports_no_heavy_library():
    modules = loaded_by("--help")
    assert not modules & set(HEAVY)
    assert not modules & {"pandas", "scipy", "sqlalchemy"}, "the engine opens no home for --help"


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """A home with a catalogue (random feature vectors: no photos, no CNN), its index, events
    and a trained EASE model, built in this process."""
    import numpy as np

    from stylesense.catalog.store import Upsert
    from stylesense.engine import StyleSense

    root = tmp_path_factory.mktemp("startup") / "home"
    log = root.parent / "log.csv"
    events = block_events(n_users=40, n_items=30, n_blocks=2, per_user=5)
    events.to_csv(log, index=False)
    ss = StyleSense(root)
    feats = np.random.default_rng(0).standard_normal((events["item_id"].nunique(), 16)).astype(np.float32)
    ss.store.upsert([Upsert(item_id=item, attrs={"price": 10}, image_path=None, image_hash=f"h{i}", features=feats[i])
                     for i, item in enumerate(sorted(events["item_id"].unique()))])
    ss.sync_index()
    ss.behaviour.import_events(log, user_column="user_id", item_column="item_id", time_column="ts", type_column="type")
    ss.behaviour.train("ease")
    return root


def test_events_add_and_catalog_list_import_no_heavy_library(home):
    modules = loaded_by("--home", str(home), "events", "add", "--user", "walk-in", "--item", "b0_i1")
    assert not modules & set(HEAVY)
    assert "scipy" not in modules, "recording an event fits no model"
    assert not loaded_by("--home", str(home), "catalog", "list") & set(HEAVY)


def test_events_add_and_catalog_hide_load_neither_pandas_nor_pil(home):
    """What a shop runs per request: recording one event validates it field by field, and
    hiding a product updates the index; neither reads a table or a photo."""
    for command in (("events", "add", "--user", "walk-in", "--item", "b0_i2", "--price", "5"),
                    ("catalog", "hide", "b1_i3")):
        assert not loaded_by("--home", str(home), *command) & {"pandas", "PIL"}, command


def test_recommend_with_a_light_model_imports_no_heavy_library(home):
    modules = loaded_by("--home", str(home), "recommend", "--user", "walk-in", "--model", "ease")
    assert not modules & set(HEAVY)
    assert "scipy" in modules  # the model itself was loaded and used


def test_registries_name_their_classes():
    """MODELS and KINDS list "module:Class" paths by name; each class carries the same name."""
    assert all(MODELS[name].name == name for name in MODELS)
    assert all(KINDS[kind].kind == kind for kind in KINDS)
