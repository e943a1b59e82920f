"""The Grafana dashboard and the Prometheus alert rules: they parse, and every
PromQL expression names only series the gateway exports (docs/operations.md, Metrics)."""

from __future__ import annotations

import json
import re
from typing import Any

import promql_parser
import pytest
import yaml
from deploy_support import (
    ALERTS,
    DASHBOARD,
    allowed_series,
    substitute_grafana_variables,
)

from tests.support.metrics import METRICS

SERIES = allowed_series()
LABEL_VALUES = re.compile(r"^label_values\((?P<selector>.*),\s*(?P<label>\w+)\)$")


def selectors(expr: str) -> list[tuple[str, set[str]]]:
    """(metric name, label names matched) of every vector selector in expr."""
    found: list[tuple[str, set[str]]] = []

    def visit(node: Any) -> bool:
        if isinstance(node, promql_parser.VectorSelector):
            labels = {m.name for m in node.matchers.matchers}
            found.append((node.name or "", labels))
        return True

    promql_parser.walk(promql_parser.parse(expr), visit)
    return found


def grouping_labels(expr: str) -> set[str]:
    """Label names used in by (...) / on (...) clauses."""
    return {
        label.strip()
        for group in re.findall(r"\b(?:by|on|ignoring|without)\s*\(([^)]*)\)", expr)
        for label in group.split(",")
        if label.strip()
    }


def assert_uses_only_gateway_series(expr: str, where: str) -> None:
    used = selectors(expr)
    assert used, f"{where}: no metric in {expr!r}"
    known_labels = set().union(*SERIES.values())
    for name, labels in used:
        assert name in SERIES, f"{where}: unknown metric {name!r}"
        assert labels <= SERIES[name], f"{where}: {name} has no label {labels - SERIES[name]}"
    assert grouping_labels(expr) <= known_labels, f"{where}: unknown grouping label"


def test_selector_check_catches_unknown_metrics() -> None:
    with pytest.raises(AssertionError, match="unknown metric"):
        assert_uses_only_gateway_series("rate(gateway_requests_totl[5m])", "probe")
    with pytest.raises(AssertionError, match="has no label"):
        assert_uses_only_gateway_series('gateway_rate_limited_total{client="a"}', "probe")


# --- dashboard ---------------------------------------------------------------------------


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def panels() -> list[dict[str, Any]]:
    return [p for p in dashboard()["panels"] if p["type"] != "row"]


def test_dashboard_is_a_grafana_dashboard_with_unique_panels() -> None:
    board = dashboard()
    assert board["uid"] == "reusely-gateway"
    assert board["title"]
    assert isinstance(board["schemaVersion"], int)
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for panel in panels():
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"], panel["title"]
        assert panel["gridPos"]["x"] >= 0
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24


def test_dashboard_panels_do_not_overlap() -> None:
    cells: set[tuple[int, int]] = set()
    for panel in dashboard()["panels"]:
        pos = panel["gridPos"]
        mine = {
            (x, y)
            for x in range(pos["x"], pos["x"] + pos["w"])
            for y in range(pos["y"], pos["y"] + pos["h"])
        }
        assert not cells & mine, panel["title"]
        cells |= mine


def test_every_dashboard_query_uses_only_gateway_metrics() -> None:
    for panel in panels():
        for target in panel["targets"]:
            expr = substitute_grafana_variables(target["expr"])
            assert_uses_only_gateway_series(expr, f"panel {panel['title']!r}")
    for variable in dashboard()["templating"]["list"]:
        if variable["type"] != "query":
            continue
        match = LABEL_VALUES.match(variable["query"]["query"])
        assert match, variable["name"]
        selector = substitute_grafana_variables(match["selector"])
        assert_uses_only_gateway_series(selector, f"variable {variable['name']}")
        (name, _), *_ = selectors(selector)
        assert match["label"] in SERIES[name]


