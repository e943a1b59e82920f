"""Policy validation: every problem located, defaults as the contract says."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import Timeout
from gateway.environment import default_policy_text, load_settings, policy_text
from gateway.errors import ConfigError
from gateway.policy import parse_policy, parse_yaml

ROOT = Path(__file__).resolve().parents[2]
MINIMAL = """
routes:
  - name: catalog
    path: /api/v2/public/catalog/{rest:path}
    methods: [GET]
    credentials: [api_key]
    access: public
"""


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_policy(parse_yaml(text, "test.yaml"))
    return info.value.problems


def test_only_routes_is_required_and_everything_else_has_the_contract_default():
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


def test_without_gateway_config_the_cwd_file_or_the_builtin_policy_is_used(tmp_path):
    text, source = policy_text({}, cwd=tmp_path)
    assert source == "built-in default policy" and text == default_policy_text()
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "gateway.yaml").write_text(MINIMAL)
    text, source = policy_text({}, cwd=tmp_path)
    assert text == MINIMAL and source.endswith("config/gateway.yaml")


def test_file_variables_win_and_lose_their_trailing_newline(tmp_path):
    key_file = tmp_path / "api-key"
    key_file.write_text("from-file\n")
    settings = load_settings({"REUSELY_API_KEY": "from-env",
                              "REUSELY_API_KEY_FILE": str(key_file)}, text=MINIMAL)
    api_key = settings.credentials["api_key"]
    assert api_key is not None and api_key.reveal() == "from-file"
    assert "from-file" not in repr(settings)


def test_an_unreadable_credential_file_disables_rather_than_crashes(tmp_path):
    settings = load_settings({"REUSELY_API_KEY_FILE": str(tmp_path / "nope")}, text=MINIMAL)
    assert settings.credentials["api_key"] is None
    assert "REUSELY_API_KEY_FILE: cannot read" in settings.credential_problems["api_key"]


def test_environment_problems_are_located():
    with pytest.raises(ConfigError) as info:
        load_settings({"GATEWAY_BIND": "nope", "GATEWAY_WORKERS": "0",
                       "GATEWAY_LOG_LEVEL": "loud", "GATEWAY_REDIS_URL": "http://x",
                       "REUSELY_BASE_URL": "ftp://x"}, text=MINIMAL)
    found = info.value.problems
    for prefix in ("GATEWAY_BIND:", "GATEWAY_WORKERS:", "GATEWAY_LOG_LEVEL:",
                   "GATEWAY_REDIS_URL:", "REUSELY_BASE_URL:"):
        assert any(p.startswith(prefix) for p in found), (prefix, found)


def test_redis_url_schemes_of_the_contract_are_accepted():
    for url in ("redis://h:6379/0", "rediss://h", "redis+sentinel://h:26379/mymaster",
                "redis+cluster://h:7000"):
        assert load_settings({"GATEWAY_REDIS_URL": url}, text=MINIMAL).redis_url == url


def test_a_duplicate_name_is_reported_even_when_the_first_route_has_problems_too():
    text = """
routes:
  - {name: dup, path: /one, limits: [{per: ip, rate: 5/hr}]}
  - {name: dup, path: /two}
"""
    assert problems(text) == ['routes[0].limits[0].rate: "5/hr" is not a rate like "5/hour"',
                              "routes[1].name: 'dup' is already the name of routes[0]"]
