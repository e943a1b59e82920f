"""Metrics and logs of `reusely-gateway serve`: two gunicorn workers, a real upstream.

One served gateway for the module. Every test measures what it changes (a
before/after difference), so the tests do not depend on each other's order.
"""

from __future__ import annotations

import glob
import json
import re
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from gateway import __version__
from gateway.accesslog import ACCESS_FIELDS
from gateway.config import METHODS
from tests.support.gateway import KEYS, ServedGateway, wait_for
from tests.support.http import sha
from tests.support.metrics import METRICS
from tests.support.upstream import Upstream

TOKEN = "obs-ops-token-" + uuid.uuid4().hex
NARROW_TOKEN = "obs-narrow-token-" + uuid.uuid4().hex
WRONG_TOKEN = "obs-wrong-token-" + uuid.uuid4().hex

ROUTES = ("catalog", "checkout-mail-in", "admin", "market", "tiny", "hang", "kept", "behaviour")
POLICY = f"""
upstream:
  timeout: {{connect: 1, read: 5, write: 5, pool: 1}}
  retries: 0
cors:
  allow_origins: ["https://shop.example.com"]
routes:
  - name: catalog
    path: /api/v2/public/catalog/{{rest:path}}
    methods: [GET]
    credentials: [api_key, tenant_id]
    access: public
  - name: checkout-mail-in
    path: /api/v3/public/offer/mail-in
    methods: [POST]
    credentials: [api_key, tenant_id]
    access: public
    limits:
      - {{per: "body:email", rate: "2/hour"}}
      - {{per: "body:phone", rate: "2/hour"}}
      - {{per: ip, rate: "1000/hour"}}
  - name: admin
    path: /api/v2/admin/{{rest:path}}
    methods: [GET, POST]
    credentials: [api_key, secret_key]
    access: internal
  - name: market
    path: /market/{{rest:path}}
    methods: [GET]
    credentials: [marketplace_key]
    access: public
  - name: tiny
    path: /b/status/{{n:int}}
    methods: [GET]
    credentials: [api_key]
    access: public
    limits:
      - {{per: ip, rate: "1/hour"}}
  - name: hang
    path: /b/hang
    methods: [GET]
    credentials: [api_key]
    access: public
    timeout: {{read: 0.3}}
  - name: kept
    path: /b/kept
    methods: [POST]
    credentials: [api_key]
    access: public
    idempotency: {{ttl: 600}}
    limits:
      - {{per: global, rate: "1/hour", shadow: true}}
  - name: behaviour
    path: /b/{{kind}}
    methods: [GET, POST]
    credentials: [api_key]
    access: public
clients:
  - name: ops
    token_sha256: "{sha(TOKEN)}"
    routes: ["*"]
  - name: narrow
    token_sha256: "{sha(NARROW_TOKEN)}"
    routes: [catalog]
"""


class FirstScrapeGateway(ServedGateway):
    """Scrapes /metrics once as soon as it answers, before any request reaches the proxy.

    `http` opens a fresh connection per request (no keep-alive), so the kernel
    spreads requests over the workers, without httpx's per-client set-up cost.
    """

    first_scrape = ""

    def start(self) -> FirstScrapeGateway:
        self.http = httpx.Client(limits=httpx.Limits(max_keepalive_connections=0), timeout=10)
        super().start()
        return self

    def stop(self) -> None:
        super().stop()
        self.http.close()

    def wait_ready(self, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while not self.first_scrape:
            assert self.proc is not None
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"no metrics listener: {self.output()}")
            try:
                r = self.http.get(self.metrics_url, timeout=1)
                if r.status_code == 200:
                    self.first_scrape = r.text
            except httpx.HTTPError:
                time.sleep(0.02)
        super().wait_ready(timeout)
        # Both workers must serve before the tests spread requests over them.
        wait_for(lambda: self.output().count("Application startup complete") >= self.workers,
                 "both workers started")