def test_dashboard_covers_traffic_latency_and_limits() -> None:
    exprs = " ".join(t["expr"] for p in panels() for t in p["targets"])
    by_metric = {name for name in METRICS if name in exprs}
    assert by_metric >= {
        "gateway_requests_total",
        "gateway_request_duration_seconds",
        "gateway_upstream_request_duration_seconds",
        "gateway_upstream_errors_total",
        "gateway_rate_limited_total",
        "gateway_rate_limiter_errors_total",
        "gateway_requests_in_flight",
        "gateway_upstream_responses_total",
        "gateway_credential_reloads_total",
    }
    assert "sum by (route, status)" in exprs
    assert "sum by (route, per)" in exprs
    for quantile in ("0.5", "0.95", "0.99"):
        assert f"histogram_quantile({quantile}, sum by (le) (rate(gateway_request_duration" in exprs
        assert f"histogram_quantile({quantile}, sum by (le) (rate(gateway_upstream_" in exprs


def test_dashboard_shows_reuselys_answers_by_status_and_credential_reloads() -> None:
    by_title = {p["title"]: [t["expr"] for t in p["targets"]] for p in panels()}
    [answers] = by_title["Reusely's answers by status"]
    assert answers.startswith("sum by (status) (rate(gateway_upstream_responses_total{")
    [refused] = by_title["Reusely's 401s by route"]
    assert "sum by (route)" in refused and 'status="401"' in refused
    [reloads] = by_title["Credential file reloads"]
    assert reloads.startswith("sum by (result) (increase(gateway_credential_reloads_total{")
    rows = [p["title"] for p in dashboard()["panels"] if p["type"] == "row"]
    assert "Reusely's answers" in rows


# --- alert rules -----------------------------------------------------------------------


def rules() -> list[dict[str, Any]]:
    loaded = yaml.safe_load(ALERTS.read_text())
    assert set(loaded) == {"groups"}
    return [rule for group in loaded["groups"] for rule in group["rules"]]


def test_alert_rules_parse_and_name_only_gateway_metrics() -> None:
    alerts = rules()
    assert len({a["alert"] for a in alerts}) == len(alerts)
    for alert in alerts:
        assert set(alert) <= {"alert", "expr", "for", "labels", "annotations"}
        assert_uses_only_gateway_series(alert["expr"], alert["alert"])
        assert promql_parser.parse_duration(alert["for"]).total_seconds() >= 60


def test_every_alert_explains_itself() -> None:
    for alert in rules():
        assert alert["labels"]["severity"] in {"warning", "critical"}, alert["alert"]
        annotations = alert["annotations"]
        assert set(annotations) == {"summary", "description", "runbook"}, alert["alert"]
        assert all(len(text) > 20 for text in annotations.values()), alert["alert"]
        for text in annotations.values():
            for template in re.findall(r"\{\{(.*?)\}\}", text):
                assert re.fullmatch(r"\s*\$(labels\.\w+|value)(\s*\|\s*\w+)?\s*", template)
                label = re.match(r"\s*\$labels\.(\w+)", template)
                if label:
                    assert label[1] in grouping_labels(alert["expr"]) | {"instance", "job"}


def test_alert_set_covers_the_failure_modes() -> None:
    by_metric = {
        alert["alert"]: {name for name, _ in selectors(alert["expr"])} for alert in rules()
    }
    assert by_metric["ReuselyGatewayTargetDown"] == {"up"}
    assert "gateway_upstream_errors_total" in by_metric["ReuselyGatewayUpstreamErrors"]
    assert by_metric["ReuselyGatewayHighLatency"] == {"gateway_request_duration_seconds_bucket"}
    assert by_metric["ReuselyGatewayRateLimiterErrors"] == {"gateway_rate_limiter_errors_total"}
    assert "gateway_build_info" in by_metric["ReuselyGatewayNoTraffic"]
    assert by_metric["ReuselyGatewayCredentialsRejected"] == {"gateway_upstream_responses_total"}
    rejected = next(a for a in rules() if a["alert"] == "ReuselyGatewayCredentialsRejected")
    assert 'status="401"' in rejected["expr"]
    runbook = rejected["annotations"]["runbook"]
    for cause in ("subscription lapsed", "key was regenerated", "no restart"):
        assert cause in runbook
    latency = next(a for a in rules() if a["alert"] == "ReuselyGatewayHighLatency")
    assert "histogram_quantile(0.99" in latency["expr"]
