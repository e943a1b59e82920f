"""The benchmark's pure parts: wrk's report line, the medians, the scenario table, the ratios.

The benchmark itself is never run by the suite (it measures, it does not
assert), but a wrong ratio in its report would mislead every decision read off
it, so the arithmetic between wrk's output and RESULTS.md is checked here.
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
REPORT_LINE = ('BENCH_JSON {"requests":3000,"duration_us":2000000,"bytes":1800000,'
               '"err_connect":0,"err_read":1,"err_write":0,"err_status":2,"err_timeout":0,'
               '"p50_us":1500,"p90_us":2500,"p99_us":9000,"mean_us":1700.0,"max_us":12000}')


@pytest.fixture(scope="module")
def bench() -> SimpleNamespace:
    """The harness modules, imported the way bench/run.py imports them (by bare name)."""
    sys.path.insert(0, str(BENCH))
    try:
        import load
        import report
        import scenarios
        import settings
    finally:
        sys.path.remove(str(BENCH))
    modules: dict[str, ModuleType] = {"load": load, "report": report, "scenarios": scenarios,
                                      "settings": settings}
    return SimpleNamespace(**modules)


def test_the_report_line_is_read_with_every_error_kind_added(bench: SimpleNamespace) -> None:
    res = bench.load.parse_report("Running 2s test\n" + REPORT_LINE + "\n")
    assert (res.requests, res.errors) == (3000, 3)
    assert res.rps == 1500.0
    assert (res.p50_ms, res.p90_ms, res.p99_ms) == (1.5, 2.5, 9.0)
    with pytest.raises(RuntimeError, match="wrk gave no result"):
        bench.load.parse_report("Running 2s test\n", "connection refused")


def test_the_median_of_the_rounds_is_kept_and_errors_are_summed(bench: SimpleNamespace) -> None:
    rounds = [bench.load.WrkResult(n, 1.0, 0, e, p, p, p)
              for n, e, p in ((900, 0, 3.0), (1000, 1, 1.0), (5000, 2, 2.0))]
    med = bench.load.median_result(rounds)
    assert (med["rps"], med["p50_ms"], med["errors"], med["requests"]) == (1000, 2.0, 3, 6900)


def _row(rps: float, p50: float = 1.0) -> dict[str, float]:
    return {"rps": rps, "mib_s": 0.0, "p50_ms": p50, "p99_ms": 2 * p50, "errors": 0,
            "requests": 1}


def test_the_gateway_is_shown_against_nginx_and_its_floor(bench: SimpleNamespace) -> None:
    res = {"versions": {}, "notes": [], "rss": {},
           "scenarios": {"catalog GET": {"nginx": _row(50000), "floor-granian": _row(12000),
                                         "floor-aiohttp": _row(5000), "gateway": _row(2000)}},
           "light": {"catalog GET": {"direct": _row(0, 0.2), "floor-aiohttp": _row(0, 0.9),
                                     "gateway": _row(0, 1.7)}}}
    text = bench.report.report(res, bench.settings.QUICK, 60.0)
    assert "| gateway | 2,000 | 0.040 | 0.400 | +1.500 |" in text
    assert "| floor-granian | 12,000 | 0.240 | 2.400 | - |" in text
    assert "distance to the floor (gateway / floor-aiohttp): 0.400 of its req/s" in text
    assert "+0.800 ms median latency at light load" in text

    del res["scenarios"]["catalog GET"]["floor-aiohttp"]
    assert "Distance to the floor" not in bench.report.report(res, bench.settings.QUICK, 60.0)


def test_scenarios_keep_only_started_targets_and_the_floors_only_on_the_catalog(
        bench: SimpleNamespace) -> None:
    started = {"upstream", "direct", "nginx", "floor-aiohttp"}
    chosen = bench.scenarios.selected(started, skip_stream=True)
    assert [(s.name, s.kind) for s in chosen] == [
        ("catalog GET", "load"), ("internal GET (bearer)", "load"), ("mail-in POST", "load"),
        ("idempotent replay POST", "load"), ("catalog GET, cache hit", "load"),
        ("catalog GET", "light")]  # the light mail-in has only "direct" left: not run
    assert chosen[0].taking_part(started) == ["nginx", "floor-aiohttp"]
    assert chosen[1].taking_part(started) == ["nginx"]
    assert all("floor" not in name for s in bench.scenarios.SCENARIOS
               if s.name != "catalog GET" for name in s.targets)


def test_a_scenario_load_takes_its_connections_from_its_kind(bench: SimpleNamespace) -> None:
    t = bench.settings.Timing()
    stream = next(s for s in bench.scenarios.SCENARIOS if s.kind == "stream").load(t)
    assert (stream.conns, stream.timeout_s) == (t.stream_conns, 30)
    light = next(s for s in bench.scenarios.SCENARIOS if s.kind == "light")
    direct = light.load(t, bench.settings.CREDENTIAL_HEADERS)
    assert direct.conns == t.light_conns
    assert direct.headers["x-api-key"] == bench.settings.API_KEY
    assert "x-api-key" not in light.load(t).headers


def test_a_cold_burst_is_reported_per_round_and_checked_against_one_request(
        bench: SimpleNamespace) -> None:
    def runs(*reached: int) -> list[dict[str, float]]:
        return [{"sent": 50, "ok": 50, "reached": n, "seconds": 0.02} for n in reached]

    res = {"versions": {}, "notes": [], "rss": {}, "light": {},
           "scenarios": {"catalog GET": {"nginx": _row(50000), "gateway": _row(4000)},
                         "mail-in POST": {"nginx": _row(40000), "gateway": _row(1900)}},
           "burst": {"cold burst of catalog misses": {
               "gateway": runs(50, 50), "gateway-cache": runs(1, 1),
               "gateway-cache-redis": runs(1, 2)}}}
    text = bench.report.report(res, bench.settings.QUICK, 60.0)
    assert "| cold burst of catalog misses | gateway | 50 | 50 | 50, 50 | 0.02 |" in text
    checks = {label: (measured, ok) for label, measured, ok in bench.report.check_targets(res)}
    assert checks["catalog GET throughput >= 0.08 x nginx"] == ("0.080", True)
    assert checks["mail-in POST throughput >= 0.05 x nginx"] == ("0.048", False)
    assert checks["cold burst through gateway-cache: one request reaches the upstream"] == (
        "1 of 50", True)
    assert checks["cold burst through gateway-cache-redis: one request reaches the upstream"] \
        == ("2 of 50", False)
    assert not any("through gateway:" in label for label in checks)
