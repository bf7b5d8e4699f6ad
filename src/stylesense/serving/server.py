"""``stylesense serve``: uvicorn running the app, in one process or several workers.

Workers are separate processes that uvicorn starts by importing :func:`app_from_env`, so the
home and the settings travel in environment variables. Every worker opens the home itself;
they agree through the home's files and database (see :mod:`stylesense.concurrency`).

uvicorn picks its fastest parts when they are installed, as the dependencies make them:
``httptools`` parses HTTP in C and ``uvloop`` runs the event loop on libuv. With the pure-Python
``h11`` parser and asyncio's loop a request cost 0.3-0.8 ms more of a worker's CPU (measured
with one connection, 2026-12-01; docs/api.md).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
from dataclasses import asdict
from pathlib import Path

from fastapi import FastAPI
from uvicorn.protocols.http.auto import AutoHTTPProtocol

from stylesense.serving.app import Settings, create_app

_HOME, _SETTINGS = "STYLESENSE_HOME", "STYLESENSE_SERVE_SETTINGS"


def app_from_env() -> FastAPI:
    """The app a worker serves: home and settings from the environment ``serve`` set."""
    raw = json.loads(os.environ.get(_SETTINGS, "{}"))
    raw["cors_origins"] = tuple(raw.get("cors_origins", ()))
    return create_app(os.environ.get(_HOME), Settings(**raw))


def serve(home: Path | None, settings: Settings, *, host: str = "127.0.0.1", port: int = 8000, workers: int = 1,
          log_level: str = "info") -> None:
    """Run until interrupted. Binds loopback unless ``host`` says otherwise."""
    import uvicorn

    if home is not None:
        os.environ[_HOME] = str(Path(home).resolve())
    os.environ[_SETTINGS] = json.dumps(asdict(settings))
    # uvicorn's supervisor kills a worker that misses a 5 s health check; a worker loading its
    # model, index and embedder holds the GIL in C calls long enough on a busy 2-core machine to
    # miss it (bench/api.py saw a worker killed in its warm-up), so it gets a minute.
    uvicorn.run("stylesense.serving.server:app_from_env", factory=True, host=host, port=port, workers=workers,
                log_level=log_level, access_log=False, http=NoDelayHTTP, timeout_worker_healthcheck=60)


MAX_REQUESTS_PER_CONNECTION = 100
"""Requests one keep-alive connection serves before its answer says ``Connection: close``."""
REBALANCE_IN_FLIGHT = 4
"""Requests in flight above which a worker counts as backed up (twice the default
``--request-threads``): it then asks long-lived connections to reconnect."""
REBALANCE_MIN_REQUESTS = 10
"""Answers a connection gets before a backed-up worker may close it, so that when every
worker is busy the reconnects stay under a tenth of the requests."""


class NoDelayHTTP(AutoHTTPProtocol):  # type: ignore[misc, valid-type]
    """uvicorn's HTTP protocol with Nagle's algorithm off on every connection, and a bounded
    number of requests per connection.

    With ``--workers`` above 1 uvicorn binds the listening socket itself with ``proto`` 0, and
    asyncio only sets TCP_NODELAY on accepted sockets whose proto is TCP (uvicorn issue #3149):
    each keep-alive response then waited ~40 ms for the client's delayed ACK.

    Workers share one listening socket and whichever accepts first keeps the connection for
    good: a burst of new connections often lands mostly on one worker (bench/api.py saw 10 of
    16 and 16 of 16), which then queues requests while the other idles. Closing a connection
    after ``MAX_REQUESTS_PER_CONNECTION`` answers (as nginx's ``keepalive_requests`` does) makes
    clients reconnect, and the worker with spare time is the one that accepts first, so the
    connections drift towards the idle worker. Clients reconnect transparently; it costs one TCP
    handshake per hundred requests. That drift is slow (a connection at 20 req/s reconnects every
    5 s), so a backed-up worker (more than ``REBALANCE_IN_FLIGHT`` requests in flight) also closes
    each connection that has had ``REBALANCE_MIN_REQUESTS`` answers: bench probes saw 16 of 16
    connections on one worker for 6 s of a 10 s run at 300 req/s, and 8/8 within a second with it."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.requests_served = 0
        super().connection_made(transport)

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self.requests_served += 1
        backed_up = len(self.tasks) > REBALANCE_IN_FLIGHT and self.requests_served >= REBALANCE_MIN_REQUESTS
        if self.cycle is not None and (backed_up or self.requests_served >= MAX_REQUESTS_PER_CONNECTION):
            self.cycle.keep_alive = False  # this answer says Connection: close, then closes
