"""Who is calling: Origin matching, bearer token lookup, and the caller each route sees."""

from __future__ import annotations

import hashlib

import pytest
import yaml

from gateway.access import (
    PUBLIC,
    Access,
    OriginPolicy,
    cors_headers,
    preflight_headers,
)
from gateway.config import Client, Cors, Policy, Route
from gateway.credentials import TokenTable, token_sha256
from gateway.environment import load_settings
from gateway.errors import ConfigError, Forbidden, OriginNotAllowed, Unauthorized
from gateway.policy import parse_policy

OPS_TOKEN = "ops-token-1a2b3c"
OLD_TOKEN = "pricing-old-token-4d5e"
NEW_TOKEN = "pricing-new-token-6f7a"


def sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def policy(origins: list[str] | None = None) -> Policy:
    data = {
        "cors": {"allow_origins": origins or []},
        "routes": [
            {"name": "catalog", "path": "/api/v2/public/catalog/{rest:path}",
             "methods": ["GET", "HEAD"], "credentials": ["api_key"], "access": "public"},
            {"name": "inventory", "path": "/api/v2/public/inventory/{rest:path}",
             "methods": ["GET"], "credentials": ["api_key"], "access": "internal"},
            {"name": "orders", "path": "/api/v2/orders/{rest:path}",
             "methods": ["GET"], "credentials": ["api_key"], "access": "internal"},
        ],
        "clients": [
            {"name": "ops", "token_sha256": sha(OPS_TOKEN), "routes": ["*"]},
            {"name": "pricing", "token_sha256": [sha(OLD_TOKEN), sha(NEW_TOKEN)],
             "routes": ["catalog", "inventory"]},
        ],
    }
    return parse_policy(data)


def access(origins: list[str] | None = None) -> tuple[Access, Policy]:
    p = policy(origins)
    return Access(p.cors, TokenTable(p.clients)), p


def route(p: Policy, name: str) -> Route:
    return next(r for r in p.routes if r.name == name)


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


# -- TokenTable ---------------------------------------------------------------


def test_a_token_finds_its_client_by_sha256():
    table = TokenTable(policy().clients)
    found = table.lookup(OPS_TOKEN)
    assert isinstance(found, Client) and found.name == "ops"
    assert token_sha256(OPS_TOKEN) == sha(OPS_TOKEN)


def test_both_hashes_of_a_client_being_rotated_find_it():
    table = TokenTable(policy().clients)
    assert table.lookup(OLD_TOKEN) is not None and table.lookup(OLD_TOKEN).name == "pricing"
    assert table.lookup(NEW_TOKEN) is not None and table.lookup(NEW_TOKEN).name == "pricing"


@pytest.mark.parametrize("token", ["", "nope", OPS_TOKEN + "x", OPS_TOKEN[:-1],
                                   OPS_TOKEN.upper(), sha(OPS_TOKEN)])
def test_an_unknown_token_finds_nobody(token):
    assert TokenTable(policy().clients).lookup(token) is None


def test_a_table_without_clients_finds_nobody():
    assert TokenTable(()).lookup(OPS_TOKEN) is None


def test_upper_case_hashes_in_the_policy_are_accepted():
    p = parse_policy({
        "routes": [{"name": "r", "path": "/r", "access": "internal"}],
        "clients": [{"name": "a", "token_sha256": sha(OPS_TOKEN).upper(), "routes": ["r"]}],
    })
    assert TokenTable(p.clients).lookup(OPS_TOKEN) is not None


# -- Access.identify ----------------------------------------------------------


def test_a_public_route_without_origin_or_token_is_the_public_caller():
    a, p = access()
    assert a.identify(route(p, "catalog"), authorization=None, origin=None) is PUBLIC


def test_a_public_route_refuses_an_origin_not_on_the_list():
    a, p = access(["https://shop.example.com"])
    assert a.identify(route(p, "catalog"), authorization=None,
                      origin="https://shop.example.com") is PUBLIC
    with pytest.raises(OriginNotAllowed):
        a.identify(route(p, "catalog"), authorization=None, origin="https://evil.example.net")


def test_the_origin_is_judged_before_the_token_on_a_public_route():
    a, p = access(["https://shop.example.com"])
    with pytest.raises(OriginNotAllowed):
        a.identify(route(p, "catalog"), authorization=f"Bearer {OPS_TOKEN}",
                   origin="https://evil.example.net")


