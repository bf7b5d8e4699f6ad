"""Background jobs: work that one request starts and later requests ask about (training a
model takes seconds to hours; an HTTP request must not wait for it).

A :class:`JobRunner` runs jobs on threads of its own and records each job's state in the home's
database (table ``jobs``): queued -> running -> done (with a JSON result) or failed (with the
reason). The record, not the runner, answers "how is job X?", so any worker process of a server
answers for a job another one started. Jobs run in the process that accepted them; if it dies,
its unfinished jobs are reported failed by any process on the same machine that looks (the
record names the process), since nothing will finish them.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import uuid
from collections.abc import Callable, Mapping
import queue
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import DateTime, String, Text, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from stylesense.errors import NotFound, StyleSenseError

log = logging.getLogger("stylesense.jobs")

_UNFINISHED = ("queued", "running")
_ID = 32  # uuid4 hex


class JobBase(DeclarativeBase):
    pass


class JobRow(JobBase):
    __tablename__ = "jobs"

    job_id: Mapped[str] = mapped_column(String(_ID), primary_key=True)
    kind: Mapped[str] = mapped_column(String(64))
    params: Mapped[str] = mapped_column(Text)  # JSON
    state: Mapped[str] = mapped_column(String(16))
    owner: Mapped[str] = mapped_column(String(255))  # "host:pid" of the process running it
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    result: Mapped[str | None] = mapped_column(Text, nullable=True)  # JSON
    error: Mapped[str | None] = mapped_column(Text, nullable=True)


@dataclass(frozen=True)
class Job:
    """One job as its record says: ``state`` is queued, running, done or failed."""

    job_id: str
    kind: str
    state: str
    params: dict[str, Any]
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    result: Any
    error: str | None

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape every surface answers with (times in ISO 8601, UTC)."""
        def when(t: datetime | None) -> str | None:
            return None if t is None else _utc(t).isoformat()

        return {"job_id": self.job_id, "kind": self.kind, "state": self.state, "params": self.params,
                "created_at": when(self.created_at), "started_at": when(self.started_at),
                "finished_at": when(self.finished_at), "result": self.result, "error": self.error}


class JobRunner:
    """Runs jobs on ``workers`` threads (default one: a job is CPU-bound work such as training,
    and the requests need the other cores), one after the other beyond that. The threads start
    with the first job and are daemons: a server that stops abandons its running jobs rather
    than wait hours for a training to end (their records then say so, see module doc)."""

    def __init__(self, engine: Engine, workers: int = 1) -> None:
        self.engine = engine
        # its tables: make_engine's migrations (stylesense.migrations)
        self._owner = f"{socket.gethostname()}:{os.getpid()}"
        self._workers = workers
        self._queue: queue.SimpleQueue[tuple[str, Callable[[], Any]] | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def submit(self, kind: str, work: Callable[[], Any], params: Mapping[str, Any] | None = None) -> Job:
        """Queue ``work`` (its return value, JSON-able, becomes the result) and return its job.
        ``params``: what the job was asked to do, shown with its state."""
        job_id = uuid.uuid4().hex
        with Session(self.engine) as s, s.begin():
            s.add(JobRow(job_id=job_id, kind=kind, params=json.dumps(dict(params or {}), default=str),
                         state="queued", owner=self._owner, created_at=_now()))
        with self._lock:
            if not self._threads:
                self._threads = [threading.Thread(target=self._serve, name=f"stylesense-job-{i}", daemon=True)
                                 for i in range(self._workers)]
                for thread in self._threads:
                    thread.start()
        self._queue.put((job_id, work))
        return self.get(job_id)

    def get(self, job_id: str) -> Job:
        """The job's state now; NotFound for an id no job has."""
        if not isinstance(job_id, str) or len(job_id) != _ID or not all(c in "0123456789abcdef" for c in job_id):
            raise NotFound(f"no job {job_id!r}")
        with Session(self.engine) as s, s.begin():
            row = s.get(JobRow, job_id)
            if row is None:
                raise NotFound(f"no job {job_id!r}")
            if row.state in _UNFINISHED and _gone(row.owner):  # nothing will finish it
                row.state, row.finished_at = "failed", _now()
                row.error = "the process running this job stopped before it finished; start it again"
            return Job(row.job_id, row.kind, row.state, json.loads(row.params), row.created_at, row.started_at,
                       row.finished_at, None if row.result is None else json.loads(row.result), row.error)

    def shutdown(self) -> None:
        """Wait for every job submitted so far to end, and stop the threads (a job submitted
        later starts them again)."""
        with self._lock:
            threads, self._threads = self._threads, []
        for _ in threads:
            self._queue.put(None)
        for thread in threads:
            thread.join()

    def _serve(self) -> None:
        while (task := self._queue.get()) is not None:
            self._run(*task)

    def _run(self, job_id: str, work: Callable[[], Any]) -> None:
        self._set(job_id, state="running", started_at=_now())
        try:
            result = json.dumps(work(), default=str)
        except StyleSenseError as e:  # the library's own refusal: its message is for people
            self._set(job_id, state="failed", finished_at=_now(), error=str(e))
        except Exception:  # noqa: BLE001 - a bug: logged whole, reported without internals
            log.exception("job %s failed", job_id)
            self._set(job_id, state="failed", finished_at=_now(), error="internal error; the server log has the details")
        else:
            self._set(job_id, state="done", finished_at=_now(), result=result)

    def _set(self, job_id: str, **values: Any) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(JobRow).where(JobRow.job_id == job_id).values(**values))


def _gone(owner: str) -> bool:
    """Whether the process ``owner`` ("host:pid") names has stopped; only known on its host."""
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, someone else's
        return False
    return False


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _utc(t: datetime) -> datetime:
    """SQLite hands back naive datetimes for timezone-aware columns: they were stored in UTC."""
    return t.replace(tzinfo=timezone.utc) if t.tzinfo is None else t.astimezone(timezone.utc)
