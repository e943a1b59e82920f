"""Callers over real sockets: Origin rules and CORS on public routes, bearer tokens on
internal ones, token rotation and revocation by SIGHUP."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry

from tests.support.gateway import ServedGateway, raw_request, wait_for
from tests.support.http import MAIL_IN, error_of, sha
from tests.support.upstream import Upstream

OPS = "ops-token-8c1d2e"
PRICING_OLD = "pricing-token-old-41af"
PRICING_NEW = "pricing-token-new-92be"
SHOP = "https://shop.example.org"
CATALOG = "/api/v2/public/catalog/categories"
INVENTORY = "/api/v2/public/inventory/items"
ORDERS = "/api/v2/orders/recent"


def policy(*, origins: str = f'["{SHOP}", "https://*.example.com"]',
           pricing_hashes: tuple[str, ...] = (sha(PRICING_OLD), sha(PRICING_NEW))) -> str:
    hashes = ", ".join(f'"{h}"' for h in pricing_hashes)
    return f"""
cors:
  allow_origins: {origins}
  max_age: 321
routes:
  - name: catalog
    path: /api/v2/public/catalog/{{rest:path}}
    methods: [GET, HEAD]
    credentials: [api_key, tenant_id]
    access: public
  - name: checkout-mail-in
    path: {MAIL_IN}
    methods: [POST]
    credentials: [api_key, tenant_id]
    access: public
    limits:
      - {{per: "body:email", rate: "5/hour"}}
      - {{per: ip, rate: "30/hour"}}
  - name: inventory
    path: /api/v2/public/inventory/{{rest:path}}
    methods: [GET, POST]
    credentials: [api_key, secret_key]
    access: internal
  - name: orders
    path: /api/v2/orders/{{rest:path}}
    methods: [GET]
    credentials: [api_key, secret_key]
    access: internal
clients:
  - name: ops
    token_sha256: "{sha(OPS)}"
    routes: ["*"]
  - name: pricing
    token_sha256: [{hashes}]
    routes: [catalog, inventory]