@pytest.mark.parametrize("authorization", [
    None, "", "Bearer", "Bearer ", "Basic x", "Basic b3BzOnB3", f"Bearer  {OPS_TOKEN}",
    f"Bearer {OPS_TOKEN} ", f"Bearer {OPS_TOKEN} extra", f"Token {OPS_TOKEN}", OPS_TOKEN,
    "Bearer unknown-token", f"Bearer\t{OPS_TOKEN}",
])
def test_missing_malformed_and_unknown_tokens_are_the_same_401(authorization):
    a, p = access()
    with pytest.raises(Unauthorized) as err:
        a.identify(route(p, "inventory"), authorization=authorization, origin=None)
    assert err.value.headers["www-authenticate"].startswith("Bearer")
    assert err.value.message == Unauthorized.message  # no hint which case it was


def test_the_bearer_scheme_is_case_insensitive():
    a, p = access()
    for scheme in ("Bearer", "bearer", "BEARER"):
        caller = a.identify(route(p, "inventory"), authorization=f"{scheme} {OPS_TOKEN}",
                            origin=None)
        assert caller.name == "ops"


def test_a_valid_token_is_its_client_and_a_route_it_lacks_is_forbidden():
    a, p = access()
    caller = a.identify(route(p, "inventory"), authorization=f"Bearer {NEW_TOKEN}", origin=None)
    assert caller.name == "pricing" and caller.client is not None
    with pytest.raises(Forbidden):
        a.identify(route(p, "orders"), authorization=f"Bearer {NEW_TOKEN}", origin=None)
    assert a.identify(route(p, "orders"), authorization=f"Bearer {OPS_TOKEN}",
                      origin=None).name == "ops"


def test_an_internal_route_ignores_the_origin_list():
    a, p = access([])  # no origin allowed at all
    caller = a.identify(route(p, "inventory"), authorization=f"Bearer {OPS_TOKEN}",
                        origin="https://anything.example.org")
    assert caller.name == "ops"


def test_a_token_sent_on_a_public_route_must_be_valid_and_names_the_caller():
    a, p = access()
    with pytest.raises(Unauthorized):
        a.identify(route(p, "catalog"), authorization="Bearer unknown-token", origin=None)
    with pytest.raises(Unauthorized):
        a.identify(route(p, "catalog"), authorization="Basic x", origin=None)
    assert a.identify(route(p, "catalog"), authorization=f"Bearer {OLD_TOKEN}",
                      origin=None).name == "pricing"


# -- CORS header values -------------------------------------------------------


def test_actual_response_headers_echo_the_origin_and_expose_the_limit_headers():
    headers = {k.decode(): v.decode() for k, v in cors_headers("https://a.example.com")}
    assert headers["access-control-allow-origin"] == "https://a.example.com"
    assert headers["vary"] == "Origin"
    exposed = {h.strip().lower() for h in headers["access-control-expose-headers"].split(",")}
    assert {"retry-after", "x-request-id", "x-ratelimit-limit", "x-ratelimit-remaining",
            "x-ratelimit-reset"} <= exposed


def test_preflight_headers_list_the_route_methods_and_the_allowed_request_headers():
    p = policy(["https://shop.example.com"])
    headers = {k.decode(): v.decode()
               for k, v in preflight_headers("https://shop.example.com", route(p, "catalog"), 77)}
    assert headers["access-control-allow-origin"] == "https://shop.example.com"
    assert headers["access-control-allow-methods"] == "GET, HEAD"
    allowed = {h.strip() for h in headers["access-control-allow-headers"].split(",")}
    assert {"content-type", "x-request-id"} <= allowed
    assert headers["access-control-max-age"] == "77"
    assert "Origin" in headers["vary"]


def test_a_token_on_a_public_route_its_client_does_not_list_still_names_the_caller():
    p = parse_policy({
        "routes": [{"name": "catalog", "path": "/c/{rest:path}", "access": "public"},
                   {"name": "inventory", "path": "/i/{rest:path}", "access": "internal"}],
        "clients": [{"name": "stock", "token_sha256": sha(OPS_TOKEN), "routes": ["inventory"]}],
    })
    a = Access(p.cors, TokenTable(p.clients))
    caller = a.identify(route(p, "catalog"), authorization=f"Bearer {OPS_TOKEN}", origin=None)
    assert caller.name == "stock"
