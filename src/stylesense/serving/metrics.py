"""Prometheus metrics of one app: requests, latency and errors per route.

Each app owns its registry (prometheus-client's default one is process-wide, and two apps in
one process, as in the tests, would count into each other). With several workers each reports
its own numbers; Prometheus adds them up across scrapes of every worker.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Seconds: the routes answer in about a millisecond (recommendations) to tens (photo search).
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("stylesense_requests", "HTTP requests answered", ["method", "route", "status"],
                                registry=self.registry)
        self.errors = Counter("stylesense_errors", "HTTP requests answered with 5xx", ["method", "route"],
                              registry=self.registry)
        self.latency = Histogram("stylesense_request_seconds", "Time to answer a request", ["method", "route"],
                                 buckets=BUCKETS, registry=self.registry)

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)
        if status >= 500:
            self.errors.labels(method, route).inc()

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class Counted:
    """ASGI middleware that observes every HTTP request into ``metrics``: its route template
    (FastAPI's router leaves the matched route in the scope), status and time to the end of
    its body. A plain ASGI wrapper: Starlette's ``@app.middleware("http")`` runs each request
    through a task group and memory streams, which cost more than the rest of a cheap route.
    An exception escaping the app is a 500 here, as the error handler outside answers it."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def observed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, observed)
        finally:
            route = scope.get("route")
            self.metrics.observe(scope["method"], getattr(route, "path", "unmatched"), status,
                                 time.perf_counter() - start)


class OnlineFeedback:
    """A collector of Gorse-style online evaluation, computed at scrape time: per model, the
    recommendations served in the rolling window (``stylesense_online_impressions``) and the
    share of them with positive feedback so far (``stylesense_online_positive_feedback_rate``).
    ``rates`` is :meth:`stylesense.experiments.Experiments.online` (objects with ``model``,
    ``impressions`` and ``rate``); the home's database holds them, so every worker reports the
    same numbers."""

    def __init__(self, rates: Callable[[], Iterable[Any]]) -> None:
        self.rates = rates

    def describe(self) -> list[GaugeMetricFamily]:  # what registering checks, without a query
        return self._families()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        rate, shown = self._families()
        for r in self.rates():
            shown.add_metric([r.model], r.impressions)
            if r.rate is not None:
                rate.add_metric([r.model], r.rate)
        yield from (rate, shown)

    @staticmethod
    def _families() -> list[GaugeMetricFamily]:
        return [GaugeMetricFamily("stylesense_online_positive_feedback_rate",
                                  "Share of recommendations served in the window with positive feedback", labels=["model"]),
                GaugeMetricFamily("stylesense_online_impressions", "Recommendations served in the window (experiments)",
                                  labels=["model"])]