"""


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def gw(gateway_factory, registry):
    return gateway_factory(policy(), registry=registry)


def cors_names(response: httpx.Response) -> set[str]:
    return {n for n in response.headers if n.lower().startswith("access-control-")}


def preflight(http: httpx.Client, url: str, origin: str, method: str = "GET") -> httpx.Response:
    return http.options(url, headers={
        "origin": origin, "access-control-request-method": method,
        "access-control-request-headers": "content-type, x-request-id"})


# -- public routes: Origin and CORS -------------------------------------------


def test_a_preflight_from_an_allowed_origin_is_answered_by_the_gateway(http, gw, upstream):
    r = preflight(http, gw.url + CATALOG, SHOP)
    assert r.status_code == 204
    assert r.headers["access-control-allow-origin"] == SHOP
    assert [m.strip() for m in r.headers["access-control-allow-methods"].split(",")] == \
        ["GET", "HEAD"]
    allowed = {h.strip().lower() for h in r.headers["access-control-allow-headers"].split(",")}
    assert {"content-type", "x-request-id"} <= allowed
    assert r.headers["access-control-max-age"] == "321"
    assert "origin" in r.headers["vary"].lower()
    assert r.content == b""

    r = preflight(http, gw.url + MAIL_IN, SHOP, "POST")
    assert r.status_code == 204
    assert r.headers["access-control-allow-methods"] == "POST"
    assert upstream.received == []


def test_a_preflight_from_another_origin_is_403_and_not_forwarded(http, gw, upstream):
    r = preflight(http, gw.url + CATALOG, "https://evil.example.net")
    assert r.status_code == 403
    assert error_of(r) == "origin_not_allowed"
    assert "access-control-allow-origin" not in r.headers
    assert upstream.received == []


def test_a_request_from_another_origin_is_403_and_not_forwarded(http, gw, upstream):
    for send in (lambda: http.get(gw.url + CATALOG, headers={"origin": "https://evil.net"}),
                 lambda: http.post(gw.url + MAIL_IN, json={"email": "a@b.c"},
                                    headers={"origin": "null"})):
        r = send()
        assert r.status_code == 403
        assert error_of(r) == "origin_not_allowed"
        assert cors_names(r) == set()
    assert upstream.received == []


def test_a_wildcard_origin_allows_subdomains_only_on_its_scheme(http, gateway_factory, upstream):
    gw = gateway_factory(policy(origins='["https://*.example.com"]'))
    ok = http.get(gw.url + CATALOG, headers={"origin": "https://a.example.com"})
    assert ok.status_code == 200
    assert ok.headers["access-control-allow-origin"] == "https://a.example.com"
    assert preflight(http, gw.url + CATALOG, "https://a.b.example.com").status_code == 204
    for origin in ("https://example.com.evil.net", "http://a.example.com",
                   "https://example.com", "https://a.example.com:444"):
        r = http.get(gw.url + CATALOG, headers={"origin": origin})
        assert r.status_code == 403, origin
        assert error_of(r) == "origin_not_allowed"
        assert preflight(http, gw.url + CATALOG, origin).status_code == 403, origin
    assert len(upstream.received) == 1


def test_a_request_without_origin_is_served_without_cors_headers(http, gw, upstream):
    r = http.get(gw.url + CATALOG)
    assert r.status_code == 200
    assert cors_names(r) == set()
    assert len(upstream.received) == 1


def test_responses_to_an_allowed_origin_carry_and_expose_the_cors_headers(http, gw, upstream):
    r = http.post(gw.url + MAIL_IN, json={"email": "ada@example.org"}, headers={"origin": SHOP})
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == SHOP
    assert "origin" in [v.strip().lower() for v in r.headers["vary"].split(",")]
    exposed = {h.strip().lower() for h in r.headers["access-control-expose-headers"].split(",")}
    assert {"retry-after", "x-request-id", "x-ratelimit-limit", "x-ratelimit-remaining",
            "x-ratelimit-reset"} <= exposed
    assert {"x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset",
            "x-request-id"} <= set(r.headers)
    assert "access-control-allow-credentials" not in r.headers
    assert upstream.received[0].header("origin") == SHOP  # the caller's headers pass on


def test_the_gateways_own_refusals_to_an_allowed_origin_are_readable_by_the_page(http, gw,
                                                                               upstream):
    for _ in range(5):
        assert http.post(gw.url + MAIL_IN, json={"email": "ada@example.org"},
                          headers={"origin": SHOP}).status_code == 200
    r = http.post(gw.url + MAIL_IN, json={"email": "ada@example.org"}, headers={"origin": SHOP})
    assert r.status_code == 429
    assert error_of(r) == "rate_limited"
    assert r.headers["access-control-allow-origin"] == SHOP
    assert "retry-after" in r.headers["access-control-expose-headers"].lower()
    assert len(upstream.received) == 5


# -- internal routes: bearer tokens -------------------------------------------


@pytest.mark.parametrize("authorization", [
    None, "Bearer", "Basic x", f"Bearer  {OPS}", "Bearer unknown-token-0000",
    f"Basic {OPS}", f"Token {OPS}", OPS, f"Bearer {OPS}x",
])
def test_missing_malformed_and_unknown_tokens_get_one_and_the_same_401(http, gw, upstream,
                                                                         authorization):
    headers = {} if authorization is None else {"authorization": authorization}
    r = http.get(gw.url + INVENTORY, headers=headers)
    assert r.status_code == 401
    assert error_of(r) == "unauthorized"
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert r.json()["error"]["message"] == "A valid bearer token is required for this route."
    assert upstream.received == []


def test_the_malformed_header_forms_arrive_as_sent_and_are_refused(gw, upstream):
    for value in (b"Bearer", b"Basic x", b"Bearer  " + OPS.encode()):
        status, reply = raw_request(gw.port, b"GET " + INVENTORY.encode() + b" HTTP/1.1\r\n"
                                    b"Host: x\r\nAuthorization: " + value +
                                    b"\r\nConnection: close\r\n\r\n")
        assert status == 401
        assert b'"code":"unauthorized"' in reply
        assert b"\r\nwww-authenticate: bearer" in reply.lower()
    assert upstream.received == []


def test_a_valid_token_is_forwarded_and_never_reaches_reusely(http, gw, upstream):
    r = http.post(gw.url + INVENTORY + "?q=1", content=b'{"sku": "a1"}',
                   headers={"authorization": f"Bearer {OPS}", "content-type": "application/json"})
    assert r.status_code == 200
    r = http.get(gw.url + INVENTORY, headers={"authorization": f"bearer {PRICING_NEW}"})
    assert r.status_code == 200
    assert len(upstream.received) == 2
    for got in upstream.received:
        assert "authorization" not in got.names()
        everything = repr(got).encode() + got.target + got.body
        for token in (OPS, PRICING_NEW, sha(OPS), sha(PRICING_NEW)):
            assert token.encode() not in everything
            assert token.encode() not in everything.lower()


def test_a_valid_token_on_a_route_its_client_lacks_is_403_forbidden(http, gw, upstream):
    r = http.get(gw.url + ORDERS, headers={"authorization": f"Bearer {PRICING_OLD}"})
    assert r.status_code == 403
    assert error_of(r) == "forbidden"
    assert "www-authenticate" not in r.headers
    assert upstream.received == []
    assert http.get(gw.url + ORDERS, headers={"authorization": f"Bearer {OPS}"}).status_code \
        == 200


def test_an_internal_route_sends_no_cors_headers_and_answers_no_preflight(http, gw, upstream):
    r = http.get(gw.url + INVENTORY, headers={"authorization": f"Bearer {OPS}", "origin": SHOP})
    assert r.status_code == 200
    assert cors_names(r) == set()
    r = http.get(gw.url + INVENTORY, headers={"origin": SHOP})
    assert r.status_code == 401
    assert cors_names(r) == set()
    r = preflight(http, gw.url + INVENTORY, SHOP)
    assert r.status_code == 403
    assert error_of(r) == "origin_not_allowed"
    assert cors_names(r) == set()
    assert len(upstream.received) == 1


def test_a_token_on_a_public_route_must_be_valid_and_names_the_caller(http, gw, upstream, registry):
    for bad in ("Bearer nope-nope", "Basic x", "Bearer"):
        r = http.get(gw.url + CATALOG, headers={"authorization": bad})
        assert r.status_code == 401, bad
        assert error_of(r) == "unauthorized"
    assert upstream.received == []
    r = http.get(gw.url + CATALOG, headers={"authorization": f"Bearer {PRICING_OLD}",
                                             "origin": SHOP})
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == SHOP
    assert http.get(gw.url + CATALOG).status_code == 200
    labels = {"route": "catalog", "method": "GET", "status": "200"}
    # The access line and metrics are written just after the answer is sent.
    wait_for(lambda: registry.get_sample_value(
        "gateway_requests_total", {**labels, "client": "pricing"}) == 1)
    wait_for(lambda: registry.get_sample_value(
        "gateway_requests_total", {**labels, "client": "public"}) == 1)
    assert [g.header("authorization") for g in upstream.received] == [None, None]


def test_both_tokens_of_a_client_being_rotated_work(http, gw, upstream):
    for token in (PRICING_OLD, PRICING_NEW):
        r = http.get(gw.url + INVENTORY, headers={"authorization": f"Bearer {token}"})
        assert r.status_code == 200, token
    assert len(upstream.received) == 2


def test_sighup_revokes_a_removed_token_without_a_restart(http: httpx.Client, tmp_path: Path,
                                                          upstream: Upstream):
    config = tmp_path / "gateway.yaml"
    config.write_text(policy())
    served = ServedGateway(config, upstream.url, workers=1).start()
    try:
        def status(token: str) -> int:
            return http.get(served.url + INVENTORY, timeout=5,
                             headers={"authorization": f"Bearer {token}"}).status_code

        assert (status(PRICING_OLD), status(PRICING_NEW)) == (200, 200)
        master = served.proc.pid if served.proc else None
        config.write_text(policy(pricing_hashes=(sha(PRICING_NEW),)))
        served.signal(signal.SIGHUP)
        deadline = time.monotonic() + 20
        while status(PRICING_OLD) != 401:
            assert time.monotonic() < deadline, served.output()
            time.sleep(0.1)
        # Once the new workers answer, the old token stays refused and the kept one works.
        for _ in range(5):
            assert (status(PRICING_OLD), status(PRICING_NEW)) == (401, 200)
        assert served.proc is not None and served.proc.poll() is None
        assert served.proc.pid == master
        assert "reloading policy" in served.output()
    finally:
        served.stop()
