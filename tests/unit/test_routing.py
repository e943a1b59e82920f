"""Route matching and path safety, without a server."""

from __future__ import annotations

import pytest

from gateway.errors import InvalidPath, MethodNotAllowed, RouteNotFound
from gateway.policy import parse_policy, parse_yaml
from gateway.routing import RouteTable, check_path

POLICY = """
routes:
  - {name: categories, path: /api/v2/public/catalog/categories, methods: [GET]}
  - {name: catalog, path: "/api/v2/public/catalog/{rest:path}", methods: [GET, HEAD]}
  - {name: catalog-write, path: "/api/v2/public/catalog/{rest:path}", methods: [POST]}
  - {name: lead, path: "/api/v3/public/offer/{buyback_type}/from-lead", methods: [POST]}
"""


@pytest.fixture
def table() -> RouteTable:
    return RouteTable(parse_policy(parse_yaml(POLICY, "t")).routes)


def test_first_match_wins(table):
    assert table.match("GET", "/api/v2/public/catalog/categories").name == "categories"
    assert table.match("GET", "/api/v2/public/catalog/brands").name == "catalog"


def test_a_later_route_can_take_other_methods_on_the_same_path(table):
    assert table.match("POST", "/api/v2/public/catalog/brands").name == "catalog-write"


def test_method_mismatch_lists_every_allowed_method(table):
    with pytest.raises(MethodNotAllowed) as info:
        table.match("DELETE", "/api/v2/public/catalog/brands")
    assert dict(info.value.headers)[b"allow"] == b"GET, HEAD, POST"


def test_no_route_is_404(table):
    with pytest.raises(RouteNotFound):
        table.match("GET", "/api/v2/admin/orders")


def test_path_parameters_match_one_segment(table):
    assert table.match("POST", "/api/v3/public/offer/mail-in/from-lead").name == "lead"
    with pytest.raises(RouteNotFound):
        table.match("POST", "/api/v3/public/offer/a/b/from-lead")


@pytest.mark.parametrize("raw", [
    b"/a/../b", b"/a/./b", b"/a/..", b"/..", b"/a/%2e%2e/b", b"/a/%2E./b", b"/a/.%2e",
    b"/a/%252e%252e/b", b"/a%2fb", b"/a%2Fb", b"/a%252fb", b"/a%25252fb", b"/a%5cb", b"/a\\b",
    b"/a%00", b"/a\x00b", b"/a/%2e",
])
def test_unsafe_paths_are_refused(raw):
    with pytest.raises(InvalidPath):
        check_path(raw)


@pytest.mark.parametrize("raw", [
    b"/api/v2/public/catalog/categories", b"/a/..b/c", b"/a/b..", b"/a/.well-known",
    b"/a/%20b", b"/a/%E2%82%AC", b"/a/b%2e", b"/a/iphone%2015",
])
def test_ordinary_paths_pass(raw):
    check_path(raw)
