"""The core proxy over real sockets: the gateway in front of a recording upstream."""

from __future__ import annotations

import hashlib
import json
import threading

import httpx
import pytest

from tests.support.gateway import KEYS, free_port, raw_request
from tests.support.http import error_of, sha
from tests.support.upstream import PATTERN

TOKEN = "ops-token-3b9f0c1e"

POLICY = f"""
upstream:
  timeout: {{connect: 1, read: 1, write: 1, pool: 1}}
max_body_bytes: 1000
routes:
  - name: catalog
    path: /api/v2/public/catalog/{{rest:path}}
    methods: [GET, HEAD]
    credentials: [api_key, tenant_id]
    access: public
  - name: checkout
    path: /api/v3/public/offer/mail-in
    methods: [POST]
    credentials: [api_key, tenant_id]
    access: public
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
  - name: big
    path: /b/big/{{n:int}}
    methods: [GET]
    credentials: [api_key]
    access: public
    max_body_bytes: 0
  - name: status
    path: /b/status/{{n:int}}
    methods: [GET, POST]
    credentials: [api_key]
    access: public
  - name: behaviour
    path: /b/{{kind}}
    methods: [GET, POST]
    credentials: [api_key]
    access: public
clients:
  - name: ops
    token_sha256: "{sha(TOKEN)}"
    routes: ["*"]
"""


@pytest.fixture
def gw(gateway_factory):
    return gateway_factory(POLICY)


def test_public_route_gets_exactly_its_credentials_and_the_query_byte_for_byte(gw, upstream):
    target = "/api/v2/public/catalog/condition?brand=apple&spec[model]=a%2Fb&q=x+y%20z&e=%e2%82%ac"
    status, _ = raw_request(gw.port, f"GET {target} HTTP/1.1\r\nHost: x\r\n"
                                     "Connection: close\r\n\r\n".encode())
    assert status == 200
    [got] = upstream.received
    assert got.target == target.encode()
    assert got.header("x-api-key") == KEYS["REUSELY_API_KEY"]
    assert got.header("x-tenant-id") == KEYS["REUSELY_TENANT_ID"]
    assert "x-secret-key" not in got.names() and "x-marketplace-key" not in got.names()


