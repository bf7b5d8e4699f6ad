"""Prometheus metrics of one app: requests, latency and errors per route.

Each app owns its registry (prometheus-client's default one is process-wide, and two apps in
one process, as in the tests, would count into each other). With several workers each reports
its own numbers; Prometheus adds them up across scrapes of every worker.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

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
