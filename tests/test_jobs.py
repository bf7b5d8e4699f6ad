"""Background jobs (POST /v1/models/{name}/train, GET /v1/jobs/{id}): states recorded in the
database for every worker to read, failures reported with their reason, training checked
before it starts and swapped in whole when it ends."""

import subprocess
import sys
import threading

import pandas as pd
import pytest

from stylesense.catalog.store import make_engine
from stylesense.engine import StyleSense
from stylesense.errors import InvalidInput, NotFound, NotReady
from stylesense.jobs import JobRow, JobRunner
from sqlalchemy.orm import Session

from recsys_fixtures import block_events


@pytest.fixture
def engine(tmp_path):
    return make_engine(f"sqlite:///{tmp_path / 'jobs.db'}")


def test_a_job_runs_and_its_record_answers_every_process(engine):
    runner = JobRunner(engine)
    gate = threading.Event()
    job = runner.submit("sum", lambda: (gate.wait(10), {"total": 3})[1], {"of": [1, 2]})
    assert job.state in ("queued", "running") and job.params == {"of": [1, 2]} and job.result is None
    gate.set()
    runner.shutdown()
    done = JobRunner(engine).get(job.job_id)  # another worker's runner reads the same record
    assert done.state == "done" and done.result == {"total": 3} and done.error is None
    record = done.to_dict()
    assert record["kind"] == "sum" and record["started_at"] <= record["finished_at"]
    assert record["finished_at"].endswith("+00:00")


def test_failures_say_why_without_internals(engine):
    runner = JobRunner(engine)

    def refused() -> None:
        raise NotReady("no events yet")

    def bug() -> None:
        raise ZeroDivisionError("secret detail")

    first, second = runner.submit("x", refused), runner.submit("y", bug)
    runner.shutdown()
    assert (runner.get(first.job_id).state, runner.get(first.job_id).error) == ("failed", "no events yet")
    failed = runner.get(second.job_id)
    assert failed.state == "failed" and "secret" not in failed.error and "server log" in failed.error


def test_unknown_ids_and_jobs_whose_process_died(engine, tmp_path):
    runner = JobRunner(engine)
    for bad in ("0" * 32, "nope", "../etc", ""):
        with pytest.raises(NotFound, match="no job"):
            runner.get(bad)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    job = runner.submit("slow", lambda: None)
    runner.shutdown()
    with Session(engine) as s, s.begin():  # as if a worker that has exited had been running it
        row = s.get(JobRow, job.job_id)
        row.state, row.owner = "running", f"{row.owner.rpartition(':')[0]}:{dead.stdout.strip()}"
    gone = runner.get(job.job_id)
    assert gone.state == "failed" and "stopped before it finished" in gone.error


@pytest.fixture
def shop(tmp_path):
    ss = StyleSense(tmp_path / "home", threads=1)
    events = block_events(n_users=40, n_items=16, n_blocks=2, per_user=4, seed=2)
    events["ts"] = pd.to_datetime(events["ts"], unit="s", utc=True)
    ss.behaviour.events.import_frame(events)
    return ss


def test_training_is_checked_before_the_job_starts(shop, tmp_path):
    runner = JobRunner(shop.store.engine)
    for name, params, error, reason in [("nope", {}, InvalidInput, "unknown model 'nope'"),
                                        ("als", {"factorz": 3}, InvalidInput, "unknown parameter"),
                                        ("als", {"factors": "many"}, InvalidInput, "parameter factors"),
                                        ("../als", {}, InvalidInput, "unknown model")]:
        with pytest.raises(error, match=reason):
            shop.behaviour.start_training(runner, name, params)
    with pytest.raises(NotReady, match="no events yet"):
        StyleSense(tmp_path / "empty").behaviour.start_training(runner, "popular")
    with Session(shop.store.engine) as s:
        assert s.query(JobRow).count() == 0  # nothing was queued


def test_a_training_job_swaps_the_new_model_in(shop):
    runner = JobRunner(shop.store.engine)
    shop.behaviour.train("popular")
    job = shop.behaviour.start_training(runner, "itemknn", {"neighbours": 5})
    runner.shutdown()
    done = runner.get(job.job_id)
    assert done.state == "done" and done.result["model"] == "itemknn" and done.result["events"] == 160
    assert done.params == {"model": "itemknn", "params": {"neighbours": 5}}
    assert shop.config.recommender == "itemknn" and shop.behaviour.model().params["neighbours"] == 5
