"""The REST API: a FastAPI app that only calls the library.

``create_app(home)`` opens one :class:`~stylesense.engine.StyleSense` for the app's lifetime and
shares it between the request threads (the library is built for that: see
:mod:`stylesense.concurrency`). The app maps the library's errors once, to RFC 9457 problem
responses; checks API keys (``X-API-Key``) and their rate limits; caps request bodies; and
counts requests for Prometheus in a registry of its own (no process-wide state, so several
apps can live in one process, as the tests do). Routes live in :mod:`.catalog_routes` and
:mod:`.behaviour_routes` (``/v1``, see :mod:`.native`) and :mod:`.gorse` (``/api``,
Gorse-compatible).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import anyio.to_thread
from fastapi import Depends, FastAPI, Header, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from stylesense.engine import StyleSense
from stylesense.errors import Conflict, Damaged, InvalidInput, NotFound, NotReady, StyleSenseError
from stylesense.jobs import JobRunner
from stylesense.serving.keys import KeyInfo, KeyStore, RateLimiter
from stylesense.vision.images import NotAnImage

log = logging.getLogger("stylesense.serving")

PROBLEM = "application/problem+json"
# Library error -> HTTP status (see stylesense.errors); the first class that matches wins.
STATUS: dict[type[StyleSenseError], int] = {
    NotAnImage: 415, InvalidInput: 422, NotFound: 404, NotReady: 409, Conflict: 409, Damaged: 500,
}


@dataclass(frozen=True)
class Settings:
    """What an operator chooses when starting the server (``stylesense serve`` options)."""

    public_reads: bool = False  # reads without a key; writes always need one
    cors_origins: tuple[str, ...] = ()  # CORS is off unless origins are named
    max_body_bytes: int = 2 << 20  # JSON bodies (a batch of 1,000 events is ~150 KB)
    max_upload_bytes: int = 16 << 20  # multipart bodies: a photo
    max_batch: int = 1000  # events per POST /v1/events
    threads: int | None = None  # CPU threads for the CNN and index
    # Requests a worker computes at once (its thread pool; 0: anyio's 40). The work is CPU-bound
    # and holds the GIL in Python code: more threads than its one core only interleave requests,
    # so each finishes later (2 against 40: p99 at 300 req/s 29-37 ms against 99-110, docs/api.md).
    request_threads: int = 2


@dataclass
class Server:
    """Everything the routes share: the home, the key store, the background jobs, the rate limiter."""

    ss: StyleSense
    settings: Settings
    keys: KeyStore
    jobs: JobRunner
    limiter: RateLimiter = field(default_factory=RateLimiter)

    @property
    def inline_reads(self) -> bool:
        """Whether reads run on the event loop (see ``read``): the home's database is its SQLite file."""
        return self.ss.store.engine.dialect.name == "sqlite"


# What the one error mapping of the app may answer on any /v1 or /api route (the library's
# errors, the body limit, request validation, a client gone mid-body), and on keyed routes.
ROUTE_ERRORS = {400: "a malformed multipart body, or the client left before its body arrived",
                404: "no such item, user, job or model", 409: "not ready (e.g. no model trained yet) or a conflict",
                413: "body over the size limit", 415: "not a supported media type or image format",
                422: "invalid input: the detail says which and why", 500: "a damaged home or a bug (see the server log)"}
KEY_ERRORS = {401: "no API key, or an unknown or revoked one", 403: "the key's role may not do this",
              429: "over the key's rate limit; Retry-After says when to try again"}
PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem", "type": "object", "description": "RFC 9457 problem details",
    "required": ["type", "title", "status", "detail"],
    "properties": {"type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
                   "detail": {"type": "string"},
                   "errors": {"type": "array", "description": "invalid request: each field's problem",
                              "items": {"type": "object", "properties": {
                                  "loc": {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]}},
                                  "msg": {"type": "string"}}}}},
}


