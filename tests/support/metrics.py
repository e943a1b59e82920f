"""What tests know of the gateway's metrics: the documented table, and reading values.

`METRICS` is the table of docs/operations.md ("Metrics"): every metric the
gateway exports, by its exposed name (a counter's with `_total`), with its
Prometheus type and label names (a histogram's `le` not among them).
tests/integration/test_docs_names.py holds it equal to the docs' table, which
is held equal to what `gateway.metrics.Metrics` registers.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry

METRICS: dict[str, tuple[str, frozenset[str]]] = {
    "gateway_requests_total": ("counter", frozenset({"route", "method", "status", "client"})),
    "gateway_request_duration_seconds": ("histogram", frozenset({"route", "method"})),
    "gateway_upstream_request_duration_seconds": ("histogram", frozenset({"route"})),
    "gateway_upstream_responses_total": ("counter", frozenset({"route", "status"})),
    "gateway_upstream_errors_total": ("counter", frozenset({"route", "kind"})),
    "gateway_rate_limited_total": ("counter", frozenset({"route", "per"})),
    "gateway_rate_limit_shadow_total": ("counter", frozenset({"route", "per"})),
    "gateway_rate_limiter_errors_total": ("counter", frozenset()),
    "gateway_rate_limiter_duration_seconds": ("histogram", frozenset()),
    "gateway_idempotent_replays_total": ("counter", frozenset({"route"})),
    "gateway_credential_reloads_total": ("counter", frozenset({"result"})),
    "gateway_requests_in_flight": ("gauge", frozenset()),
    "gateway_build_info": ("gauge", frozenset({"version"})),
}


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    """One sample's value in an in-process registry; 0 while it does not exist."""
    return registry.get_sample_value(name, labels) or 0.0


def series_sum(text: str, series: str) -> float:
    """The sum of `series` in a /metrics scrape (Prometheus text).

    `series` is a sample name, every label set of it counted, or one whole
    `name{label="value",...}` as the scrape writes it.
    """
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith((series + " ", series + "{")))
