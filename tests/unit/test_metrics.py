"""metrics: the metric objects, their labels, and the /metrics listener."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from gateway.config import METHODS
from gateway.metrics import BUCKETS, Metrics, clear_multiprocess_dir, method_label
from gateway.metricsserver import metrics_wsgi, start_metrics_server
from tests.support.gateway import free_port
from tests.support.metrics import METRICS


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def metrics(registry: CollectorRegistry) -> Metrics:
    return Metrics(registry, version="9.8.7")


def test_every_documented_metric_has_its_type_and_label_names(metrics, registry):
    metrics.upstream_duration.labels("catalog").observe(0.01)
    metrics.upstream_errors.labels("catalog", "timeout").inc()
    metrics.upstream_responses.labels("catalog", "200").inc()
    metrics.rate_limited.labels("catalog", "ip").inc()
    metrics.shadow_limited.labels("catalog", "global").inc()
    metrics.idempotent_replays.labels("checkout").inc()
    metrics.credential_reloads.labels("ok").inc()
    metrics.observe_request("catalog", "GET", 200, "public", 0.002)
    exposed = {}
    for family in registry.collect():
        for sample in family.samples:
            exposed.setdefault(family.name, (family.type, set()))[1].add(
                frozenset(set(sample.labels) - {"le"}))
    for name, (kind, labels) in METRICS.items():
        family_name = name.removesuffix("_total") if kind == "counter" else name
        assert family_name in exposed, name
        assert exposed[family_name][0] == kind, name
        assert exposed[family_name][1] == {labels}, name


def test_build_info_is_one_with_the_version_before_any_request(metrics, registry):
    assert registry.get_sample_value("gateway_build_info", {"version": "9.8.7"}) == 1
    assert registry.get_sample_value("gateway_requests_in_flight") == 0


def test_observe_request_counts_and_times_by_route_method_status_and_client(metrics, registry):
    for _ in range(3):
        metrics.observe_request("catalog", "GET", 200, "public", 0.0004)
    metrics.observe_request("catalog", "GET", 429, "ops", 7.5)
    get = registry.get_sample_value
    labels = {"route": "catalog", "method": "GET", "status": "200", "client": "public"}
    assert get("gateway_requests_total", labels) == 3
    assert get("gateway_requests_total", {**labels, "status": "429", "client": "ops"}) == 1
    duration = {"route": "catalog", "method": "GET"}
    assert get("gateway_request_duration_seconds_count", duration) == 4
    assert get("gateway_request_duration_seconds_bucket", {**duration, "le": "0.0005"}) == 3
    assert get("gateway_request_duration_seconds_bucket", {**duration, "le": "5.0"}) == 3
    assert get("gateway_request_duration_seconds_bucket", {**duration, "le": "10.0"}) == 4


def test_buckets_resolve_sub_millisecond_and_multi_second_latencies():
    assert list(BUCKETS) == sorted(BUCKETS)
    assert BUCKETS[0] <= 0.001 and BUCKETS[-1] >= 5
    assert sum(1 for b in BUCKETS if b < 0.01) >= 3
    assert sum(1 for b in BUCKETS if b >= 1) >= 3


def test_method_label_is_a_known_method_or_other():
    for method in METHODS:
        assert method_label(method) == method
    for method in ("PROPFIND", "BREW", "get", "", "GET /x"):
        assert method_label(method) == "other"


def test_in_flight_is_a_gauge_that_goes_up_and_down(metrics, registry):
    metrics.in_flight.inc()
    metrics.in_flight.inc()
    assert registry.get_sample_value("gateway_requests_in_flight") == 2
    metrics.in_flight.dec()
    metrics.in_flight.dec()
    assert registry.get_sample_value("gateway_requests_in_flight") == 0


def call(app, path: str) -> tuple[str, dict[str, str], bytes]:
    statuses: list[str] = []
    headers: dict[str, str] = {}

    def start_response(status: str, response_headers: list[tuple[str, str]]) -> None:
        statuses.append(status)
        headers.update(response_headers)

    body = b"".join(app({"PATH_INFO": path, "REQUEST_METHOD": "GET"}, start_response))
    return statuses[0], headers, body


def test_the_metrics_app_serves_only_metrics(metrics, registry):
    app = metrics_wsgi(lambda: registry)
    status, headers, body = call(app, "/metrics")
    assert status.startswith("200")
    assert headers["Content-Type"].startswith("text/plain")
    assert headers["Content-Length"] == str(len(body))
    names = {f.name for f in text_string_to_metric_families(body.decode())}
    assert "gateway_build_info" in names
    for path in ("/", "/metrics/", "/healthz", "/metricsx"):
        status, headers, body = call(app, path)
        assert status.startswith("404"), path
        assert headers["Content-Type"] == "application/json"
        assert b"gateway_" not in body


@pytest.fixture
def listener(registry: CollectorRegistry) -> Iterator[str]:
    port = free_port()
    Metrics(registry, version="1.2.3")
    server = start_metrics_server(("127.0.0.1", port), lambda: registry)
    yield f"http://127.0.0.1:{port}"
    server.shutdown()
    server.server_close()


def test_the_listener_answers_metrics_over_http(listener):
    r = httpx.get(listener + "/metrics")
    assert r.status_code == 200
    assert 'gateway_build_info{version="1.2.3"} 1.0' in r.text
    assert httpx.get(listener + "/other").status_code == 404


def test_clearing_the_multiprocess_dir_removes_only_metric_files(tmp_path: Path):
    (tmp_path / "counter_123.db").write_bytes(b"x")
    (tmp_path / "gauge_livesum_123.db").write_bytes(b"x")
    (tmp_path / "keep.txt").write_text("x")
    clear_multiprocess_dir(str(tmp_path))
    assert sorted(os.listdir(tmp_path)) == ["keep.txt"]
    fresh = tmp_path / "new" / "dir"
    clear_multiprocess_dir(str(fresh))
    assert fresh.is_dir()


def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for m in registry.collect() for s in m.samples if not s.name.endswith("_created")}


def test_batched_writes_once_flushed_equal_direct_ones():
    direct_registry, batched_registry = CollectorRegistry(), CollectorRegistry()
    direct = Metrics(direct_registry, version="t")
    batched = Metrics(batched_registry, version="t", flush_seconds=60)

    async def traffic(metrics: Metrics) -> None:
        for i, seconds in enumerate([0.0001, 0.0005, 0.003, 0.7, 61.0, 0.0005, 2.5, 0.0]):
            metrics.in_flight.inc()
            metrics.observe_request("catalog", "GET", 200 if i % 3 else 429, "public", seconds)
            metrics.upstream_duration.labels("catalog").observe(seconds / 2)
            metrics.upstream_responses.labels("catalog", "200").inc()
            metrics.limiter_duration.observe(seconds / 1000)
            metrics.limiter_errors.inc()
            metrics.credential_reloads.labels(result="ok").inc()
            if i % 2:
                metrics.in_flight.dec()

    async def both() -> None:
        await traffic(direct)
        await traffic(batched)
        assert samples(batched_registry) != samples(direct_registry)  # held back
        batched.flush()

    asyncio.run(both())
    assert samples(batched_registry) == samples(direct_registry)
    assert direct_registry.get_sample_value("gateway_requests_in_flight") == 4


def test_a_batch_flushes_itself_after_its_interval():
    registry = CollectorRegistry()
    metrics = Metrics(registry, version="t", flush_seconds=0.05)

    async def go() -> tuple[float | None, float | None]:
        metrics.observe_request("r", "GET", 200, "public", 0.01)
        before = registry.get_sample_value("gateway_requests_total", {
            "route": "r", "method": "GET", "status": "200", "client": "public"})
        await asyncio.sleep(0.1)
        return before, registry.get_sample_value("gateway_requests_total", {
            "route": "r", "method": "GET", "status": "200", "client": "public"})

    assert asyncio.run(go()) == (0.0, 1.0)