def document_problems(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` (the app's OpenAPI document) with every error response the app can give
    documented as a problem+json body: FastAPI knows only its own 422 shape, which this app
    replaces, and a route's responses only what that route raises itself."""
    schema.setdefault("components", {}).setdefault("schemas", {})["Problem"] = PROBLEM_SCHEMA
    content = {PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    for path, operations in schema["paths"].items():
        if not path.startswith(("/v1/", "/api/")):
            continue
        for operation in operations.values():
            keyed = any(p.get("in") == "header" and p.get("name", "").lower() == "x-api-key"
                        for p in operation.get("parameters", []))
            for status, description in {**ROUTE_ERRORS, **(KEY_ERRORS if keyed else {})}.items():
                response = operation["responses"].setdefault(str(status), {"description": description})
                response["content"] = content
                if status == 429:
                    response["headers"] = {"Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}}
    if "#/components/schemas/HTTPValidationError" not in str(schema["paths"]):
        for unused in ("HTTPValidationError", "ValidationError"):
            schema["components"]["schemas"].pop(unused, None)
    return schema


def problem(status: int, detail: str, *, title: str | None = None, headers: dict[str, str] | None = None,
            **extra: Any) -> JSONResponse:
    """An RFC 9457 problem response: ``title`` the kind of problem, ``detail`` this one."""
    from http import HTTPStatus

    body = {"type": "about:blank", "title": title or HTTPStatus(status).phrase, "status": status,
            "detail": detail, **extra}
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def server_of(request: Request) -> Server:
    return request.app.state.server


T = TypeVar("T")


async def read(request: Request, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """A library call that only reads (a recommendation, a search by item, a page of items),
    where it costs least. On a home whose database is its SQLite file it runs on the event loop:
    it is CPU work on the worker's one core, its queries never wait on a lock (WAL readers
    don't) nor on a network, and the thread pool only added a hop and a contest for the GIL
    that the loop then lost on every query of the call (docs/api.md: p50 at 300 req/s 6-7 ms
    against 9-17 ms on the pool). On a database across a network the queries are round trips
    that would stall the loop, so there it runs on the pool. Writes go to the pool (a commit may
    wait for another process's write lock), but for the impression a recommendation stores
    while an experiment runs: one small insert, made within the read."""
    if server_of(request).inline_reads:
        return call(*args, **kwargs)
    return await run_in_threadpool(call, *args, **kwargs)


def require(role: str) -> Callable[..., Awaitable[KeyInfo | None]]:
    """A dependency that lets a request through when its ``X-API-Key`` may do ``role``: 401
    without a valid key (reads may be public), 403 for a key of a lesser role, 429 with
    ``Retry-After`` past the key's rate."""

    async def check(request: Request, x_api_key: str | None = Header(None, description="API key")) -> KeyInfo | None:
        # On the event loop, not the thread pool: on the home's SQLite the check is a query of
        # some tens of microseconds (see KeyStore.authenticate), cheaper than a hop to a thread
        # and back; a database across a network would make it a round trip that blocks the loop.
        server = server_of(request)
        if not x_api_key:  # an empty header is no key (Gorse clients send one when given none)
            if role == "read" and server.settings.public_reads:
                return None
            raise HTTPException(401, "an API key is needed: send it in the X-API-Key header",
                                headers={"WWW-Authenticate": "X-API-Key"})
        info = server.keys.authenticate(x_api_key)
        if info is None:
            raise HTTPException(401, "unknown or revoked API key", headers={"WWW-Authenticate": "X-API-Key"})
        if not info.allows(role):
            raise HTTPException(403, f"this key's role ({info.role}) may not {role}")
        wait = server.limiter.check(info.key_id, info.rate)
        if wait is not None:
            raise HTTPException(429, f"rate limit of {info.rate:g} requests/s exceeded",
                                headers={"Retry-After": str(max(1, round(wait + 0.5)))})
        return info

    return check


READ = Depends(require("read"))
WRITE = Depends(require("write"))
ADMIN = Depends(require("admin"))


class BodyLimit:
    """Refuse bodies over the limit with 413, counting what arrives (a client may send no
    Content-Length, or a false one), before a route reads any of it into memory."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app, self.settings = app, settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        multipart = headers.get(b"content-type", b"").startswith(b"multipart/")
        limit = self.settings.max_upload_bytes if multipart else self.settings.max_body_bytes
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _send_problem(send, 413, f"request body over the {limit}-byte limit")
            return
        seen, refused = 0, False

        async def counted() -> Message:
            # Past the limit: answer 413 at once and tell the app the client left, so it
            # stops reading; whatever it still tries to send is dropped.
            nonlocal seen, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    refused = True
                    await _send_problem(send, 413, f"request body over the {limit}-byte limit")
                    return {"type": "http.disconnect"}
            return message

        async def guarded(message: Message) -> None:
            if not refused:
                await send(message)

        try:
            await self.app(scope, counted, guarded)
        except Exception:
            if not refused:
                raise


async def _send_problem(send: Send, status: int, detail: str) -> None:
    response = problem(status, detail)
    await send({"type": "http.response.start", "status": status, "headers": response.raw_headers})
    await send({"type": "http.response.body", "body": response.body})


def create_app(home: str | Path | None = None, settings: Settings | None = None) -> FastAPI:
    """The app over ``home`` (default: $STYLESENSE_HOME, else ./stylesense-home)."""
    from stylesense.serving import behaviour_routes, catalog_routes, experiment_routes, gorse, native
    from stylesense.serving.metrics import Counted, Metrics, OnlineFeedback

    settings = settings or Settings()
    ss = StyleSense(home, threads=settings.threads)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if settings.request_threads:  # the limiter is the event loop's: set from inside it
            anyio.to_thread.current_default_thread_limiter().total_tokens = settings.request_threads
        yield

    app = FastAPI(
        lifespan=lifespan,
        title="stylesense",
        summary="Visual search and recommendations for fashion catalogues.",
        version="0.1.0",
        openapi_url="/openapi.json",
        docs_url="/docs",
    )
    app.state.server = Server(ss, settings, KeyStore(ss.store.engine), JobRunner(ss.store.engine))
    metrics = Metrics()
    metrics.registry.register(OnlineFeedback(lambda: ss.experiments.online()))
    app.state.metrics = metrics

    @app.exception_handler(StyleSenseError)
    async def library_error(_: Request, exc: StyleSenseError) -> JSONResponse:
        status = next((code for cls, code in STATUS.items() if isinstance(exc, cls)), 500)
        if status == 500:
            log.error("%s", exc)
        return problem(status, str(exc), title=type(exc).__name__)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return problem(exc.status_code, str(exc.detail), headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", "")} for e in exc.errors()]
        where = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors[:5])
        return problem(422, f"invalid request: {where}", errors=errors)

    @app.exception_handler(ClientDisconnect)
    async def client_left(_: Request, exc: ClientDisconnect) -> JSONResponse:
        # The client went away mid-body (a timeout, a load generator stopping): nobody reads
        # this answer, but it must not count or log as a server error.
        return problem(400, "the client closed the connection before its request body arrived")

    @app.exception_handler(Exception)
    async def bug(_: Request, exc: Exception) -> JSONResponse:  # never a traceback in a response
        log.exception("unhandled error")
        return problem(500, "internal error; the server log has the details")

    @app.get("/health", tags=["ops"])
    async def health() -> dict[str, str]:
        """The process is alive."""
        return {"status": "ok"}

    @app.get("/ready", tags=["ops"], responses={503: {"description": "not ready"}})
    def ready(request: Request) -> Response:
        """Database reachable, index and default model loaded: ready for traffic."""
        checks = native.readiness(server_of(request).ss)
        ok = all(v == "ok" for v in checks.values())
        return JSONResponse({"ready": ok, "checks": checks}, status_code=200 if ok else 503)

    @app.get("/metrics", tags=["ops"], response_class=Response)
    def prometheus() -> Response:
        """Requests, latency histograms and errors per route (this worker's)."""
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    for routes in (catalog_routes, behaviour_routes, experiment_routes, gorse):  # each router carries its prefix
        app.include_router(routes.router)
    openapi = app.openapi
    app.openapi = lambda: document_problems(openapi())  # type: ignore[method-assign]
    app.add_middleware(Counted, metrics=metrics)  # inside the others: what they refuse is not a route's
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins),
                           allow_methods=["*"], allow_headers=["*"])
    app.add_middleware(BodyLimit, settings=settings)
    return app