@pytest.fixture(scope="module")
def upstream_m() -> Iterator[Upstream]:
    server = Upstream().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def served(upstream_m: Upstream, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[FirstScrapeGateway]:
    root = tmp_path_factory.mktemp("observability")
    policy = root / "policy.yaml"
    policy.write_text(POLICY)
    # One credential from a file, as a Secret volume gives it: its reloads are counted.
    secret_key = root / "secret-key"
    secret_key.write_text(KEYS["REUSELY_SECRET_KEY"] + "\n")
    gw = FirstScrapeGateway(policy, upstream_m.url, workers=2,
                            env={"REUSELY_MARKETPLACE_KEY": "",
                                 "REUSELY_SECRET_KEY_FILE": str(secret_key)})
    gw.env["PROMETHEUS_MULTIPROC_DIR"] = str(root / "metrics")
    gw.start()
    yield gw
    gw.stop()


def scrape(gw: FirstScrapeGateway) -> dict[str, Any]:
    r = gw.http.get(gw.metrics_url)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    return {f.name: f for f in text_string_to_metric_families(r.text)}


def family(families: dict[str, Any], name: str) -> Any:
    """A family by its exposed name (the parser drops a counter's `_total`)."""
    return families.get(name) or families.get(name.removesuffix("_total"))


def value(gw: FirstScrapeGateway, name: str, **labels: str) -> float:
    fam = family(scrape(gw), name)
    if fam is None:
        return 0.0
    wanted = name if name.endswith("_total") or fam.type != "counter" else name + "_total"
    return sum(s.value for s in fam.samples if s.name == wanted and s.labels == labels)


def series(families: dict[str, Any], name: str) -> set[tuple[tuple[str, str], ...]]:
    fam = family(families, name)
    return {tuple(sorted(s.labels.items())) for s in fam.samples} if fam else set()


def access_lines(gw: ServedGateway) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in gw.output().splitlines() if line.strip()]
    return [line for line in lines if line.get("logger") == "gateway.access"]


def logged(gw: ServedGateway, request_ids: set[str]) -> dict[str, dict[str, Any]]:
    """The access lines of these request ids, once all are written."""
    def found() -> dict[str, dict[str, Any]] | None:
        lines = {a["request_id"]: a for a in access_lines(gw) if a["request_id"] in request_ids}
        return lines if len(lines) == len(request_ids) else None
    return dict(wait_for(found, "the access lines of the scenario"))


# -- metrics -------------------------------------------------------------------


def test_build_info_is_exported_before_any_request(served):
    families = {f.name: f for f in text_string_to_metric_families(served.first_scrape)}
    [sample] = families["gateway_build_info"].samples
    assert sample.labels == {"version": __version__} and sample.value == 1
    assert not series(families, "gateway_requests_total")


def test_requests_are_counted_exactly_summed_over_both_workers(served):
    labels = {"route": "catalog", "method": "GET", "status": "200", "client": "public"}
    before = value(served, "gateway_requests_total", **labels)
    n = 40
    for i in range(n):  # a fresh connection each: the kernel spreads them over the workers
        r = served.http.get(served.url + f"/api/v2/public/catalog/item-{i}")
        assert r.status_code == 200
    wait_for(lambda: value(served, "gateway_requests_total", **labels) >= before + n,
             f"{n} more requests counted")
    assert value(served, "gateway_requests_total", **labels) == before + n
    # The scrape is a sum: each worker's own file holds only its share.
    shares = []
    for path in glob.glob(str(Path(served.env["PROMETHEUS_MULTIPROC_DIR"], "counter_*.db"))):
        alone = Path(path).parent.parent / f"alone-{uuid.uuid4().hex}"
        alone.mkdir()
        shutil.copy(path, alone)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(alone))
        shares.append(registry.get_sample_value("gateway_requests_total", labels) or 0)
    assert sum(1 for s in shares if s > 0) >= 2, shares


def test_metrics_are_not_served_on_the_proxy_listener(served):
    r = served.http.get(served.url + "/metrics")
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "route_not_found"
    assert "gateway_requests_total" not in r.text


