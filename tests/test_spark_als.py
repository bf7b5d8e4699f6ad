"""ALS fitted on Spark (`stylesense train --model als --engine spark`) is an ordinary `als`
model: it loads as one, recommends a shopper's own taste, agrees with the local fit, and folds
in live events. Few tests (each Spark context costs seconds): ``local[2]`` through the CLI, and
one fit on a standalone master and worker on 127.0.0.1, skipped with the reason where one
cannot start. Needs pyspark and Java 17 (skipped otherwise)."""

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from stylesense.cli import app
from stylesense.engine import StyleSense
from stylesense.recommenders import load_recommender
from stylesense.recommenders.als import ALS

from recsys_fixtures import block_events, block_of

pyspark = pytest.importorskip("pyspark", reason="the spark engine needs pyspark (pip install 'stylesense[spark]')")
if shutil.which("java") is None:
    pytest.skip("the spark engine needs Java 17 (apt-get install openjdk-17-jre-headless)", allow_module_level=True)

PARAMS = ["--param", "factors=16", "--param", "iterations=8", "--param", "regularization=1"]
runner = CliRunner()


@pytest.fixture(scope="module")
def events():
    return block_events(n_users=120, n_items=60, n_blocks=4, per_user=8, seed=5)


def shop(root: Path, events) -> StyleSense:
    ss = StyleSense(root, threads=1)
    ss.behaviour.events.import_frame(events)
    return ss


def own_block_share(ss: StyleSense, users, model: str = "als") -> float:
    """Share of the top-5 recommendations that are in the shopper's own block."""
    hits = [block_of(r.item_id) == block_of(u) for u in users for r in ss.behaviour.recommend(u, 5, model=model)]
    return float(np.mean(hits))


def test_spark_als_through_the_cli_is_an_ordinary_als_model(tmp_path: Path, events) -> None:
    ss = shop(tmp_path / "home", events)
    r = runner.invoke(app, ["--home", str(ss.home.root), "train", "--model", "als", "--engine", "spark",
                            "--spark-master", "local[2]", *PARAMS])
    assert r.exit_code == 0, r.output
    assert "trained als on" in r.output

    saved = load_recommender(ss.behaviour.model_path("als"))
    assert type(saved) is ALS and saved.params["factors"] == 16
    users = events["user_id"].drop_duplicates().tolist()[:40]
    spark_share = own_block_share(ss, users)
    assert spark_share > 0.9

    local = shop(tmp_path / "local", events)
    local.behaviour.train("als", {"factors": 16, "iterations": 8, "regularization": 1.0})
    agree = np.mean([len({r.item_id for r in ss.behaviour.recommend(u, 10)}
                         & {r.item_id for r in local.behaviour.recommend(u, 10)}) / 10 for u in users])
    assert agree > 0.5, agree  # the same taste, not the same numbers (different solvers and seeds)

    # fold-in: a newcomer's live purchases in block 2 get block-2 recommendations, no refit
    block2 = sorted({i for i in events["item_id"] if block_of(i) == 2})[:3]
    for item in block2:
        ss.behaviour.add_event("newcomer", item, "purchase")
    recs = ss.behaviour.recommend("newcomer", 5)
    assert len(recs) == 5 and np.mean([block_of(r.item_id) == 2 for r in recs]) >= 0.8


def test_the_engine_is_checked_before_anything_starts(tmp_path: Path, events) -> None:
    home = shop(tmp_path / "home", events).home.root
    r = runner.invoke(app, ["--home", str(home), "train", "--model", "itemknn", "--engine", "spark"])
    assert r.exit_code == 2 and "fits als only" in r.output
    r = runner.invoke(app, ["--home", str(home), "train", "--model", "als", "--spark-master", "local[2]"])
    assert r.exit_code == 2 and "--spark-master needs --engine spark" in r.output
    r = runner.invoke(app, ["--home", str(home), "train", "--model", "als", "--engine", "flink"])
    assert r.exit_code == 2 and "unknown engine 'flink'" in r.output


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(log: Path, text: str, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if log.exists() and text in log.read_text(errors="replace"):
            return True
        time.sleep(0.5)
    return False


@pytest.fixture
def standalone(tmp_path: Path):
    """A Spark standalone master and one worker (1 core, 1 GB) on 127.0.0.1; its URL."""
    spark_class = Path(pyspark.__file__).parent / "bin" / "spark-class"
    port = free_port()
    env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1", "SPARK_HOME": str(spark_class.parents[1])}
    logs = {name: tmp_path / f"{name}.log" for name in ("master", "worker")}
    procs = []
    try:
        procs.append(subprocess.Popen([str(spark_class), "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                                       "--port", str(port), "--webui-port", str(free_port())],
                                      stdout=logs["master"].open("w"), stderr=subprocess.STDOUT, env=env))
        if not wait_for(logs["master"], "I have been elected leader", 90):
            pytest.skip(f"the Spark master did not start: {logs['master'].read_text()[-500:]}")
        url = f"spark://127.0.0.1:{port}"
        procs.append(subprocess.Popen([str(spark_class), "org.apache.spark.deploy.worker.Worker", url, "--host", "127.0.0.1",
                                       "--cores", "1", "--memory", "1g", "--webui-port", str(free_port()),
                                       "--work-dir", str(tmp_path / "work")],
                                      stdout=logs["worker"].open("w"), stderr=subprocess.STDOUT, env=env))
        if not wait_for(logs["worker"], "Successfully registered with master", 90):
            pytest.skip(f"the Spark worker did not register: {logs['worker'].read_text()[-500:]}")
        yield url
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()


def test_a_fit_on_a_standalone_master_and_worker(tmp_path: Path, events, standalone: str, monkeypatch) -> None:
    monkeypatch.setenv("SPARK_LOCAL_IP", "127.0.0.1")
    ss = shop(tmp_path / "home", events)
    model, _ = ss.behaviour.train("als", {"factors": 16, "iterations": 8, "regularization": 1.0},
                                  engine="spark", spark_master=standalone)
    assert model.fit_details["master"] == standalone  # type: ignore[attr-defined]
    assert own_block_share(ss, events["user_id"].drop_duplicates().tolist()[:40]) > 0.9
