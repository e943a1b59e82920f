"""The policy file: every problem located in the gateway's words, defaults as documented."""

from __future__ import annotations

import dataclasses
import ipaddress
from pathlib import Path

import jsonschema
import pytest
from limits import RateLimitItemPerHour, RateLimitItemPerMinute

from gateway.config import Client, LimitRule, Route, Timeout
from gateway.environment import default_policy_text
from gateway.errors import ConfigError
from gateway.policy import Policy, parse_policy, parse_yaml

ROOT = Path(__file__).resolve().parents[2]
MINIMAL = """
routes:
  - name: catalog
    path: /api/v2/public/catalog/{rest:path}
    methods: [GET]
    credentials: [api_key]
    access: public
"""
POST = MINIMAL.replace("[GET]", "[POST]")


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_policy(parse_yaml(text, "test.yaml"))
    return info.value.problems


def parse(text: str) -> Policy:
    return parse_policy(parse_yaml(text, "test.yaml"))


def test_only_routes_is_required_and_everything_else_has_the_documented_default():
    policy = parse_policy(parse_yaml(MINIMAL, "t"))
    assert policy.upstream.timeout == Timeout(connect=3, read=20, write=20, pool=3)
    assert policy.upstream.max_connections == 100 and policy.upstream.retries == 1
    assert policy.limits.on_error == "allow" and policy.limits.trusted_proxies == ()
    assert policy.max_body_bytes == 1048576
    assert policy.cors.allow_origins == () and policy.cors.max_age == 600
    route = policy.routes[0]
    assert route.max_body_bytes == 1048576 and route.retries == 1 and route.on_error == "allow"


def test_a_bad_rate_is_located_and_quoted():
    text = MINIMAL + "    limits:\n      - {per: ip, rate: \"5/hr\"}\n"
    assert problems(text) == ['routes[0].limits[0].rate: "5/hr" is not a rate like "5/hour"']


def test_every_problem_is_reported_in_one_pass():
    text = """
upstream: {timeout: {connect: -1, sideways: 2}}
limits: {on_error: maybe, trusted_proxies: ["10.0.0.0/8", "not-a-cidr"]}
cors: {allow_origins: ["*", "https://a.example.com"]}
routes:
  - name: Bad_Name
    path: no-slash
    methods: [GET, FETCH]
    credentials: [api_key, password]
    access: secret
    limits:
      - {per: "body:", rate: "5/hour"}
      - {per: ip, rate: "0/hour"}
  - name: dup
    path: /a
  - name: dup
    path: /b
    colour: blue
clients:
  - name: team
    token_sha256: "abc"
    routes: [dup, missing-route]
"""
    found = problems(text)
    expected_prefixes = [
        "upstream.timeout.sideways: unknown key",
        "upstream.timeout.connect: must be greater than 0",
        "limits.on_error: 'maybe' is not one of allow, deny",
        "limits.trusted_proxies[1]: 'not-a-cidr' is not an IP address or CIDR",
        'cors.allow_origins[0]: "*" allows every origin and cannot be combined',
        "routes[0].name: 'Bad_Name' must match [a-z0-9-]+",
        "routes[0].path: 'no-slash' must be a path starting with /",
        "routes[0].methods: 'FETCH' is not one of",
        "routes[0].credentials: 'password' is not one of",
        "routes[0].access: 'secret' is not one of public, internal",
        "routes[0].limits[0].per: 'body:' is not one of",
        'routes[0].limits[1].rate: "0/hour" must allow at least 1 request',
        "routes[2].colour: unknown key",
        "routes[2].name: 'dup' is already the name of routes[1]",
        "clients[0].token_sha256: must be 64 hex digits",
        "clients[0].routes: 'missing-route' is not a route name",
    ]
    for prefix in expected_prefixes:
        assert any(p.startswith(prefix) for p in found), (prefix, found)


def test_routes_is_required():
    assert problems("upstream: {retries: 0}\n") == ["routes: is required: a list of routes"]


