"""CORS: the Origin allow-list, the preflight answer, and the headers of actual answers."""

from __future__ import annotations

import pytest
import yaml

from gateway.config import Cors
from gateway.cors import CorsPolicy, OriginPolicy
from gateway.environment import load_settings
from gateway.errors import ConfigError, OriginNotAllowed
from gateway.policy import Policy, parse_policy
from tests.support.callers import policy, route

# -- OriginPolicy -------------------------------------------------------------


def origins(*allowed: str) -> OriginPolicy:
    return OriginPolicy(Cors(allow_origins=allowed))


def test_an_exact_origin_is_allowed_and_its_neighbours_are_not():
    o = origins("https://shop.example.com")
    assert o.allows("https://shop.example.com")
    assert o.allows("HTTPS://Shop.Example.COM")  # scheme and host are case-insensitive
    for other in ("http://shop.example.com", "https://shop.example.com:8443",
                  "https://shop.example.com/", "https://shop.example.com.evil.net",
                  "https://evil-shop.example.com", "https://example.com", "null", ""):
        assert not o.allows(other), other


@pytest.mark.parametrize("origin", [
    "https://a.example.com", "https://a.b.example.com", "https://x-1.example.com",
])
def test_a_wildcard_allows_subdomains_of_its_suffix(origin):
    assert origins("https://*.example.com").allows(origin)


@pytest.mark.parametrize("origin", [
    "https://example.com",            # the bare suffix is not a subdomain
    "https://example.com.evil.net",   # suffix inside a longer host
    "https://evilexample.com",        # no dot before the suffix
    "http://a.example.com",           # another scheme
    "https://a.example.com:8443",     # another port
    "https://.example.com",           # empty label
    "https://a.example.com/",         # a path is not an origin
    "https://a.example.com@evil.net",
    "null",
])
def test_a_wildcard_refuses_lookalikes(origin):
    assert not origins("https://*.example.com").allows(origin)


def test_a_wildcard_with_a_port_needs_that_port():
    o = origins("http://*.example.test:8080")
    assert o.allows("http://a.example.test:8080")
    assert not o.allows("http://a.example.test")
    assert not o.allows("http://a.example.test:8081")


def test_no_origins_allow_nothing_and_a_bare_star_allows_everything():
    assert not origins().allows("https://shop.example.com")
    star = origins("*")
    assert star.allows("https://anything.example.org")
    assert star.allows("null")


def test_a_bare_star_with_another_origin_is_a_config_error():
    with pytest.raises(ConfigError) as err:
        policy(["*", "https://shop.example.com"])
    assert any(line.startswith("cors.allow_origins[0]:") for line in err.value.problems)


def test_load_settings_reports_a_bare_star_with_another_origin():
    text = yaml.safe_dump({
        "cors": {"allow_origins": ["https://shop.example.com", "*"]},
        "routes": [{"name": "catalog", "path": "/c/{rest:path}", "access": "public"}],
    })
    with pytest.raises(ConfigError) as err:
        load_settings({}, text=text, source="test")
    assert any(line.startswith("cors.allow_origins[1]:") for line in err.value.problems)


@pytest.mark.parametrize("bad", ["https://shop.example.com/", "https://Shop.example.com",
                                 "shop.example.com", "https://*.*.example.com",
                                 "https://shop.*.com"])
def test_an_origin_that_is_not_an_origin_is_a_config_error(bad):
    with pytest.raises(ConfigError):
        policy([bad])


# -- CorsPolicy ---------------------------------------------------------------


def cors(origins: list[str]) -> tuple[CorsPolicy, Policy]:
    p = policy(origins)
    return CorsPolicy(p.cors, p.routes), p


def as_text(headers: list[tuple[bytes, bytes]]) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in headers}


def test_a_preflight_is_recognised_by_origin_and_requested_method():
    assert CorsPolicy.is_preflight("OPTIONS", {b"origin": b"o",
                                              b"access-control-request-method": b"post"})
    assert not CorsPolicy.is_preflight("OPTIONS", {b"origin": b"o"})
    assert not CorsPolicy.is_preflight("OPTIONS", {b"access-control-request-method": b"GET"})
    assert not CorsPolicy.is_preflight("GET", {b"origin": b"o",
                                              b"access-control-request-method": b"GET"})
    assert CorsPolicy.requested_method({b"access-control-request-method": b" post "}) == "POST"


def test_actual_response_headers_echo_the_origin_and_expose_the_limit_headers():
    c, p = cors(["https://*.example.com"])
    headers = as_text(c.actual(route(p, "catalog"), {b"origin": b"https://a.example.com"}))
    assert headers["access-control-allow-origin"] == "https://a.example.com"
    assert headers["vary"] == "Origin"
    exposed = {h.strip().lower() for h in headers["access-control-expose-headers"].split(",")}
    assert {"retry-after", "x-request-id", "x-ratelimit-limit", "x-ratelimit-remaining",
            "x-ratelimit-reset", "idempotent-replayed"} <= exposed


def test_an_answer_without_origin_or_on_an_internal_route_has_no_cors_headers():
    c, p = cors([])  # no origin allowed at all
    assert c.actual(route(p, "catalog"), {}) == []
    assert c.actual(route(p, "inventory"), {b"origin": b"https://anything.example.org"}) == []


def test_a_public_route_refuses_an_origin_not_on_the_list():
    c, p = cors(["https://shop.example.com"])
    assert c.actual(route(p, "catalog"), {b"origin": b"https://shop.example.com"})
    with pytest.raises(OriginNotAllowed):
        c.actual(route(p, "catalog"), {b"origin": b"https://evil.example.net"})


def test_preflight_headers_list_the_route_methods_and_the_allowed_request_headers():
    p = parse_policy({"cors": {"allow_origins": ["https://shop.example.com"], "max_age": 77},
                      "routes": [{"name": "catalog", "path": "/c/{rest:path}",
                                  "methods": ["GET", "HEAD"], "access": "public"}]})
    c = CorsPolicy(p.cors, p.routes)
    headers = as_text(c.preflight(route(p, "catalog"), {b"origin": b"https://shop.example.com"}))
    assert headers["access-control-allow-origin"] == "https://shop.example.com"
    assert headers["access-control-allow-methods"] == "GET, HEAD"
    allowed = {h.strip() for h in headers["access-control-allow-headers"].split(",")}
    assert allowed == {"content-type", "x-request-id"}
    assert headers["access-control-max-age"] == "77"
    assert "Origin" in headers["vary"]


def test_a_preflight_from_another_origin_or_on_an_internal_route_is_refused():
    c, p = cors(["https://shop.example.com"])
    with pytest.raises(OriginNotAllowed):
        c.preflight(route(p, "catalog"), {b"origin": b"https://evil.example.net"})
    with pytest.raises(OriginNotAllowed):
        c.preflight(route(p, "inventory"), {b"origin": b"https://shop.example.com"})
