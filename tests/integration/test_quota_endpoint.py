"""`GET /gateway/quota` over real sockets, counting in a real Redis (and in memory)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.support.gateway import InProcessGateway, raw_request
from tests.support.http import error_of, sha
from tests.support.redisserver import PrivateRedis
from tests.support.upstream import Upstream

PRICING = "pricing-token-3f9a1c"
OPS = "ops-token-77b2e0"
QUOTA = "/gateway/quota"
CATALOG = "/api/v2/public/catalog/categories"
INVENTORY = "/api/v2/public/inventory/items"
POLICY = f"""
limits:
  trusted_proxies: ["127.0.0.1/32"]
  on_error: allow
routes:
  - name: catalog
    path: /api/v2/public/catalog/{{rest:path}}
    methods: [GET]
    credentials: [api_key, tenant_id]
    access: public
    limits:
      - {{per: ip, rate: "10/minute;100/day"}}
      - {{per: global, rate: "50/hour"}}
  - name: checkout-mail-in
    path: /api/v3/public/offer/mail-in
    methods: [POST]
    credentials: [api_key, tenant_id]
    access: public
    limits:
      - {{per: "body:email", rate: "5/hour"}}
      - {{per: ip, rate: "30/hour"}}
      - {{per: client, rate: "20/hour", shadow: true}}
  - name: inventory
    path: /api/v2/public/inventory/{{rest:path}}
    methods: [GET, POST]
    credentials: [api_key, secret_key]
    access: internal
    limits:
      - {{per: client, rate: "3/minute"}}
      - {{per: "header:x-shop", rate: "9/hour"}}
  - name: admin
    path: /api/v2/admin/{{rest:path}}
    credentials: [api_key]
    access: internal
    limits:
      - {{per: global, rate: "7/hour"}}
clients:
  - name: pricing-team
    token_sha256: "{sha(PRICING)}"
    routes: [catalog, inventory]
    limits:
      - {{per: client, rate: "600/minute;10000/day"}}
  - name: ops
    token_sha256: "{sha(OPS)}"
    routes: ["*"]