def test_a_duplicate_yaml_key_is_an_error_not_a_silent_override():
    with pytest.raises(ConfigError) as info:
        parse_yaml("routes: []\nroutes: []\n", "p.yaml")
    assert info.value.problems[0].startswith("p.yaml:2:1: not valid YAML")
    assert "duplicate key 'routes'" in info.value.problems[0]


def test_invalid_yaml_names_line_and_column():
    with pytest.raises(ConfigError) as info:
        parse_yaml("routes:\n  - name: [unclosed\n", "p.yaml")
    assert info.value.problems[0].startswith("p.yaml:")


def test_route_overrides_inherit_the_rest():
    text = MINIMAL + "    timeout: {read: 2}\n    max_body_bytes: 10\n    retries: 0\n" \
        "    on_error: deny\n"
    route = parse_policy(parse_yaml(text, "t")).routes[0]
    assert route.timeout == Timeout(connect=3, read=2, write=20, pool=3)
    assert (route.max_body_bytes, route.retries, route.on_error) == (10, 0, "deny")


def test_cache_ttl_only_on_get_routes():
    text = MINIMAL.replace("[GET]", "[POST]") + "    cache_ttl: 30\n"
    assert problems(text) == ["routes[0].cache_ttl: only GET routes can be cached"]


def test_a_shadowed_route_is_a_warning():
    text = MINIMAL + """  - name: categories
    path: /api/v2/public/catalog/categories
    methods: [GET]
"""
    policy = parse_policy(parse_yaml(text, "t"))
    assert len(policy.warnings) == 1
    assert policy.warnings[0].startswith("routes[1] (categories): GET requests")


def test_client_body_limits_are_refused_and_hash_lists_accepted():
    sha = "a" * 64
    text = MINIMAL + f"""clients:
  - name: team
    token_sha256: ["{sha}", "{'B' * 64}"]
    routes: ["*"]
    limits: [{{per: "body:email", rate: "1/hour"}}]
"""
    found = problems(text)
    assert found == ["clients[0].limits[0].per: a client's limits count across routes; "
                     "body keys belong on a route"]


def test_the_default_policy_is_valid_and_the_packaged_copy_is_identical():
    on_disk = (ROOT / "config" / "gateway.yaml").read_text()
    assert default_policy_text() == on_disk
    policy = parse_policy(parse_yaml(on_disk, "config/gateway.yaml"))
    names = [r.name for r in policy.routes]
    assert "checkout-mail-in" in names and "catalog" in names
    for route in policy.routes:
        if "secret_key" in route.credentials or route.path.startswith("/api/v2/admin"):
            assert route.access == "internal", route.name
    mail_in = next(r for r in policy.routes if r.name == "checkout-mail-in")
    assert [(r.per, r.rate) for r in mail_in.limits][:2] == [("body:email", "5/hour"),
                                                             ("body:phone", "5/hour")]


def test_a_duplicate_name_is_reported_even_when_the_first_route_has_problems_too():
    text = """
routes:
  - {name: dup, path: /one, limits: [{per: ip, rate: 5/hr}]}
  - {name: dup, path: /two}
"""
    assert problems(text) == ['routes[0].limits[0].rate: "5/hr" is not a rate like "5/hour"',
                              "routes[1].name: 'dup' is already the name of routes[0]"]


# -- the sentences ------------------------------------------------------------


def test_an_unknown_key_names_the_known_ones():
    assert problems(MINIMAL + "    cache: 10\n") == [
        "routes[0].cache: unknown key (known keys: name, path, methods, credentials, access, "
        "cache_ttl, stale_if_error, stale_while_revalidate, idempotency, limits, timeout, "
        "max_body_bytes, retries, on_error)"]
    assert problems("colour: blue\n" + MINIMAL) == [
        "colour: unknown key (known keys: upstream, limits, max_body_bytes, cors, routes, "
        "clients)"]
    assert problems("upstream: {timeout: {sideways: 1}}\n" + MINIMAL) == [
        "upstream.timeout.sideways: unknown key (known keys: connect, read, write, pool)"]


