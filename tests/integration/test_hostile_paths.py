"""Path attacks over raw sockets: every decoding stage is judged before anything is forwarded."""

from __future__ import annotations

import pytest

from tests.support.gateway import raw_request

POLICY = """
routes:
  - name: catalog
    path: /api/v2/public/catalog/{rest:path}
    methods: [GET]
    credentials: [api_key, tenant_id]
    access: public
  - name: admin
    path: /api/v2/admin/{rest:path}
    methods: [GET]
    credentials: [api_key, secret_key]
    access: public
"""
CATALOG = b"/api/v2/public/catalog/"


@pytest.fixture
def gw(gateway_factory):
    return gateway_factory(POLICY)


def get(port: int, target: bytes) -> tuple[int, bytes]:
    return raw_request(port, b"GET " + target
                       + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")


@pytest.mark.parametrize("target", [
    CATALOG + b"%25252e%25252e/%25252e%25252e/admin/orders",  # triple-encoded dot segments
    CATALOG + b"%25252E%25252E/x",
    CATALOG + b"a%2525252fb",  # an encoded slash only a fourth decoding reveals
    CATALOG + b"%2525252e%2525252e/x",  # dots only a fourth decoding reveals
    CATALOG + b"..;/..;/admin/orders",
    CATALOG + b"..;jsessionid=1/x",
    CATALOG + b".;a=b/categories",
    CATALOG + b"%2e%2e;/x",
    CATALOG + b"..%3b/x",
    CATALOG + b"%c0%ae%c0%ae/%c0%ae%c0%ae/admin/orders",  # overlong UTF-8 dots
    CATALOG + b"%C0%AFadmin",  # overlong UTF-8 slash
    CATALOG + b"%e0%80%ae%e0%80%ae/x",
    CATALOG + b"%25c0%25ae%25c0%25ae/x",
    CATALOG + b"%ff/x",
])
def test_each_attack_path_gets_400_invalid_path_and_nothing_reaches_reusely(gw, upstream, target):
    status, reply = get(gw.port, target)
    assert status == 400, reply
    assert b'"code":"invalid_path"' in reply
    assert upstream.received == []


@pytest.mark.parametrize("target", [CATALOG + b"\xc0\xae\xc0\xae/x", CATALOG + b"\xff/x"])
def test_raw_bytes_that_are_not_utf8_are_refused_and_not_forwarded(gw, upstream, target):
    status, reply = get(gw.port, target)
    assert status == 400, reply  # the HTTP parser may refuse them first: a 400 either way
    if b"application/json" in reply:
        assert b'"code":"invalid_path"' in reply
    assert upstream.received == []


@pytest.mark.parametrize("target", [
    CATALOG + b"categories", CATALOG + b"%252541", CATALOG + b"b;c=d", CATALOG + b"...;x",
    CATALOG + b"%E2%82%AC", CATALOG + b"a/.well-known",
])
def test_ordinary_paths_are_forwarded_as_received(gw, upstream, target):
    status, _ = get(gw.port, target)
    assert status == 200
    [got] = upstream.received
    assert got.target == target