"""


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


@pytest.fixture
def start(gateway_factory: Callable[..., InProcessGateway],
          redis_url: str) -> Callable[..., InProcessGateway]:
    def start(text: str = POLICY, **env: str) -> InProcessGateway:
        return gateway_factory(text, env={"GATEWAY_REDIS_URL": redis_url, **env})

    return start


def quota(http: httpx.Client, gw: InProcessGateway, token: str = PRICING,
          **headers: str) -> dict[str, Any]:
    r = http.get(gw.url + QUOTA, headers={**bearer(token), **headers})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    assert r.headers["cache-control"] == "no-store"
    assert not any(name.startswith(("x-ratelimit", "ratelimit")) for name in r.headers)
    body: dict[str, Any] = r.json()
    assert set(body) == {"client", "limits"}
    for entry in body["limits"]:
        assert set(entry) == {"route", "per", "rate", "limit", "remaining", "reset"}
    return body


def numbers(body: dict[str, Any]) -> list[tuple[str | None, str, str, int, int]]:
    return [(e["route"], e["per"], e["rate"], e["limit"], e["remaining"])
            for e in body["limits"]]


def test_the_numbers_after_requests_stay_put_however_often_the_quota_is_read(
        http, start, upstream: Upstream):
    gw = start()
    for _ in range(2):
        assert http.get(gw.url + INVENTORY, headers=bearer(PRICING)).status_code == 200
    for _ in range(3):
        assert http.get(gw.url + CATALOG, headers=bearer(PRICING)).status_code == 200
    assert http.get(gw.url + CATALOG).status_code == 200  # anonymous, from the same address
    forwarded = len(upstream.received)
    reads = [quota(http, gw) for _ in range(4)]
    assert reads[0]["client"] == "pricing-team"
    assert numbers(reads[0]) == [
        (None, "client", "600/minute", 600, 595), (None, "client", "10000/day", 10000, 9995),
        ("catalog", "ip", "10/minute", 10, 6), ("catalog", "ip", "100/day", 100, 96),
        ("catalog", "global", "50/hour", 50, 46), ("inventory", "client", "3/minute", 3, 1)]
    assert all(numbers(r) == numbers(reads[0]) for r in reads)
    resets = {(e["route"], e["rate"]): e["reset"] for e in reads[-1]["limits"]}
    assert 1 <= resets[None, "600/minute"] <= 60
    assert 86000 <= resets[None, "10000/day"] <= 86400
    assert 1 <= resets["inventory", "3/minute"] <= 60
    assert len(upstream.received) == forwarded  # never forwarded
    # The quota said 1 left of 3/minute: exactly one more passes, reading consumed nothing.
    assert http.get(gw.url + INVENTORY, headers=bearer(PRICING)).status_code == 200
    refused = http.get(gw.url + INVENTORY, headers=bearer(PRICING))
    assert refused.status_code == 429
    assert numbers(quota(http, gw))[-1] == ("inventory", "client", "3/minute", 3, 0)


def test_an_empty_window_shows_its_whole_limit_and_reset_0(http, start):
    gw = start()
    body = quota(http, gw, OPS)
    assert body["client"] == "ops"
    assert all(e["remaining"] == e["limit"] and e["reset"] == 0 for e in body["limits"])


def test_a_client_with_a_star_sees_every_routes_ip_client_and_global_limits(http, start):
    gw = start()
    assert http.get(gw.url + "/api/v2/admin/orders", headers=bearer(OPS)).status_code == 200
    assert numbers(quota(http, gw, OPS)) == [
        ("catalog", "ip", "10/minute", 10, 10), ("catalog", "ip", "100/day", 100, 100),
        ("catalog", "global", "50/hour", 50, 50),
        ("checkout-mail-in", "ip", "30/hour", 30, 30),  # no body, no shadow limit
        ("inventory", "client", "3/minute", 3, 3),  # no header limit
        ("admin", "global", "7/hour", 7, 6)]


def test_the_ip_limits_are_the_callers_own_address_ipv6_by_its_64(http, start):
    gw = start()  # 127.0.0.1 is a trusted proxy here: X-Forwarded-For names the caller
    for address in ("2001:db8:1:2::5", "2001:db8:1:2:aaaa::1", "::ffff:198.51.100.7"):
        assert http.get(gw.url + CATALOG, headers={"x-forwarded-for": address}
                        ).status_code == 200

    def ip_left(address: str) -> int:
        body = quota(http, gw, **{"x-forwarded-for": address})
        return next(e["remaining"] for e in body["limits"] if e["rate"] == "10/minute")

    assert ip_left("2001:db8:1:2:ffff:ffff:ffff:ffff") == 8
    assert ip_left("[2001:db8:1:2::9]:443") == 8
    assert ip_left("2001:db8:1:3::5") == 10
    assert ip_left("198.51.100.7") == 9
    assert ip_left("198.51.100.8") == 10


@pytest.mark.parametrize("authorization", [
    None, "Bearer", "Basic cHJpY2luZzp0ZWFt", f"Bearer {PRICING} extra",
    f"Token {PRICING}", "Bearer unknown-token-0000", f"Bearer {PRICING}x",
])
def test_no_valid_client_token_is_401(http, start, authorization):
    gw = start()
    r = http.get(gw.url + QUOTA, headers={"authorization": authorization} if authorization
                 else {})
    assert r.status_code == 401
    assert error_of(r) == "unauthorized"
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert r.headers["cache-control"] == "no-store"
    assert "bearer token" in r.json()["error"]["message"]


def test_head_answers_like_get_without_a_body_and_other_methods_get_405(http, start,
                                                                       upstream: Upstream):
    gw = start()
    head = http.head(gw.url + QUOTA, headers=bearer(PRICING))
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["cache-control"] == "no-store"
    for method in ("POST", "PUT", "DELETE", "OPTIONS"):
        r = http.request(method, gw.url + QUOTA, headers=bearer(PRICING))
        assert r.status_code == 405
        assert error_of(r) == "method_not_allowed"
        assert r.headers["allow"] == "GET, HEAD"
    assert upstream.received == []


def test_the_path_is_exact_and_the_quota_is_never_routed(http, start, upstream: Upstream):
    gw = start()
    for path in ("/gateway/quota/", "/gateway/quotas", "/gateway"):
        r = http.get(gw.url + path, headers=bearer(PRICING))
        assert r.status_code == 404
        assert error_of(r) == "route_not_found"
    status, reply = raw_request(
        gw.port, f"GET {QUOTA}?x=1 HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {OPS}\r\n"
                 "Connection: close\r\n\r\n".encode())
    assert status == 200
    assert b'"client":"ops"' in reply
    assert upstream.received == []


def test_redis_unable_to_answer_is_503_rate_limiter_unavailable(http, gateway_factory):
    server = PrivateRedis().start()
    try:
        gw = gateway_factory(POLICY.replace("on_error: allow", "on_error: allow\n  timeout: 0.2"),
                             env={"GATEWAY_REDIS_URL": server.url})
        assert quota(http, gw)["client"] == "pricing-team"
        server.stop()
        r = http.get(gw.url + QUOTA, headers=bearer(PRICING))
        assert r.status_code == 503
        assert error_of(r) == "rate_limiter_unavailable"
        assert r.headers["cache-control"] == "no-store"
    finally:
        server.stop()


def test_a_client_without_any_limit_gets_an_empty_list_without_redis(http, gateway_factory):
    text = POLICY.replace('routes: ["*"]', "routes: []")
    gw = gateway_factory(text, env={"GATEWAY_REDIS_URL": "redis://127.0.0.1:1/0"})
    assert quota(http, gw, OPS) == {"client": "ops", "limits": []}


def test_in_memory_the_quota_reads_this_processs_counts(http, gateway_factory):
    gw = gateway_factory(POLICY)  # no GATEWAY_REDIS_URL
    for _ in range(2):
        assert http.get(gw.url + INVENTORY, headers=bearer(PRICING)).status_code == 200
    for _ in range(3):
        assert numbers(quota(http, gw))[-1] == ("inventory", "client", "3/minute", 3, 1)
    assert http.get(gw.url + INVENTORY, headers=bearer(PRICING)).status_code == 200
    assert http.get(gw.url + INVENTORY, headers=bearer(PRICING)).status_code == 429
