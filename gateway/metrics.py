"""Metric objects on an explicit registry, written in batches under gunicorn.

Under gunicorn the values live in prometheus_client's multiprocess files
(PROMETHEUS_MULTIPROC_DIR, set by `serve` before Python starts the workers),
summed per scrape by the listener in the master (`metricsserver.py`). There,
every write is a lock and a write into a memory-mapped file, a few
microseconds each, and a proxied request made six to ten of them. So the
request path counts in plain Python objects (`Pending`), and `flush()` adds
what accumulated to the real values every `FLUSH_SECONDS` and at shutdown: a
scrape is exact up to the last `FLUSH_SECONDS` of requests. Without
multiprocess files (an application embedded in a test or another server),
every write goes through at once.

Every label value is bounded by configuration: route and client names,
`unmatched`, `public`, a known method or `other`, an HTTP status, an error kind.
"""

from __future__ import annotations

import asyncio
import os
from bisect import bisect_left
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, multiprocess

from gateway.config import METHODS

BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
           1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0)
LIMITER_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25)
FLUSH_SECONDS = 0.1


def method_label(method: str) -> str:
    return method if method in METHODS else "other"


def _add_observations(child: Any, counts: list[int], total: float) -> None:
    """Add many observations to a histogram child at once.

    prometheus_client has no bulk observe; its `Histogram.observe` adds the
    amount to `_sum` and 1 to the first of `_buckets` whose bound holds it
    (non-cumulative in storage). This does the same for a whole batch. The one
    place that reads those internals: checked against prometheus-client 0.26.0
    (pinned <1).
    """
    for i, count in enumerate(counts):
        if count:
            child._buckets[i].inc(count)
    child._sum.inc(total)


class _Batch:
    """The pending writes of one Metrics, flushed together once per interval."""

    def __init__(self, interval: float | None) -> None:
        self.interval = interval
        self.dirty: list[Pending] = []
        self._timer: asyncio.TimerHandle | None = None

    def mark(self, item: Pending) -> None:
        self.dirty.append(item)
        if self.interval is None:
            self.flush()
        elif self._timer is None:
            try:
                self._timer = asyncio.get_running_loop().call_later(self.interval, self.flush)
            except RuntimeError:  # no loop running: nothing will come to flush it later
                self.flush()

    def flush(self) -> None:
        self._timer = None
        dirty, self.dirty = self.dirty, []
        for item in dirty:
            item.flush()


class Pending:
    """One labelled counter, gauge or histogram child, counted here until the flush."""

    __slots__ = ("_batch", "_bounds", "_child", "_counts", "_gauge", "_total", "marked")

    def __init__(self, batch: _Batch, child: Any, bounds: tuple[float, ...] | None = None,
                 *, gauge: bool = False) -> None:
        self._batch, self._child, self._bounds, self._gauge = batch, child, bounds, gauge
        self._counts = [0] * len(bounds) if bounds else []
        self._total = 0.0  # a counter's amount, a gauge's value, a histogram's sum
        self.marked = False

    def inc(self, amount: float = 1.0) -> None:
        self._total += amount
        self._mark()

    def dec(self, amount: float = 1.0) -> None:
        self._total -= amount
        self._mark()

    def observe(self, amount: float) -> None:
        assert self._bounds is not None
        self._counts[bisect_left(self._bounds, amount)] += 1
        self._total += amount
        self._mark()

    def _mark(self) -> None:
        if not self.marked:
            self.marked = True
            self._batch.mark(self)

    def flush(self) -> None:
        self.marked = False
        if self._gauge:
            self._child.set(self._total)  # a gauge is a level: the count is kept
        elif self._bounds is not None:
            _add_observations(self._child, self._counts, self._total)
            self._counts = [0] * len(self._bounds)
            self._total = 0.0
        elif self._total:
            self._child.inc(self._total)
            self._total = 0.0


