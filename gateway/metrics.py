"""Metric objects on an explicit registry, and the `/metrics` listener.

Under gunicorn the values live in prometheus_client's multiprocess files
(PROMETHEUS_MULTIPROC_DIR, set by `serve` before Python starts the workers);
the metrics listener runs in the gunicorn master and builds a fresh
`MultiProcessCollector` registry per scrape, so a scrape sums every worker
and keeps answering while the workers are busy.

Every label value is bounded by configuration: route and client names,
`unmatched`, `public`, a known method or `other`, an HTTP status, an error kind.
"""

from __future__ import annotations

import json
import os
import socket
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from gateway.config import METHODS

BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
           1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0)
LIMITER_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25)


def method_label(method: str) -> str:
    return method if method in METHODS else "other"


class Metrics:
    def __init__(self, registry: CollectorRegistry, *, version: str) -> None:
        self.requests = Counter(
            "gateway_requests_total", "Requests answered, by route, method, status and client.",
            ["route", "method", "status", "client"], registry=registry)
        self.duration = Histogram(
            "gateway_request_duration_seconds", "Time from request to the last byte sent.",
            ["route", "method"], buckets=BUCKETS, registry=registry)
        self.upstream_duration = Histogram(
            "gateway_upstream_request_duration_seconds",
            "Time from sending to Reusely until its response headers arrived.",
            ["route"], buckets=BUCKETS, registry=registry)
        self.upstream_errors = Counter(
            "gateway_upstream_errors_total", "Requests to Reusely that failed, by kind.",
            ["route", "kind"], registry=registry)
        self.upstream_responses = Counter(
            "gateway_upstream_responses_total", "Answers Reusely gave, by its exact status.",
            ["route", "status"], registry=registry)
        self.credential_reloads = Counter(
            "gateway_credential_reloads_total",
            "Credential files re-read after a change: ok, or error (the last good value kept).",
            ["result"], registry=registry)
        self.idempotent_replays = Counter(
            "gateway_idempotent_replays_total",
            "Answers replayed for a repeated Idempotency-Key, never forwarded.",
            ["route"], registry=registry)
        self.rate_limited = Counter(
            "gateway_rate_limited_total", "Requests refused by a rate limit.",
            ["route", "per"], registry=registry)
        self.shadow_limited = Counter(
            "gateway_rate_limit_shadow_total",
            "Requests a shadow limit would have refused (never refused).",
            ["route", "per"], registry=registry)
        self.limiter_errors = Counter(
            "gateway_rate_limiter_errors_total",
            "Rate limit checks that failed because the storage (Redis) could not answer.",
            registry=registry)
        self.limiter_duration = Histogram(
            "gateway_rate_limiter_duration_seconds", "Time spent in the rate limit check.",
            buckets=LIMITER_BUCKETS, registry=registry)
        self.in_flight = Gauge(
            "gateway_requests_in_flight", "Requests being handled now.",
            registry=registry, multiprocess_mode="livesum")
        self.build_info = Gauge(
            "gateway_build_info", "Always 1; the version label says which build runs.",
            ["version"], registry=registry, multiprocess_mode="max")
        self.build_info.labels(version=version).set(1)
        self._children: dict[tuple[str, ...], Any] = {}

    def observe_request(self, route: str, method: str, status: int, client: str,
                        seconds: float) -> None:
        key = (route, method, str(status), client)
        pair = self._children.get(key)
        if pair is None:
            pair = (self.requests.labels(route, method, str(status), client),
                    self.duration.labels(route, method))
            self._children[key] = pair
        pair[0].inc()
        pair[1].observe(seconds)


def multiprocess_registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return registry


def clear_multiprocess_dir(path: str) -> None:
    """Empty the multiprocess directory: stale files would add dead workers' counts."""
    os.makedirs(path, exist_ok=True)
    for name in os.listdir(path):
        if name.endswith(".db"):
            os.unlink(os.path.join(path, name))


def mark_process_dead(pid: int) -> None:
    multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


def metrics_wsgi(registry: Callable[[], CollectorRegistry]) -> Callable[..., Iterable[bytes]]:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != "/metrics":
            body = json.dumps({"error": {"code": "route_not_found",
                                         "message": "Only /metrics is served here.",
                                         "request_id": ""}}).encode()
            start_response("404 Not Found", [("Content-Type", "application/json")])
            return [body]
        output = generate_latest(registry())
        start_response("200 OK", [("Content-Type", CONTENT_TYPE_LATEST),
                                  ("Content-Length", str(len(output)))])
        return [output]
    return app


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Server6(_Server):
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def start_metrics_server(bind: tuple[str, int],
                         registry: Callable[[], CollectorRegistry]) -> WSGIServer:
    host, port = bind
    server_class = _Server6 if ":" in host else _Server
    server = make_server(host, port, metrics_wsgi(registry), server_class, _QuietHandler)
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server