def test_random_paths_add_no_series_beyond_unmatched(served):
    methods = ("GET", "POST", "DELETE", "PROPFIND")
    for method in methods:  # the series these requests may create, made first
        assert served.http.request(method, served.url + "/warm/up").status_code == 404
    label = {"route": "unmatched", "method": "GET", "status": "404", "client": "public"}
    before_count = value(served, "gateway_requests_total", **label)
    wait_for(lambda: all(
        value(served, "gateway_requests_total", route="unmatched",
              method="other" if m == "PROPFIND" else m, status="404", client="public")
        for m in methods), "the warm-up requests counted")
    before = scrape(served)
    sent = []
    for i in range(200):
        path = f"/r{uuid.uuid4().hex}/{i}/user{i}@example.com/+1555010{i:04d}"
        sent.append(path)
        method = methods[i % len(methods)]
        assert served.http.request(method, served.url + path).status_code == 404
    wait_for(lambda: value(served, "gateway_requests_total", **label) >= before_count + 50,
             "the random paths counted")
    after = scrape(served)
    for name in ("gateway_requests_total", "gateway_request_duration_seconds"):
        assert series(after, name) == series(before, name), name
    text = served.http.get(served.metrics_url).text
    assert "@" not in text and not any(p.split("/")[1] in text for p in sent)


def test_histogram_buckets_resolve_sub_millisecond_and_multi_second_latencies(served):
    assert served.http.get(served.url + "/api/v2/public/catalog/buckets").status_code == 200
    for name in ("gateway_request_duration_seconds", "gateway_upstream_request_duration_seconds"):
        fam = wait_for(lambda n=name: family(scrape(served), n), name)
        assert fam.type == "histogram"
        bounds = sorted({float(s.labels["le"]) for s in fam.samples if s.name.endswith("_bucket")})
        finite = [b for b in bounds if b != float("inf")]
        assert bounds[-1] == float("inf")
        assert finite[0] <= 0.001, finite
        assert finite[-1] >= 5, finite
        assert sum(1 for b in finite if b < 0.01) >= 2, finite  # resolution below 10 ms
        assert sum(1 for b in finite if b >= 1) >= 3, finite  # and across seconds


def test_in_flight_is_a_gauge_that_counts_a_slow_request_and_returns_to_zero(served,
                                                                            upstream_m):
    upstream_m.release.clear()
    upstream_m.first_sent.clear()
    result: list[httpx.Response] = []
    thread = threading.Thread(
        target=lambda: result.append(httpx.get(served.url + "/b/slow", timeout=15)))
    thread.start()
    try:
        assert upstream_m.first_sent.wait(10)
        assert family(scrape(served), "gateway_requests_in_flight").type == "gauge"
        wait_for(lambda: value(served, "gateway_requests_in_flight") == 1, "in flight: 1")
    finally:
        upstream_m.release.set()
        thread.join(15)
    assert result[0].status_code == 200 and result[0].text == "firstlast"
    wait_for(lambda: value(served, "gateway_requests_in_flight") == 0, "in flight back to 0")


def test_every_documented_metric_is_exported_with_its_type_and_labels(served):
    # Exercise what creates the labelled series: an upstream timeout, a broken
    # upstream connection, a refusal by a tiny rate limit, a replayed
    # Idempotency-Key and a request over a shadow limit.
    assert served.http.get(served.url + "/b/hang", timeout=10).status_code == 504
    assert served.http.get(served.url + "/b/reset").status_code == 502
    statuses = [served.http.get(served.url + "/b/status/200").status_code for _ in range(5)]
    assert 429 in statuses  # 1/hour per worker: the third request at the latest
    wait_for(lambda: value(served, "gateway_rate_limited_total", route="tiny", per="ip"),
             "the refusal counted")
    # One connection, so one worker (each keeps its keys and counts in memory).
    with httpx.Client(timeout=10) as one:
        for key in ("first-" + uuid.uuid4().hex, "second-" + uuid.uuid4().hex):
            r = one.post(served.url + "/b/kept", json={}, headers={"idempotency-key": key})
            assert r.status_code == 200 and "idempotent-replayed" not in r.headers
            r = one.post(served.url + "/b/kept", json={}, headers={"idempotency-key": key})
            assert r.status_code == 200 and r.headers["idempotent-replayed"] == "true"
    wait_for(lambda: value(served, "gateway_idempotent_replays_total", route="kept") >= 2
             and value(served, "gateway_rate_limit_shadow_total", route="kept", per="global"),
             "the replays and the shadow limit counted")
    families = scrape(served)
    for name, (kind, labels) in METRICS.items():
        fam = family(families, name)
        assert fam is not None, name
        assert fam.type == kind, name
        assert fam.samples, name
        for s in fam.samples:
            assert set(s.labels) - {"le"} == labels, (name, s)
    errors = family(families, "gateway_upstream_errors_total").samples
    kinds = {(s.labels["route"], s.labels["kind"]) for s in errors if s.value > 0}
    assert {("hang", "timeout"), ("behaviour", "protocol")} <= kinds
    assert value(served, "gateway_requests_total", route="tiny", method="GET", status="429",
                 client="public") >= 1