class Family:
    """A metric with labels, handing out one `Pending` child per label values."""

    def __init__(self, batch: _Batch, metric: Counter | Histogram | Gauge, *,
                 gauge: bool = False) -> None:
        self._batch, self._metric, self._gauge = batch, metric, gauge
        self._names: tuple[str, ...] = tuple(metric._labelnames)
        bounds = getattr(metric, "_upper_bounds", None)
        self._bounds = tuple(bounds) if isinstance(metric, Histogram) and bounds else None
        self._children: dict[tuple[str, ...], Pending] = {}

    def labels(self, *values: str, **named: str) -> Pending:
        key = values or (tuple(named[n] for n in self._names) if named else ())
        child = self._children.get(key)
        if child is None:
            real = self._metric.labels(*key) if self._names else self._metric
            child = self._children[key] = Pending(self._batch, real, self._bounds,
                                                  gauge=self._gauge)
        return child

    def inc(self, amount: float = 1.0) -> None:
        self.labels().inc(amount)

    def observe(self, amount: float) -> None:
        self.labels().observe(amount)

    def dec(self, amount: float = 1.0) -> None:
        self.labels().dec(amount)


class Metrics:
    def __init__(self, registry: CollectorRegistry, *, version: str,
                 flush_seconds: float | None = None) -> None:
        self._batch = _Batch(flush_seconds)

        def family(metric: Counter | Histogram | Gauge, *, gauge: bool = False) -> Family:
            return Family(self._batch, metric, gauge=gauge)

        counter: Callable[..., Family] = lambda name, text, labels=(): family(  # noqa: E731
            Counter(name, text, list(labels), registry=registry))
        self.requests = counter("gateway_requests_total",
                                "Requests answered, by route, method, status and client.",
                                ("route", "method", "status", "client"))
        self.duration = family(Histogram(
            "gateway_request_duration_seconds", "Time from request to the last byte sent.",
            ["route", "method"], buckets=BUCKETS, registry=registry))
        self.upstream_duration = family(Histogram(
            "gateway_upstream_request_duration_seconds",
            "Time from sending to Reusely until its response headers arrived.",
            ["route"], buckets=BUCKETS, registry=registry))
        self.upstream_errors = counter("gateway_upstream_errors_total",
                                       "Requests to Reusely that failed, by kind.",
                                       ("route", "kind"))
        self.upstream_responses = counter("gateway_upstream_responses_total",
                                          "Answers Reusely gave, by its exact status.",
                                          ("route", "status"))
        self.credential_reloads = counter(
            "gateway_credential_reloads_total",
            "Credential files re-read after a change: ok, or error (the last good value kept).",
            ("result",))
        self.idempotent_replays = counter(
            "gateway_idempotent_replays_total",
            "Answers replayed for a repeated Idempotency-Key, never forwarded.", ("route",))
        self.rate_limited = counter("gateway_rate_limited_total",
                                    "Requests refused by a rate limit.", ("route", "per"))
        self.shadow_limited = counter(
            "gateway_rate_limit_shadow_total",
            "Requests a shadow limit would have refused (never refused).", ("route", "per"))
        self.limiter_errors = counter(
            "gateway_rate_limiter_errors_total",
            "Rate limit checks that failed because the storage (Redis) could not answer.")
        self.limiter_duration = family(Histogram(
            "gateway_rate_limiter_duration_seconds", "Time spent in the rate limit check.",
            buckets=LIMITER_BUCKETS, registry=registry))
        self.in_flight = family(Gauge(
            "gateway_requests_in_flight", "Requests being handled now.",
            registry=registry, multiprocess_mode="livesum"), gauge=True)
        build_info = Gauge("gateway_build_info",
                           "Always 1; the version label says which build runs.",
                           ["version"], registry=registry, multiprocess_mode="max")
        build_info.labels(version=version).set(1)

    def observe_request(self, route: str, method: str, status: int, client: str,
                        seconds: float) -> None:
        self.requests.labels(route, method, str(status), client).inc()
        self.duration.labels(route, method).observe(seconds)

    def flush(self) -> None:
        """Write everything counted so far (the app calls this at shutdown)."""
        self._batch.flush()


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