def test_internal_route_gets_its_credentials_and_not_the_tenant(gw, upstream):
    r = httpx.get(gw.url + "/api/v2/admin/orders", headers={"authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 200
    [got] = upstream.received
    assert got.header("x-api-key") == KEYS["REUSELY_API_KEY"]
    assert got.header("x-secret-key") == KEYS["REUSELY_SECRET_KEY"]
    assert "x-tenant-id" not in got.names()
    assert "authorization" not in got.names()


def test_caller_headers_that_must_not_reach_reusely_are_stripped(gw, upstream):
    request = (
        "GET /api/v2/admin/orders HTTP/1.1\r\nHost: evil.example\r\n"
        f"Authorization: Bearer {TOKEN}\r\n"
        "Cookie: session=caller-cookie\r\nX-Api-Key: caller-api\r\nX-Secret-Key: caller-secret\r\n"
        "X-Tenant-Id: caller-tenant\r\nX-Marketplace-Key: caller-market\r\n"
        "Connection: keep-alive, X-Custom-Hop\r\nX-Custom-Hop: 1\r\nKeep-Alive: timeout=5\r\n"
        "TE: trailers\r\nTrailer: X-T\r\nUpgrade: h2c\r\nProxy-Authorization: Basic eA==\r\n"
        "Proxy-Authenticate: Basic\r\nForwarded: for=6.6.6.6\r\nX-Real-IP: 6.6.6.6\r\n"
        "X-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Proto: https\r\nX-Kept: yes\r\n\r\n"
    ).encode()
    status, _ = raw_request(gw.port, request)
    assert status == 200
    [got] = upstream.received
    for name in ("cookie", "authorization", "x-marketplace-key", "x-tenant-id", "x-custom-hop",
                 "keep-alive", "te", "trailer", "upgrade", "proxy-authorization",
                 "proxy-authenticate", "forwarded", "x-real-ip", "transfer-encoding"):
        assert name not in got.names(), name
    assert got.header("host") == f"127.0.0.1:{upstream.port}"
    assert got.header("x-api-key") == KEYS["REUSELY_API_KEY"]
    assert got.header("x-secret-key") == KEYS["REUSELY_SECRET_KEY"]
    assert [v for n, v in got.headers if n == "x-api-key"] == [KEYS["REUSELY_API_KEY"]]
    assert got.header("x-forwarded-for") == "127.0.0.1"
    assert got.header("x-forwarded-proto") == "http"
    assert got.header("x-kept") == "yes"
    assert TOKEN not in repr(got)


@pytest.mark.parametrize("target", [
    "/api/v2/public/catalog/../../admin/orders",
    "/api/v2/public/catalog/./categories",
    "/api/v2/public/catalog/%2e%2e/%2e%2e/admin/orders",
    "/api/v2/public/catalog/.%2E/x",
    "/api/v2/public/catalog/%252e%252e/x",
    "/api/v2/public/catalog/a%2Fb",
    "/api/v2/public/catalog/a%2fb",
    "/api/v2/public/catalog/a%252Fb",
    "/api/v2/public/catalog/a%5Cb",
    "/api/v2/public/catalog/a\\b",
    "/api/v2/public/catalog/a%00b",
    "/api/v2/public/catalog/a\x00b",
    "/api/v2/public/catalog/..",
])
def test_path_attacks_are_refused_and_never_forwarded(gw, upstream, target):
    status, reply = raw_request(gw.port, f"GET {target} HTTP/1.1\r\nHost: x\r\n"
                                         "Connection: close\r\n\r\n".encode("latin-1"))
    assert status == 400
    if b"\x00" not in target.encode("latin-1"):  # a raw NUL may be refused by the parser
        assert b'"code":"invalid_path"' in reply
    assert upstream.received == []


def test_unknown_path_is_404_route_not_found(gw, upstream):
    r = httpx.get(gw.url + "/nowhere/at/all")
    assert r.status_code == 404 and error_of(r) == "route_not_found"
    assert r.headers["content-type"] == "application/json"
    assert upstream.received == []


def test_wrong_method_is_405_with_allow(gw, upstream):
    r = httpx.delete(gw.url + "/api/v2/public/catalog/categories")
    assert r.status_code == 405 and error_of(r) == "method_not_allowed"
    assert r.headers["allow"] == "GET, HEAD"
    assert upstream.received == []


def test_body_over_the_limit_with_content_length_is_413_and_not_forwarded(gw, upstream):
    r = httpx.post(gw.url + "/api/v3/public/offer/mail-in", content=b"x" * 1001)
    assert r.status_code == 413 and error_of(r) == "payload_too_large"
    assert upstream.received == []


def test_body_over_the_limit_without_content_length_is_413(gw, upstream):
    def chunks():
        for _ in range(20):
            yield b"y" * 100

    r = httpx.post(gw.url + "/api/v3/public/offer/mail-in", content=chunks())
    assert r.status_code == 413 and error_of(r) == "payload_too_large"
    assert upstream.received == []


def test_body_under_the_limit_streams_through_unchanged(gw, upstream):
    def chunks():
        for i in range(9):
            yield bytes([65 + i]) * 100

    r = httpx.post(gw.url + "/api/v3/public/offer/mail-in", content=chunks())
    assert r.status_code == 200
    assert upstream.received[0].body == b"".join(bytes([65 + i]) * 100 for i in range(9))


def test_connection_refused_is_502_upstream_unavailable(gateway_factory):
    gw = gateway_factory(POLICY, upstream_url=f"http://127.0.0.1:{free_port()}")
    r = httpx.get(gw.url + "/api/v2/public/catalog/categories")
    assert r.status_code == 502 and error_of(r) == "upstream_unavailable"


def test_slow_upstream_is_504_upstream_timeout(gw, upstream):
    r = httpx.get(gw.url + "/b/hang", timeout=10)
    assert r.status_code == 504 and error_of(r) == "upstream_timeout"


def test_a_post_to_an_upstream_that_resets_reaches_it_exactly_once(gw, upstream):
    r = httpx.post(gw.url + "/b/reset", json={"email": "a@example.com"})
    assert r.status_code == 502 and error_of(r) == "upstream_unavailable"
    assert [x.method for x in upstream.received] == ["POST"]


def test_reusely_errors_pass_through_unchanged(gw, upstream):
    # 401 is Reusely refusing the gateway's own credentials: a 502 of the gateway's
    # (test_reusely_answers.py); 429 last, as it holds the route for a while.
    for code in (400, 403, 404, 500, 503, 429):
        r = httpx.get(gw.url + f"/b/status/{code}")
        assert r.status_code == code
        assert r.json() == {"status_code": code, "path": f"/status/{code}", "method": "GET"}


def test_response_cookies_hop_by_hop_and_credential_headers_are_stripped(gw, upstream):
    r = httpx.get(gw.url + "/b/cookie")
    assert r.status_code == 200
    for name in ("set-cookie", "x-api-key", "x-secret-key", "x-tenant-id", "x-marketplace-key",
                 "x-hop", "access-control-allow-origin"):
        assert name not in r.headers, name
    assert r.headers["x-upstream"] == "kept"
    assert "leaked" not in str(r.headers)


def test_a_slow_upstreams_first_chunk_reaches_the_caller_before_its_last_is_sent(gw, upstream):
    with httpx.stream("GET", gw.url + "/b/slow", timeout=10) as r:
        chunks = r.iter_raw()
        first = next(chunks)
        assert first == b"first"
        assert not upstream.last_sent.is_set()
        upstream.release.set()
        assert b"".join(chunks) == b"last"


def test_a_32_mib_response_arrives_intact(gw, upstream):
    size = 32 * 1024 * 1024
    digest = hashlib.sha256()
    total = 0
    with httpx.stream("GET", gw.url + f"/b/big/{size}", timeout=30) as r:
        assert r.status_code == 200
        assert r.headers["content-length"] == str(size)
        for chunk in r.iter_raw():
            digest.update(chunk)
            total += len(chunk)
    assert total == size
    assert digest.hexdigest() == hashlib.sha256(PATTERN * 32).hexdigest()


def test_a_valid_request_id_is_kept_and_a_bad_one_replaced(gw, upstream):
    r = httpx.get(gw.url + "/api/v2/public/catalog/x", headers={"x-request-id": "abc.DEF-1_2"})
    assert r.headers["x-request-id"] == "abc.DEF-1_2"
    assert upstream.received[0].header("x-request-id") == "abc.DEF-1_2"
    for bad in ("a" * 129, "has space", "semi;colon", "15555550123", "1-555-010-0000"):
        r = httpx.get(gw.url + "/api/v2/public/catalog/x", headers={"x-request-id": bad})
        new = r.headers["x-request-id"]
        assert new != bad and 1 <= len(new) <= 128
        assert upstream.received[-1].header("x-request-id") == new


def test_a_route_whose_credential_is_missing_answers_503(gateway_factory, upstream):
    gw = gateway_factory(POLICY, env={"REUSELY_MARKETPLACE_KEY": ""})
    r = httpx.get(gw.url + "/market/anything")
    assert r.status_code == 503 and error_of(r) == "credential_not_configured"
    assert KEYS["REUSELY_API_KEY"] not in r.text
    assert upstream.received == []
    assert httpx.get(gw.url + "/api/v2/public/catalog/x").status_code == 200


def test_health_and_readiness(gw):
    r = httpx.get(gw.url + "/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok"}
    r = httpx.get(gw.url + "/readyz")
    assert r.status_code == 200 and r.json()["policy"] == "loaded"
    assert httpx.get(gw.url + "/metrics").status_code == 404


def test_concurrent_requests_each_get_their_own_answer(gw, upstream):
    results: list[str] = []

    def call(i: int) -> None:
        r = httpx.get(gw.url + f"/api/v2/public/catalog/item-{i}")
        results.append(json.loads(r.text)["path"])

    threads = [threading.Thread(target=call, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == sorted(f"/api/v2/public/catalog/item-{i}" for i in range(20))


CACHE_POLICY = """
routes:
  - name: cached-status
    path: /b/status/{n:int}
    methods: [GET]
    credentials: [api_key]
    access: public
    cache_ttl: 60
  - name: cached
    path: /b/{kind}
    methods: [GET]
    credentials: [api_key]
    access: public
    cache_ttl: 60
"""


def test_cache_ttl_routes_answer_repeated_gets_from_memory(gateway_factory, upstream):
    gw = gateway_factory(CACHE_POLICY)
    first = httpx.get(gw.url + "/b/item?a=1")
    second = httpx.get(gw.url + "/b/item?a=1")
    assert first.headers["x-cache-status"] == "miss"
    assert second.headers["x-cache-status"] == "hit" and "age" in second.headers
    assert second.content == first.content
    assert second.headers["x-request-id"] != first.headers["x-request-id"]
    assert len(upstream.received) == 1
    assert httpx.get(gw.url + "/b/item?a=2").headers["x-cache-status"] == "miss"
    assert len(upstream.received) == 2


def test_cache_keeps_no_errors(gateway_factory, upstream):
    gw = gateway_factory(CACHE_POLICY)
    for _ in range(2):
        r = httpx.get(gw.url + "/b/status/404")
        assert r.status_code == 404 and r.headers["x-cache-status"] == "bypass"
    assert len(upstream.received) == 2


def test_connections_to_reusely_are_reused_across_requests(gw, upstream):
    with httpx.Client() as client:
        for path in ("/api/v2/public/catalog/a", "/api/v2/public/catalog/b", "/b/big/100000",
                     "/b/status/404", "/api/v2/public/catalog/c"):
            assert client.get(gw.url + path).status_code in (200, 404)
    assert len(upstream.received) == 5
    assert upstream.connections == 1


def test_the_gateway_adds_no_headers_of_its_own_choosing(gw, upstream):
    status, _ = raw_request(gw.port, b"POST /api/v3/public/offer/mail-in HTTP/1.1\r\nHost: x\r\n"
                                     b"Content-Length: 2\r\nConnection: close\r\n\r\n{}")
    assert status == 200
    [got] = upstream.received
    assert got.body == b"{}"
    assert not {"user-agent", "accept", "accept-encoding", "content-type"} & got.names()
    assert sorted(got.names()) == sorted(["host", "content-length", "x-api-key", "x-tenant-id",
                                          "x-forwarded-for", "x-forwarded-proto", "x-request-id"])


def test_head_and_bodiless_answers_pass_through(gw, upstream):
    r = httpx.head(gw.url + "/api/v2/public/catalog/categories")
    assert r.status_code == 200 and r.content == b""
    assert int(r.headers["content-length"]) > 0  # the length a GET would have
    assert upstream.received[-1].method == "HEAD"
    r = httpx.get(gw.url + "/b/status/204")
    assert r.status_code == 204 and r.content == b""
    r = httpx.get(gw.url + "/b/status/304")
    assert r.status_code == 304 and r.content == b""