def test_no_label_holds_a_path_an_email_an_ip_or_a_token(served):
    served.http.get(served.url + "/api/v2/admin/x@example.com", headers={
        "authorization": f"Bearer {TOKEN}"})
    served.http.get(served.url + "/nowhere/10.1.2.3/+15550109999")
    allowed = {
        "route": {*ROUTES, "unmatched"},
        "client": {"public", "ops", "narrow"},
        "method": {*METHODS, "other"},
        "kind": {"timeout", "connect", "protocol"},
        "per": {"ip", "client", "global", "body:email", "body:phone"},
        "version": {__version__},
        "result": {"ok", "error"},
    }
    for fam in scrape(served).values():
        for s in fam.samples:
            for key, val in s.labels.items():
                if key == "status":
                    assert re.fullmatch(r"[1-5]\d\d", val), (fam.name, s.labels)
                elif key != "le":
                    assert val in allowed[key], (fam.name, key, val)


# -- logs ----------------------------------------------------------------------

# REUSELY_MARKETPLACE_KEY is unset in this gateway: its test value is not a secret to it.
CONFIGURED = tuple(v for k, v in KEYS.items() if k != "REUSELY_MARKETPLACE_KEY")
EMAILS = ("john.doe@example.com", "Jane.Roe+tag@Example.ORG", "li.wei@mail.example.co.uk")
PHONES = ("+15550100000", "+1 (555) 010-0001", "555-010-0002", "+44 20 7946 0958")


def phone_forms(phone: str) -> set[str]:
    digits = "".join(c for c in phone if c.isdigit())
    return {phone, digits, ("+" + digits) if phone.startswith("+") else digits}