def test_a_wrong_type_says_what_was_wanted_and_what_was_given():
    assert problems(MINIMAL + '    max_body_bytes: "10"\n') == [
        "routes[0].max_body_bytes: must be an integer, not a string"]
    assert problems(MINIMAL + "    retries: 1.5\n") == [
        "routes[0].retries: must be an integer, not a number"]
    assert problems(MINIMAL + "    retries: true\n") == [
        "routes[0].retries: must be an integer, not a boolean"]
    assert problems(MINIMAL + "    timeout: {read: fast}\n") == [
        "routes[0].timeout.read: must be a number, not a string"]
    assert problems(MINIMAL + "    limits: [{per: ip, rate: 5/hour, shadow: yes please}]\n") == [
        "routes[0].limits[0].shadow: must be true or false, not a string"]
    assert problems(MINIMAL + "    limits: {per: ip}\n") == [
        "routes[0].limits: must be a list of limits, not a mapping"]
    assert problems(MINIMAL + "    timeout: 5\n") == [
        "routes[0].timeout: must be a mapping, not a number"]
    assert problems("routes: catalog\n") == ["routes: must be a list of routes, not a string"]
    assert problems("- routes\n") == ["(top level): must be a mapping, not a list"]
    assert problems("") == ["(top level): the policy is empty; `routes` is required"]


def test_missing_keys_say_what_belongs_there():
    text = MINIMAL + "    limits: [{}]\nclients: [{name: team}]\n"
    assert problems(text) == [
        "routes[0].limits[0].per: is required: ip, client, global, body:<json field> or "
        "header:<name>",
        'routes[0].limits[0].rate: is required, like "5/hour" or "100/minute;1000/day"',
        "clients[0].token_sha256: is required: the hex SHA-256 of the token, or a list of them",
    ]


def test_problems_come_in_the_order_of_the_file():
    text = """
routes:
  - name: b
    path: /b
    colour: blue
    name2: x
  - {name: a, path: nowhere, limits: [{per: ip, rate: 1/hr}]}
limits: {on_error: maybe}
"""
    assert [p.partition(":")[0] for p in problems(text)] == [
        "routes[0].colour", "routes[0].name2", "routes[1].path", "routes[1].limits[0].rate",
        "limits.on_error"]


def test_the_bounds_are_said_as_numbers_people_write():
    assert problems("upstream: {timeout: {connect: 0}}\n" + MINIMAL) == [
        "upstream.timeout.connect: must be greater than 0"]
    assert problems("upstream: {max_connections: 0}\n" + MINIMAL) == [
        "upstream.max_connections: must be at least 1"]
    assert problems(MINIMAL + "    cache_ttl: 0\n") == ["routes[0].cache_ttl: must be at least 1"]


def test_an_empty_section_takes_its_defaults():
    policy = parse("upstream:\nlimits:\ncors:\nclients:\n" + MINIMAL + "    limits:\n"
                   "    timeout:\n    idempotency:\n")
    assert policy.upstream.retries == 1 and policy.cors.max_age == 600
    assert policy.clients == () and policy.routes[0].limits == ()
    assert policy.routes[0].timeout == Timeout() and policy.routes[0].idempotency is None


# -- limits ---------------------------------------------------------------------


def test_the_redis_call_budget_defaults_to_a_quarter_second_and_stays_within_one():
    assert parse(MINIMAL).limits.timeout == 0.25
    assert parse("limits: {timeout: 1}\n" + MINIMAL).limits.timeout == 1
    assert problems("limits: {timeout: 0}\n" + MINIMAL) == [
        "limits.timeout: must be greater than 0"]
    assert problems("limits: {timeout: 1.5}\n" + MINIMAL) == ["limits.timeout: must be at most 1"]


