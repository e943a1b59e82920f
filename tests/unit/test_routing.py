"""Route matching and path safety, without a server."""

from __future__ import annotations

import time

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
    b"/a/%25252e%25252e/b",  # three decodings to reach ".."
    b"/a/%25252E%25252E",
    b"/a/%25%32%65%25%32%65/b",  # encoded percent signs: "%2e%2e" after one decoding
    b"/a/%2525252fb",  # three decodings to reach "%2f", a fourth to reach "/"
    b"/a/%25255c",
    b"/a/%252500",
])
def test_dot_segments_and_encoded_separators_are_found_at_any_depth(raw):
    with pytest.raises(InvalidPath):
        check_path(raw)


@pytest.mark.parametrize("raw", [
    b"/a/%2525252e",  # "." only after four decodings
    b"/a/%2525252541",  # "A" after five: harmless, but nothing legitimate is that deep
    b"/a/%25252525",  # still "%25..." after three decodings
])
def test_a_path_still_changing_after_three_decodings_is_refused(raw):
    with pytest.raises(InvalidPath):
        check_path(raw)


@pytest.mark.parametrize("raw", [
    b"/a/%252541",  # "A" after three decodings: the fourth changes nothing
    b"/a/%2525",  # "%" after two: a lone percent sign stays
    b"/a/100%25",
    b"/a/%zz/b",
])
def test_three_decodings_are_allowed_when_the_path_then_stays(raw):
    check_path(raw)


@pytest.mark.parametrize("raw", [
    b"/a/..;/b", b"/a/..;x/b", b"/a/.;a=b/c", b"/a/..;", b"/a/.;", b"/..;/admin",
    b"/a/%2e%2e;/b", b"/a/..%3b/b", b"/a/..%253bx/b", b"/a/.%2e%3Bjsessionid=1/b",
])
def test_a_dot_segment_with_a_parameter_is_refused(raw):
    with pytest.raises(InvalidPath):
        check_path(raw)


@pytest.mark.parametrize("raw", [
    b"/a/%c0%ae%c0%ae/b",  # overlong "."
    b"/a/%C0%AF",  # overlong "/"
    b"/a/%e0%80%ae",  # three-byte overlong "."
    b"/a/%25c0%25ae",  # overlong, after two decodings
    b"/a/%ff/b",
    b"/a/%ed%a0%80",  # a UTF-16 surrogate encoded as UTF-8
    b"/a/%e2%82",  # a truncated sequence
    b"/a/\xc0\xae/b",  # raw bytes, not valid UTF-8
    b"/a/\xff",
])
def test_a_stage_that_is_not_valid_utf8_is_refused(raw):
    with pytest.raises(InvalidPath):
        check_path(raw)


@pytest.mark.parametrize("raw", [
    b"/api/v2/public/catalog/categories", b"/a/..b/c", b"/a/b..", b"/a/.well-known",
    b"/a/%20b", b"/a/%E2%82%AC", b"/a/b%2e", b"/a/iphone%2015", b"/a/\xe2\x82\xac",
    b"/a/b;c=d/e", b"/a/...;x", b"/a/.x;y", b"/a/;../b", b"/a//b", b"/a/%253Bx",
])
def test_ordinary_paths_pass(raw):
    check_path(raw)


@pytest.mark.parametrize(("path", "safe"), [
    (b"/" + b"a/" * 8000, True),
    (b"/" + b"%25" * 5000, True),
    (b"/" + b"%2525" * 3000, True),
    (b"/" + b"%252525" * 2000 + b"/%2e", False),
    (b"/" + b"./" * 8000, False),
    (b"/" + b".;" * 8000, False),
    (b"/" + b"a" * 16000 + b"%c0", False),
])
def test_long_hostile_paths_are_judged_quickly(path, safe):
    started = time.perf_counter()
    try:
        check_path(path)
        judged_safe = True
    except InvalidPath:
        judged_safe = False
    assert time.perf_counter() - started < 0.1
    assert judged_safe == safe
