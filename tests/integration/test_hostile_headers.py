"""Headers a hostile caller sends, and credential echoes in Reusely's answers, over real sockets."""

from __future__ import annotations

import httpx
import pytest

from tests.support.gateway import KEYS, raw_request

POLICY = """
routes:
  - name: catalog
    path: /api/v2/public/catalog/{rest:path}
    methods: [GET]
    credentials: [api_key, tenant_id]
    access: public
  - name: behaviour
    path: /b/{kind}
    methods: [GET]
    credentials: [api_key, secret_key]
    access: public
"""
MEANING_CHANGING = {
    "X-HTTP-Method-Override": "DELETE",
    "X-HTTP-Method": "DELETE",
    "X-Method-Override": "PUT",
    "X-Original-URL": "/api/v2/admin/orders",
    "X-Rewrite-URL": "/api/v2/admin/orders",
    "X-Forwarded-Host": "evil.example",
    "X-Forwarded-Port": "8443",
    "X-Forwarded-Prefix": "/admin",
    "X-Forwarded-Server": "evil.example",
    "True-Client-IP": "6.6.6.6",
    "CF-Connecting-IP": "6.6.6.6",
    "X-Client-IP": "6.6.6.6",
    "X-Real-IP": "6.6.6.6",
    "Forwarded": "for=6.6.6.6;host=evil.example;proto=https",
}
UNDERSCORED = {
    "x_api_key": "caller-api-key",
    "x_secret_key": "caller-secret-key",
    "X_Tenant_Id": "caller-tenant",
    "x-marketplace_key": "caller-market",
    "x_forwarded_for": "6.6.6.6",
    "x_http_method_override": "DELETE",
}


@pytest.fixture
def gw(gateway_factory):
    return gateway_factory(POLICY)


def test_no_header_that_changes_a_requests_meaning_reaches_reusely(gw, upstream):
    sent = {**MEANING_CHANGING, **UNDERSCORED, "X-Kept": "yes"}
    head = "".join(f"{name}: {value}\r\n" for name, value in sent.items())
    status, _ = raw_request(gw.port, (
        "GET /api/v2/public/catalog/categories HTTP/1.1\r\nHost: x\r\n"
        f"{head}Connection: close\r\n\r\n").encode())
    assert status == 200
    [got] = upstream.received
    for name in sent:
        if name != "X-Kept":
            assert name.lower() not in got.names(), name
    assert not any("_" in name for name in got.names())
    assert got.header("x-kept") == "yes"
    assert [v for n, v in got.headers if n == "x-api-key"] == [KEYS["REUSELY_API_KEY"]]
    assert [v for n, v in got.headers if n == "x-tenant-id"] == [KEYS["REUSELY_TENANT_ID"]]
    assert got.header("x-forwarded-for") == "127.0.0.1"
    assert "caller-" not in repr(got) and "6.6.6.6" not in repr(got)
    assert "evil.example" not in repr(got) and "DELETE" not in repr(got)


def test_a_credential_value_echoed_in_an_innocent_header_never_reaches_the_caller(gw, upstream):
    r = httpx.get(gw.url + "/b/echo-key")
    assert r.status_code == 200
    assert upstream.received[-1].header("x-api-key") == KEYS["REUSELY_API_KEY"]
    assert "x-debug-auth" not in r.headers and "x-echo" not in r.headers
    assert r.headers["x-upstream"] == "kept"
    assert KEYS["REUSELY_API_KEY"] not in str(r.headers.raw)
    assert KEYS["REUSELY_API_KEY"] not in r.text