def test_a_limit_knows_its_kind_field_and_windows():
    text = POST + """    limits:
      - {per: "body:customer.email", rate: "5/hour"}
      - {per: "header:X-Shop", rate: "10/minute;100/hour", shadow: true}
clients:
  - name: team
    token_sha256: "%s"
    routes: ["*"]
    limits: [{per: client, rate: "600/minute"}]
""" % ("a" * 64)
    policy = parse(text)
    body, header = policy.routes[0].limits
    assert (body.kind, body.field, body.items) == ("body", "customer.email",
                                                   (RateLimitItemPerHour(5),))
    assert (header.kind, header.field, header.shadow) == ("header", "x-shop", True)
    assert header.items == (RateLimitItemPerMinute(10), RateLimitItemPerHour(100))
    assert policy.routes[0].body_fields == ("customer.email",)
    [rule] = policy.clients[0].limits
    assert isinstance(rule, LimitRule) and (rule.kind, rule.field) == ("client", None)


def test_a_body_limit_on_a_route_without_a_body_is_an_error():
    text = MINIMAL.replace("[GET]", "[GET, DELETE]") + """    limits:
      - {per: ip, rate: "5/hour"}
      - {per: "body:email", rate: "5/hour"}
"""
    assert problems(text) == [
        "routes[0].limits[1].per: 'body:email' counts a body field, but GET, DELETE requests "
        "carry no body: every request would be refused"]
    assert parse(text.replace("[GET, DELETE]", "[GET, POST]")).routes[0].body_fields == (
        "email",)


# -- idempotency and the cache ---------------------------------------------------


def test_idempotency_defaults_to_a_day_and_optional_keys():
    route = parse(POST + "    idempotency: {}\n").routes[0]
    assert route.idempotency is not None
    assert (route.idempotency.ttl, route.idempotency.required) == (86400, False)
    route = parse(POST + "    idempotency: {ttl: 60, required: true}\n").routes[0]
    assert route.idempotency is not None
    assert (route.idempotency.ttl, route.idempotency.required) == (60, True)
    assert parse(POST).routes[0].idempotency is None


def test_idempotency_needs_a_method_that_changes_something():
    assert problems(MINIMAL + "    idempotency: {ttl: 60}\n") == [
        "routes[0].idempotency: needs a POST, PUT, PATCH or DELETE route: only a request that "
        "changes something is made idempotent"]
    no_methods = MINIMAL.replace("    methods: [GET]\n", "")
    assert problems(no_methods + "    idempotency: {}\n")[0].startswith("routes[0].idempotency:")
    assert problems(POST + "    idempotency: {ttl: 0, required: 1, replay: true}\n") == [
        "routes[0].idempotency.ttl: must be at least 1",
        "routes[0].idempotency.required: must be true or false, not a number",
        "routes[0].idempotency.replay: unknown key (known keys: ttl, required)",
    ]


def test_stale_answers_need_a_cache_ttl_on_the_same_route():
    route = parse(MINIMAL + "    cache_ttl: 30\n    stale_if_error: 600\n"
                  "    stale_while_revalidate: 10\n").routes[0]
    assert (route.cache_ttl, route.stale_if_error, route.stale_while_revalidate) == (30, 600, 10)
    plain = parse(MINIMAL).routes[0]
    assert (plain.stale_if_error, plain.stale_while_revalidate) == (None, None)
    assert problems(MINIMAL + "    stale_if_error: 600\n    stale_while_revalidate: 0\n") == [
        "routes[0].stale_if_error: needs cache_ttl on the same route: only a kept answer can be "
        "served stale",
        "routes[0].stale_while_revalidate: must be at least 1",
    ]
    assert problems(MINIMAL + "    stale_while_revalidate: 5\n") == [
        "routes[0].stale_while_revalidate: needs cache_ttl on the same route: only a kept "
        "answer can be served stale"]


# -- what the request path reads -------------------------------------------------


