"""Shared pytest fixtures: the real data folder, and a synthetic catalogue drawn by the tests."""

import csv
import random
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

import pytest

from stylesense.datasets import shared_data_dir

from postgres import fresh_database, postgres_server, postgres_url  # noqa: F401 - session Postgres fixtures
from index_backends import database_homes, index_database, milvus_lite, new_index  # noqa: F401 - every vector backend


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real data folder (../shared/data or $STYLESENSE_SHARED_DATA); skips where absent."""
    path = shared_data_dir(Path(__file__).parents[1])
    if path is None:
        pytest.skip("real data absent: no ../shared/data beside the project and no $STYLESENSE_SHARED_DATA")
    return path

CLASSES = ("Tshirts", "Shoes", "Bags", "Dresses")


def within(seconds: float, call: Callable[[], Any]) -> Any:
    """``call()``'s result (or its exception), failing the test if it has not returned after
    ``seconds``: for inputs that used to hang (a FIFO, /dev/zero). The call runs in a daemon
    thread, so a hang cannot keep the test process alive."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = call()
        except BaseException as e:  # noqa: BLE001 - handed to the test's thread
            outcome["error"] = e

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        pytest.fail(f"still running after {seconds} s (hangs)")
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


def draw_product(kind: str, rng: random.Random, size: int = 160) -> Image.Image:
    """A crude product shot on white: each class has its own shape and colour family, with
    jittered size, position and shade, so a CNN groups items of one class together."""
    img = Image.new("RGB", (size, size), "white")
    d = ImageDraw.Draw(img)
    j = lambda a: a + rng.randint(-12, 12)  # noqa: E731
    s = size
    if kind == "Tshirts":
        c = (j(200), j(30), j(30))
        d.rectangle([j(55), j(45), j(105), j(130)], fill=c)
        d.polygon([(j(30), j(60)), (j(55), j(45)), (j(55), j(80))], fill=c)
        d.polygon([(j(130), j(60)), (j(105), j(45)), (j(105), j(80))], fill=c)
    elif kind == "Shoes":
        c = (j(40), j(40), j(40))
        d.ellipse([j(20), j(95), j(140), j(135)], fill=c)
        d.rectangle([j(25), j(70), j(70), j(115)], fill=c)
    elif kind == "Bags":
        c = (j(30), j(60), j(190))
        d.rectangle([j(35), j(65), j(125), j(135)], fill=c)
        d.arc([j(55), j(30), j(105), j(90)], 180, 360, fill=c, width=8)
    else:
        c = (j(30), j(150), j(60))
        d.polygon([(s // 2 + rng.randint(-8, 8), j(25)), (j(30), j(140)), (j(130), j(140))], fill=c)
    return img


def write_catalog(folder: Path, n_per_class: int = 6, seed: int = 0, start: int = 1) -> Path:
    """styles.csv + images/<id>.jpg; prices 10..(10*n), gender alternating."""
    rng = random.Random(seed)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    i = start
    for kind in CLASSES:
        for j in range(n_per_class):
            draw_product(kind, rng).save(folder / "images" / f"{i}.jpg", quality=90)
            rows.append({"id": str(i), "articleType": kind, "gender": "Women" if j % 2 else "Men",
                         "price": f"{10 + 5 * j:.2f}", "name": f"{kind} no. {j}"})
            i += 1
    path = folder / "styles.csv"
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory) -> Path:
    """One ONNX export shared by every test home (the export takes seconds)."""
    return tmp_path_factory.mktemp("models")


@pytest.fixture
def home(tmp_path, model_cache) -> Path:
    """An empty home whose model cache is shared across tests."""
    root = tmp_path / "home"
    root.mkdir()
    (root / "models").symlink_to(model_cache, target_is_directory=True)
    return root


@pytest.fixture(scope="session")
def catalog_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("catalog")
    write_catalog(folder)
    return folder


@pytest.fixture(scope="session")
def imported_home(tmp_path_factory, model_cache, catalog_dir) -> Path:
    """A home with catalog_dir imported and a trained ``popular`` model (alice bought 1, 2
    and 7). Never used directly: tests that damage a home take ``home_copy``."""
    from stylesense.engine import StyleSense

    root = tmp_path_factory.mktemp("imported") / "home"
    root.mkdir()
    (root / "models").symlink_to(model_cache, target_is_directory=True)
    ss = StyleSense(root, threads=1)
    assert ss.import_catalog(catalog_dir / "styles.csv", "images/{id}.jpg").ok
    for item in ("1", "2", "7"):
        ss.behaviour.add_event("alice", item, "purchase")
    ss.behaviour.train("popular")
    ss.store.engine.dispose()  # checkpoints the WAL: the database file holds everything
    return root


@pytest.fixture
def home_copy(imported_home, tmp_path) -> Path:
    """A private copy of ``imported_home`` to damage."""
    import shutil

    copy = tmp_path / "home"
    shutil.copytree(imported_home, copy, symlinks=True)
    return copy
