"""``stylesense serve`` (or ``stylesense ui``) as a child process, for what drives a real
server from outside: the real-server and browser tests, ``bench/api.py`` and ``bench/ui.py``.

The server runs in its own process group (uvicorn's supervisor and its workers), so one signal
reaches every process at once: SIGTERM to stop, SIGKILL to crash it as a power cut would.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import httpx

THREADS = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """``stylesense --home HOME --threads 1 serve --port P --workers N`` on 127.0.0.1, its
    output appended to ``log``, each worker on one CPU thread. ``command="ui"`` runs the web
    app instead (one process: ``workers`` None)."""

    def __init__(self, home: Path, log: Path, *, workers: int | None = 2, options: Sequence[str] = (),
                 env: Mapping[str, str] | None = None, command: str = "serve") -> None:
        self.home, self.log, self.workers, self.command = home, log, workers, command
        self.options, self.env = list(options), {**os.environ, **THREADS, **(env or {})}
        self.proc: subprocess.Popen | None = None
        self.url = ""

    def start(self, *, ready: str = "/health", timeout: float = 120.0) -> None:
        """Start, and return once ``ready`` answers 200; RuntimeError (with the log's end) when
        the server exits or does not answer within ``timeout`` seconds."""
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        exe = Path(sys.executable).with_name("stylesense")
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [str(exe), "--home", str(self.home), "--threads", "1", self.command, "--port", str(port),
                 *(["--workers", str(self.workers)] if self.workers else []), *self.options],
                stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                if httpx.get(f"{self.url}{ready}", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"no answer on {self.url}{ready} after {timeout:.0f} s:\n{self.tail()}")

    def stop(self, wait: float = 20.0) -> None:
        """SIGTERM the process group (SIGKILL if it has not ended after ``wait`` seconds)."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(wait)
            except subprocess.TimeoutExpired:
                self.kill()
        self.proc = None

    def kill(self) -> None:
        """SIGKILL the whole process group at once, as a crash would, and reap the supervisor."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None

    def tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""