def test_the_request_path_reads_plain_frozen_attributes():
    text = ("limits: {trusted_proxies: [10.0.0.0/8, '::1']}\n"
            "cors: {allow_origins: [https://shop.example.com]}\n" + POST
            + "    limits: [{per: body:email, rate: 5/hour}]\n"
            f"clients: [{{name: team, token_sha256: '{'A' * 64}', routes: [catalog]}}]\n")
    policy = parse(text)
    route, client = policy.routes[0], policy.clients[0]
    for value in (policy.routes, policy.clients, route.methods, route.credentials, route.limits,
                  route.body_fields, route.limits[0].items, client.routes, client.token_sha256,
                  client.limits, policy.cors.allow_origins, policy.limits.trusted_proxies,
                  policy.warnings):
        assert type(value) is tuple, value
    assert policy.limits.trusted_proxies == (ipaddress.ip_network("10.0.0.0/8"),
                                             ipaddress.ip_network("::1/128"))
    assert client.token_sha256 == ("a" * 64,) and client.allows("catalog")
    # No per-read hook (a BaseModel's __getattr__ would slow every read): plain dataclasses.
    for obj in (policy, route, route.limits[0], route.timeout, client, policy.limits):
        assert dataclasses.is_dataclass(obj) and not hasattr(type(obj), "__getattr__")
        assert type(obj).__getattribute__ is object.__getattribute__
    with pytest.raises(dataclasses.FrozenInstanceError):
        route.limits = ()  # type: ignore[misc]
    assert isinstance(route, Route) and isinstance(client, Client)


# -- the JSON Schema agrees with the gateway ---------------------------------------

SHA = "a" * 64
AGREED = [
    (MINIMAL, True),
    (POST + "    idempotency: {ttl: 60}\n    limits: [{per: body:email, rate: 5/hour}]\n", True),
    (MINIMAL + "    cache_ttl: 5\n    stale_if_error: 60\n", True),
    (f"clients: [{{name: t, token_sha256: ['{SHA}'], routes: ['*']}}]\n" + MINIMAL, True),
    ("cors: {allow_origins: ['*', https://a.example.com/x]}\n" + MINIMAL, False),
    (MINIMAL + "    name2: x\n", False),
    (MINIMAL.replace("[GET]", "[FETCH]"), False),
    (MINIMAL.replace("catalog", "Catalog", 1), False),
    (MINIMAL + "    limits: [{per: 'body:', rate: 5/hour}]\n", False),
    (f"clients: [{{name: t, token_sha256: '{SHA}', limits: [{{per: body:e, rate: 1/hour}}]}}]\n"
     + MINIMAL, False),
    ("clients: [{name: t, token_sha256: 'abc'}]\n" + MINIMAL, False),
    ("limits: {timeout: 2}\n" + MINIMAL, False),
    ("upstream: {timeout: {connect: 0}}\n" + MINIMAL, False),
    (MINIMAL + "    retries: '1'\n", False),
    ("max_body_bytes: 10\n", False),
]


@pytest.mark.parametrize(("text", "valid"), AGREED)
def test_the_schema_and_the_gateway_agree(text, valid):
    """Checks a schema can express give the same verdict in an editor and in check-config."""
    from gateway.policy import json_schema

    validator = jsonschema.Draft202012Validator(json_schema())
    data = parse_yaml(text, "t")
    assert validator.is_valid(data) is valid, list(validator.iter_errors(data))
    if valid:
        parse_policy(data)
    else:
        assert problems(text)


def test_two_limits_counting_one_window_are_a_located_error():
    text = """
routes:
  - name: checkout
    path: /c
    methods: [POST]
    limits:
      - {per: "body:email", rate: "5/hour"}
      - {per: "body:email", rate: "5/hour", shadow: true}
      - {per: "body:email", rate: "30/day;5/hour"}
      - {per: ip, rate: "5/hour"}
"""
    with pytest.raises(ConfigError) as err:
        parse_policy(parse_yaml(text, "test"))
    located = [p for p in err.value.problems if "same window" in p]
    assert [p.split(":", 1)[0] for p in located] == ["routes[0].limits[1]", "routes[0].limits[2]"]
