"""The alert rules evaluated by Prometheus' own promtool on synthetic series:
each alert fires on the failure it names and stays quiet on healthy traffic.

promtool comes from Debian's `prometheus` package
(`apt-get install -y --no-install-recommends prometheus`).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml
from deploy_support import ALERTS

JOB = 'job="reusely-gateway"'
FAST_ROUTE_BUCKETS = {"0.5": "0+100x40", "1": "0+100x40", "2.5": "0+100x40", "+Inf": "0+100x40"}
SLOW_ROUTE_BUCKETS = {"0.5": "0+50x40", "1": "0+60x40", "2.5": "0+80x40", "+Inf": "0+100x40"}


def promtool() -> str:
    exe = shutil.which("promtool")
    assert exe, "promtool is missing: apt-get install -y --no-install-recommends prometheus"
    return exe


def series(name: str, labels: str, values: str) -> dict[str, str]:
    return {
        "series": f"{name}{{{JOB},{labels}}}" if labels else f"{name}{{{JOB}}}",
        "values": values,
    }


def buckets(route: str, spec: dict[str, str]) -> list[dict[str, str]]:
    return [
        series("gateway_request_duration_seconds_bucket", f'route="{route}",le="{le}"', values)
        for le, values in spec.items()
    ]


def expect(alert: str, at: str, *labels: dict[str, str]) -> dict[str, Any]:
    return {
        "eval_time": at,
        "alertname": alert,
        "exp_alerts": [{"exp_labels": dict(item)} for item in labels],
    }


CASES: list[dict[str, Any]] = [
    {
        "name": "upstream errors: 9% on catalog fires, 1% on mail-in does not",
        "input_series": [
            series("gateway_upstream_errors_total", 'route="catalog",kind="timeout"', "0+10x40"),
            series(
                "gateway_upstream_request_duration_seconds_count", 'route="catalog"', "0+100x40"
            ),
            series("gateway_upstream_errors_total", 'route="mail-in",kind="connect"', "0+1x40"),
            series(
                "gateway_upstream_request_duration_seconds_count", 'route="mail-in"', "0+100x40"
            ),
        ],
        "alert_rule_test": [
            expect("ReuselyGatewayUpstreamErrors", "5m"),
            expect(
                "ReuselyGatewayUpstreamErrors",
                "20m",
                {"severity": "critical", "job": "reusely-gateway", "route": "catalog"},
            ),
        ],
    },
    {
        "name": "upstream errors: a total outage (no successful call at all) fires",
        "input_series": [
            series("gateway_upstream_errors_total", 'route="catalog",kind="connect"', "0+5x40"),
        ],
        "alert_rule_test": [
            expect(
                "ReuselyGatewayUpstreamErrors",
                "20m",
                {"severity": "critical", "job": "reusely-gateway", "route": "catalog"},
            ),
        ],
    },
    {
        "name": "Reusely's 401s that go on fire, on the route they happen on",
        "input_series": [
            series("gateway_upstream_responses_total", 'route="catalog",status="401"',
                   "0+10x40"),
            series("gateway_upstream_responses_total", 'route="catalog",status="200"',
                   "0+100x40"),
            series("gateway_upstream_responses_total", 'route="mail-in",status="200"',
                   "0+100x40"),
        ],
        "alert_rule_test": [
            expect("ReuselyGatewayCredentialsRejected", "5m"),
            expect(
                "ReuselyGatewayCredentialsRejected",
                "20m",
                {"severity": "critical", "job": "reusely-gateway", "route": "catalog"},
            ),
        ],
    },
    {
        "name": "Reusely's 401s: one every few minutes on a quiet route still fires",
        "input_series": [
            series("gateway_upstream_responses_total", 'route="admin",status="401"',
                   "0 0 0 1 1 1 2 2 2 3 3 3 4 4 4 5 5 5 6 6 6 7 7 7 8 8 8"),
        ],
        "alert_rule_test": [
            expect(
                "ReuselyGatewayCredentialsRejected",
                "25m",
                {"severity": "critical", "job": "reusely-gateway", "route": "admin"},
            ),
        ],
    },
    {
        "name": "Reusely's 401s: a rotation's few, sent again, and its other statuses are quiet",
        "input_series": [
            # a key rotation: 6 requests refused with the old key in one minute, then none
            series("gateway_upstream_responses_total", 'route="catalog",status="401"',
                   "0x10 6x50"),
            series("gateway_upstream_responses_total", 'route="catalog",status="200"',
                   "0+100x60"),
            *(
                series("gateway_upstream_responses_total", f'route="catalog",status="{code}"',
                       "0+10x60")
                for code in ("400", "403", "404", "422", "429", "500", "502", "503")
            ),
        ],
        "alert_rule_test": [
            expect("ReuselyGatewayCredentialsRejected", at)
            for at in ("12m", "15m", "18m", "20m", "30m", "59m")
        ],
    },
    {
        "name": "server errors: 10% 502s fire",
        "input_series": [
            series("gateway_requests_total", 'route="catalog",status="200"', "0+90x40"),
            series("gateway_requests_total", 'route="catalog",status="502"', "0+10x40"),
        ],
        "alert_rule_test": [
            expect(
                "ReuselyGatewayServerErrors",
                "20m",
                {"severity": "warning", "job": "reusely-gateway", "route": "catalog"},
            ),
        ],
    },
    {
        "name": "target down after 5 minutes",
        "input_series": [
            {"series": f'up{{{JOB},instance="gateway:9464"}}', "values": "1 1 0x20"},
        ],
        "alert_rule_test": [
            expect("ReuselyGatewayTargetDown", "4m"),
            expect(
                "ReuselyGatewayTargetDown",
                "10m",
                {"severity": "critical", "job": "reusely-gateway", "instance": "gateway:9464"},
            ),
        ],
    },
    {
        "name": "p99 above 2 s on a slow route fires, not on a fast one",
        "input_series": buckets("catalog", SLOW_ROUTE_BUCKETS)
        + buckets("mail-in", FAST_ROUTE_BUCKETS),
        "alert_rule_test": [
            expect(
                "ReuselyGatewayHighLatency",
                "20m",
                {"severity": "warning", "job": "reusely-gateway", "route": "catalog"},
            ),
        ],
    },
    {
        "name": "rate limiter errors for 5 minutes fire",
        "input_series": [series("gateway_rate_limiter_errors_total", "", "0+3x20")],
        "alert_rule_test": [
            expect("ReuselyGatewayRateLimiterErrors", "3m"),
            expect(
                "ReuselyGatewayRateLimiterErrors",
                "10m",
                {"severity": "critical", "job": "reusely-gateway"},
            ),
        ],
    },
    {
        "name": "no routed traffic for an hour fires; unmatched paths do not count",
        "input_series": [
            series("gateway_build_info", 'version="0.1.0"', "1x120"),
            series("gateway_requests_total", 'route="catalog",status="200"', "5x120"),
            series("gateway_requests_total", 'route="unmatched",status="404"', "0+10x120"),
        ],
        "alert_rule_test": [
            expect("ReuselyGatewayNoTraffic", "20m"),
            expect(
                "ReuselyGatewayNoTraffic",
                "45m",
                {"severity": "warning", "job": "reusely-gateway"},
            ),
        ],
    },
    {
        "name": "steady healthy traffic raises nothing",
        "input_series": [
            series("gateway_build_info", 'version="0.1.0"', "1x120"),
            series("gateway_requests_total", 'route="catalog",status="200"', "0+100x120"),
            series(
                "gateway_upstream_request_duration_seconds_count", 'route="catalog"', "0+100x120"
            ),
            series("gateway_rate_limiter_errors_total", "", "2x120"),
            series("gateway_upstream_responses_total", 'route="catalog",status="200"',
                   "0+100x120"),
            {"series": f'up{{{JOB},instance="gateway:9464"}}', "values": "1x120"},
            *buckets("catalog", FAST_ROUTE_BUCKETS),
        ],
        "alert_rule_test": [
            expect(alert, "90m")
            for alert in (
                "ReuselyGatewayTargetDown",
                "ReuselyGatewayUpstreamErrors",
                "ReuselyGatewayCredentialsRejected",
                "ReuselyGatewayServerErrors",
                "ReuselyGatewayHighLatency",
                "ReuselyGatewayRateLimiterErrors",
                "ReuselyGatewayNoTraffic",
            )
        ],
    },
]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool(), *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_alert_rules_pass_promtool_check() -> None:
    # Also parses every annotation template.
    result = run("check", "rules", str(ALERTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 7 rules found" in result.stdout


def test_each_alert_fires_on_its_failure_and_not_on_healthy_traffic(tmp_path: Path) -> None:
    # Annotations are checked in test_deploy_observability; strip them so the
    # expected alerts need only their labels.
    rules = yaml.safe_load(ALERTS.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rules))
    covered = {t["alertname"] for case in CASES for t in case["alert_rule_test"]}
    assert covered == {r["alert"] for g in rules["groups"] for r in g["rules"]}
    tests = {
        "rule_files": ["rules.yaml"],
        "evaluation_interval": "1m",
        "tests": [{"interval": "1m", **case} for case in CASES],
    }
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(tests, sort_keys=False))
    result = run("test", "rules", str(tmp_path / "tests.yaml"))
    assert result.returncode == 0, result.stdout + result.stderr