def test_logs_hold_no_email_phone_token_or_secret_and_every_access_line_is_complete(served):
    secrets = [*CONFIGURED, TOKEN, NARROW_TOKEN, WRONG_TOKEN]
    auth = {"authorization": f"Bearer {TOKEN}"}
    ids: dict[str, int] = {}
    counter = iter(range(10_000))

    def send(method: str, path: str, expect: int | None = None, **kwargs: Any) -> int:
        request_id = f"obs-log-{next(counter)}"
        headers = {"x-request-id": request_id, **kwargs.pop("headers", {})}
        status = served.http.request(method, served.url + path, headers=headers, timeout=10,
                               **kwargs).status_code
        if expect is not None:
            assert status == expect, (method, path)
        ids[request_id] = status
        return status

    caller_keys = {"x-api-key": KEYS["REUSELY_API_KEY"],
                   "x-secret-key": KEYS["REUSELY_SECRET_KEY"],
                   "x-marketplace-key": KEYS["REUSELY_MARKETPLACE_KEY"]}
    query = "?" + "&".join(f"k{i}={v}" for i, v in enumerate([*KEYS.values(), *EMAILS]))
    for email in EMAILS:
        send("GET", f"/api/v2/public/catalog/{email}", 200)
        send("GET", f"/api/v2/public/catalog/q{query}&email={email}", 200, headers=caller_keys)
        send("GET", f"/api/v2/admin/orders/{email}", 200, headers=auth)
        send("GET", f"/nowhere/{email}", 404)
        send("DELETE", f"/api/v2/public/catalog/{email}", 405)
    for phone in PHONES:
        send("GET", f"/api/v2/public/catalog/{phone}", 200)
        send("GET", f"/api/v2/public/catalog/p?phone={phone}", 200)
        send("GET", f"/nowhere/{phone}", 404)
    for value_ in CONFIGURED:
        send("GET", f"/api/v2/public/catalog/{value_}", 200, headers=caller_keys)
        send("GET", f"/api/v2/admin/{value_}?key={value_}", 200, headers={**auth, **caller_keys})
    send("GET", "/api/v2/admin/orders", 401, headers={"authorization": f"Bearer {WRONG_TOKEN}"})
    send("GET", "/api/v2/admin/orders", 401)
    send("GET", f"/api/v2/admin/orders/{EMAILS[0]}", 403,
         headers={"authorization": f"Bearer {NARROW_TOKEN}"})
    send("GET", f"/api/v2/public/catalog/{EMAILS[1]}", 403,
         headers={"origin": "https://evil.example"})
    send("GET", f"/api/v2/public/catalog/..%2F{EMAILS[2]}", 400)
    send("GET", f"/market/{PHONES[0]}", 503)
    send("GET", f"/b/reset?email={EMAILS[0]}", 502, headers=caller_keys)
    send("GET", f"/b/hang?phone={PHONES[0]}", 504)
    # The mail-in route reads the body for its email and phone limits: 2/hour each,
    # counted per worker here (no Redis), so the fifth use of one email is refused.
    mail_in = "/api/v3/public/offer/mail-in"
    for phone in PHONES:
        send("POST", mail_in, 200, json={"email": f"{uuid.uuid4().hex}@example.net",
                                         "phone": phone, "api_key": KEYS["REUSELY_API_KEY"]})
    statuses = [send("POST", f"{mail_in}?note={EMAILS[0]}", json={
        "email": f"  {EMAILS[1].upper()} ", "phone": PHONES[1]}) for _ in range(5)]
    assert statuses[0] == 200 and 429 in statuses, statuses
    send("POST", mail_in, 400, json={"email": 5, "note": EMAILS[2]})
    send("POST", mail_in, 415, content=f"not json {EMAILS[2]} {PHONES[2]}".encode())
    send("POST", mail_in, 400, content=f"not json {EMAILS[2]} {PHONES[2]}".encode(),
         headers={"content-type": "application/json"})
    send("POST", f"{mail_in}?Email={EMAILS[2]}", 400, json={"phone": PHONES[2]})

    lines = logged(served, set(ids))
    assert {a["status"] for a in lines.values()} >= {200, 400, 401, 403, 404, 405, 429, 502,
                                                     503, 504}
    for request_id, status in ids.items():
        line = lines[request_id]
        assert set(ACCESS_FIELDS) <= set(line), line
        assert line["status"] == status
        assert isinstance(line["duration_ms"], int | float) and line["duration_ms"] >= 0
        assert "?" not in line["path"]
        assert isinstance(line["limited"], bool)
        assert line["limited"] == (status == 429)
        if status == 200:
            assert isinstance(line["upstream_status"], int)
    paths = {a["path"] for a in lines.values()}
    assert "/api/v2/public/catalog/[email]" in paths
    assert "/api/v2/public/catalog/[phone]" in paths
    assert "/api/v2/public/catalog/[secret]" in paths

    output = served.output()
    folded = output.lower()
    for email in EMAILS:
        assert email.lower() not in folded, email
        assert email.split("@")[0].lower() + "@" not in folded, email
    for phone in PHONES:
        for form in phone_forms(phone):
            assert form not in output, form
    for secret in secrets:
        assert secret not in output, secret
    assert "Traceback" not in output
    for raw in output.splitlines():
        assert raw.strip(), "an empty line"
        line = json.loads(raw)
        assert {"time", "level", "logger"} <= set(line), raw
        assert line["logger"] != "gateway.access" or set(ACCESS_FIELDS) <= set(line)


def test_start_up_log_says_which_routes_are_disabled_and_which_credentials_are_set(served):
    lines = [json.loads(raw) for raw in served.output().splitlines() if raw.strip()]
    messages = [a.get("message", "") for a in lines if a["logger"].startswith("gateway")]
    disabled = [m for m in messages if "market" in m and "disabled" in m]
    assert disabled and all("marketplace_key" in m for m in disabled), messages
    assert not any("disabled" in m and re.search(r"\bcatalog\b", m) for m in messages)
    ready = [m for m in messages if "api_key set" in m]
    assert ready, messages
    assert all("marketplace_key missing" in m and "secret_key set" in m for m in ready)
    output = served.output()
    assert not any(v in output for v in CONFIGURED)
