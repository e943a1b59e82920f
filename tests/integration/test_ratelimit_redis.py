"""Rate limits counted in a real Redis, over real sockets, in front of a recording upstream."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis
from prometheus_client import CollectorRegistry

from tests.support.gateway import InProcessGateway
from tests.support.http import MAIL_IN, error_of, sha
from tests.support.redisserver import PrivateRedis

EMAIL = "ada.lovelace@example.org"
PHONE = "+1 (555) 010-0000"


def policy(*route_limits: str, trusted: str = "[]", on_error: str = "allow",
           timeout: float = 1.0, extra: str = "", clients: str = "") -> str:
    limits = "".join(f"\n      - {line}" for line in route_limits) or " []"
    return f"""
limits:
  on_error: {on_error}
  trusted_proxies: {trusted}
  timeout: {timeout}
routes:
  - name: checkout-mail-in
    path: {MAIL_IN}
    methods: [POST]
    credentials: [api_key, tenant_id]
    access: public
    limits:{limits}
{extra}
{clients}
"""


CHECKOUT = policy('{per: "body:email", rate: "5/hour"}', '{per: "body:phone", rate: "5/hour"}',
                  '{per: ip, rate: "30/hour"}')


def offer(**fields: Any) -> dict[str, Any]:
    return {"first_name": "Ada", "last_name": "Lovelace", "device": "iphone-13", **fields}


def checkout(http: httpx.Client, gw: InProcessGateway, headers: dict[str, str] | None = None,
             **fields: Any) -> httpx.Response:
    return http.post(gw.url + MAIL_IN, json=offer(**fields), headers=headers or {})


def assert_refused(r: httpx.Response) -> None:
    assert r.status_code == 429
    assert error_of(r) == "rate_limited"
    assert r.headers["retry-after"].isdigit() and int(r.headers["retry-after"]) >= 1


def limit_headers(r: httpx.Response) -> tuple[str, str, str]:
    return (r.headers["x-ratelimit-limit"], r.headers["x-ratelimit-remaining"],
            r.headers["x-ratelimit-reset"])


# -- per email and per phone --------------------------------------------------


def test_five_checkouts_per_email_pass_and_the_sixth_is_refused_across_spellings(
        http, redis_gateway, upstream):
    gw = redis_gateway(CHECKOUT)
    spellings = [EMAIL, "  Ada.Lovelace@Example.org", "ADA.LOVELACE@EXAMPLE.ORG ",
                 "\tada.lovelace@EXAMPLE.org\n", "Ada.Lovelace@example.ORG",
                 " ada.lovelace@example.org"]
    answers = [checkout(http, gw, email=e) for e in spellings]
    assert [r.status_code for r in answers[:5]] == [200] * 5
    assert_refused(answers[5])
    assert int(answers[5].headers["retry-after"]) <= 3600
    assert len(upstream.received) == 5
    assert all(json.loads(got.body)["email"] != spellings[5] for got in upstream.received)
    # Another address still passes, and the first stays refused.
    assert checkout(http, gw, email="grace@example.org").status_code == 200
    assert_refused(checkout(http, gw, email=EMAIL))
    assert len(upstream.received) == 6


def test_phones_count_together_whatever_their_punctuation(http, redis_gateway, upstream):
    gw = redis_gateway(CHECKOUT)
    spellings = [PHONE, "+15550100000", " +1 555 010 0000", "+1-555-010-0000", "+1.555.010.0000",
                 "+15550100000"]
    answers = [checkout(http, gw, phone=p) for p in spellings]
    assert [r.status_code for r in answers] == [200] * 5 + [429]
    assert_refused(answers[5])
    assert len(upstream.received) == 5
    assert checkout(http, gw, phone="+15550100001").status_code == 200
    # Only the digits count: without its leading +, or in full-width digits, it is one phone.
    assert checkout(http, gw, phone="15550100000").status_code == 429
    assert checkout(http, gw, phone="\uff11\uff15\uff15\uff15\uff10\uff11\uff10\uff10"
                                    "\uff10\uff10\uff10").status_code == 429


def test_the_email_and_phone_of_one_lead_are_each_counted(http, redis_gateway, upstream):
    gw = redis_gateway(CHECKOUT)
    for i in range(5):
        assert checkout(http, gw, email=EMAIL, phone=f"+1555010000{i}").status_code == 200
    assert_refused(checkout(http, gw, email=EMAIL, phone="+15550100009"))
    for i in range(5):  # the phone +15550100000 has 1 hit; 4 more with new emails pass
        r = checkout(http, gw, email=f"n{i}@example.org", phone="+15550100000")
        assert r.status_code == (200 if i < 4 else 429), i
    assert len(upstream.received) == 9


def test_the_moving_window_refuses_a_burst_straddling_a_window_boundary(
        http, redis_gateway, upstream):
    gw = redis_gateway(policy('{per: "body:email", rate: "3/4 seconds"}'))
    t0 = time.monotonic()

    def at(offset: float) -> None:
        time.sleep(max(0.0, t0 + offset - time.monotonic()))

    assert checkout(http, gw, email=EMAIL).status_code == 200          # t = 0
    at(1.5)
    assert checkout(http, gw, email=EMAIL).status_code == 200          # t = 1.5
    assert checkout(http, gw, email=EMAIL).status_code == 200
    assert_refused(checkout(http, gw, email=EMAIL))
    at(3.6)                                                             # still 3 in the last 4 s
    assert_refused(checkout(http, gw, email=EMAIL))
    at(4.4)                            # the t=0 hit has aged out, the two at 1.5 s have not:
    assert checkout(http, gw, email=EMAIL).status_code == 200          # one slot, not three
    refused = checkout(http, gw, email=EMAIL)
    assert_refused(refused)
    assert int(refused.headers["retry-after"]) <= 2
    assert len(upstream.received) == 4


def test_two_gateways_on_one_redis_share_one_count(http, redis_gateway, upstream):
    first, second = redis_gateway(CHECKOUT), redis_gateway(CHECKOUT)
    statuses = [checkout(http, gw, email=EMAIL).status_code
                for gw in (first, second, first, second, first, second)]
    assert sorted(statuses) == [200] * 5 + [429]
    assert statuses[-1] == 429
    assert len(upstream.received) == 5


def test_another_limit_key_secret_is_another_count(http, redis_gateway, upstream):
    first = redis_gateway(CHECKOUT)
    other = redis_gateway(CHECKOUT, env={"GATEWAY_LIMIT_KEY_SECRET": "another-secret-6d1e"})
    for _ in range(5):
        assert checkout(http, first, email=EMAIL).status_code == 200
    assert_refused(checkout(http, first, email=EMAIL))
    assert checkout(http, other, email=EMAIL).status_code == 200


# -- the ip key ---------------------------------------------------------------


def test_x_forwarded_for_from_an_untrusted_peer_changes_nothing(http, redis_gateway, upstream):
    gw = redis_gateway(policy('{per: ip, rate: "3/hour"}'))
    for i in range(3):
        r = checkout(http, gw, {"x-forwarded-for": f"203.0.113.{i}"})
        assert r.status_code == 200
    assert_refused(checkout(http, gw, {"x-forwarded-for": "198.51.100.99"}))
    assert_refused(checkout(http, gw))
    assert [got.header("x-forwarded-for") for got in upstream.received] == ["127.0.0.1"] * 3


def test_x_forwarded_for_from_a_trusted_proxy_keys_on_the_rightmost_untrusted_hop(
        http, redis_gateway, upstream):
    gw = redis_gateway(policy('{per: ip, rate: "2/hour"}',
                              trusted='["127.0.0.1/32", "10.0.0.0/8"]'))
    a, b = "203.0.113.10", "203.0.113.20"
    assert checkout(http, gw, {"x-forwarded-for": a}).status_code == 200
    assert checkout(http, gw, {"x-forwarded-for": f"6.6.6.6, {a}, 10.1.2.3"}).status_code == 200
    assert_refused(checkout(http, gw, {"x-forwarded-for": f"{b}, {a}"}))  # spoofed left hop
    assert checkout(http, gw, {"x-forwarded-for": b}).status_code == 200
    assert checkout(http, gw, {"x-forwarded-for": f"{a}, {b}"}).status_code == 200
    assert_refused(checkout(http, gw, {"x-forwarded-for": b}))
    assert checkout(http, gw).status_code == 200  # no header: the peer itself
    assert [got.header("x-forwarded-for") for got in upstream.received][:2] == \
        [f"{a}, 127.0.0.1", f"6.6.6.6, {a}, 10.1.2.3, 127.0.0.1"]
    assert len(upstream.received) == 5


# -- what Redis holds ---------------------------------------------------------


def redis_contents(url: str) -> list[bytes]:
    """Every key name and every value of every key in the test database, as bytes."""
    client = redis.Redis.from_url(url)
    out: list[bytes] = []
    try:
        for key in client.scan_iter(count=1000):
            out.append(key)
            kind = client.type(key)
            if kind == b"string":
                out.append(client.get(key) or b"")
            elif kind == b"list":
                out.extend(client.lrange(key, 0, -1))
            elif kind == b"zset":
                for member, score in client.zrange(key, 0, -1, withscores=True):
                    out += [member, repr(score).encode()]
            elif kind == b"hash":
                for k, v in client.hgetall(key).items():
                    out += [k, v]
            elif kind == b"set":
                out.extend(client.smembers(key))
            else:
                out.append(kind)  # an unexpected type is shown, not skipped
    finally:
        client.close()
    return out


def test_redis_never_holds_an_email_or_phone_in_clear(http, redis_gateway, upstream, redis_url):
    gw = redis_gateway(policy('{per: "body:email", rate: "5/hour"}',
                              '{per: "body:phone", rate: "5/hour"}',
                              '{per: ip, rate: "30/hour"}', trusted='["127.0.0.1/32"]'))
    sent = [(" Ada.Lovelace@Example.org ", "+1 (555) 010-0000"),
            ("grace.hopper@example.org", "+44 20 7946 0958")]
    for email, phone in sent:
        for _ in range(2):
            assert checkout(http, gw, {"x-forwarded-for": "203.0.113.77"},
                            email=email, phone=phone).status_code == 200
    contents = redis_contents(redis_url)
    assert len(contents) > 6, "the limits were not counted in this Redis"
    forbidden = ["ada.lovelace", "grace.hopper", "example.org", "15550100000", "5550100000",
                 "442079460958", "2079460958", "7946", "203.0.113.77"]
    blob = b"\n".join(contents).lower()
    for needle in forbidden:
        assert needle.encode() not in blob, needle


# -- headers ------------------------------------------------------------------


TIGHT = policy('{per: "body:email", rate: "3/hour"}', '{per: ip, rate: "3/minute"}', extra="""
  - name: status
    path: /b/status/{n:int}
    methods: [GET]
    credentials: [api_key]
    access: public
    limits:
      - {per: global, rate: "10/hour"}
  - name: open
    path: /b/open
    methods: [GET]
    credentials: [api_key]
    access: public
""")


def test_every_response_of_a_limited_route_names_the_tightest_limit(http, redis_gateway, upstream):
    gw = redis_gateway(TIGHT)
    r = checkout(http, gw, email=EMAIL)
    # email and ip both have 2 left; the email's hour is the longer window.
    assert r.status_code == 200
    limit, remaining, reset = limit_headers(r)
    assert (limit, remaining) == ("3", "2") and 3590 <= int(reset) <= 3600
    r = checkout(http, gw, email="grace@example.org")
    limit, remaining, reset = limit_headers(r)  # now the ip has fewest left
    assert (limit, remaining) == ("3", "1") and 1 <= int(reset) <= 60
    r = checkout(http, gw, email="third@example.org")
    assert limit_headers(r)[:2] == ("3", "0")
    r = checkout(http, gw, email="fourth@example.org")
    assert_refused(r)
    limit, remaining, reset = limit_headers(r)
    assert (limit, remaining) == ("3", "0") and 1 <= int(reset) <= 60
    assert int(r.headers["retry-after"]) <= 60


def test_ietf_ratelimit_headers_name_the_route_and_key_and_never_the_email(
        http, redis_gateway, upstream):
    gw = redis_gateway(TIGHT)
    r = checkout(http, gw, email=EMAIL)
    policy_header = r.headers["ratelimit-policy"]
    assert '"checkout-mail-in.body-email";q=3;w=3600' in policy_header
    assert '"checkout-mail-in.ip";q=3;w=60' in policy_header
    assert r.headers["ratelimit"].startswith('"checkout-mail-in.body-email";r=2;t=')
    for value in r.headers.values():
        assert "ada" not in value.lower() and "example.org" not in value.lower()


def test_reusely_answers_on_a_limited_route_carry_the_headers_too(http, redis_gateway, upstream):
    gw = redis_gateway(TIGHT)
    for status in (200, 404, 422, 500):
        r = http.get(gw.url + f"/b/status/{status}")
        assert r.status_code == status
        assert r.headers["x-ratelimit-limit"] == "10"
    assert r.headers["x-ratelimit-remaining"] == "6"
    r = http.get(gw.url + "/b/open")
    assert r.status_code == 200
    assert not any(n.startswith(("x-ratelimit", "ratelimit")) for n in r.headers)


# -- the body -----------------------------------------------------------------


@pytest.mark.parametrize("body", [b"[]", b'["a@b.c"]', b'"a@b.c"', b"not json",
                                  b'{"email": 5}', b'{"email": ["a@b.c"]}', b'{"phone": 15550100}',
                                  b'{"email": {"v": "a"}}', b'{"email": true}', b"[" * 5000])
def test_a_body_that_is_not_a_json_object_or_has_a_non_string_key_is_400(
        http, redis_gateway, upstream,
                                                                          body):
    gw = redis_gateway(CHECKOUT)
    r = http.post(gw.url + MAIL_IN, content=body, headers={"content-type": "application/json"})
    assert r.status_code == 400
    assert error_of(r) == "invalid_body"
    assert upstream.received == []


def test_a_post_without_a_body_has_its_values_absent_and_counts_per_ip(
        http, redis_gateway, upstream):
    gw = redis_gateway(policy('{per: "body:email", rate: "1/hour"}', '{per: ip, rate: "2/hour"}'))
    statuses = [http.post(gw.url + MAIL_IN).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    assert [r.body for r in upstream.received] == [b"", b""]


def test_null_counts_as_absent(http, redis_gateway, upstream):
    gw = redis_gateway(policy('{per: "body:email", rate: "2/hour"}'))
    for _ in range(4):
        r = http.post(gw.url + MAIL_IN, content=json.dumps(offer(email=None)).encode(),
                      headers={"content-type": "application/json; charset=utf-8"})
        assert r.status_code == 200
        assert "x-ratelimit-limit" not in r.headers  # no key, no limit applied
    for expected in (200, 200, 429):
        r = http.post(gw.url + MAIL_IN, content=json.dumps({"email": EMAIL}).encode(),
                      headers={"content-type": "application/vnd.api+json"})
        assert r.status_code == expected
    assert len(upstream.received) == 6
    assert json.loads(upstream.received[0].body)["email"] is None  # the body passes unchanged


# -- shadow limits and client quotas ------------------------------------------


def sample_sum(registry: CollectorRegistry, name: str, **labels: str) -> float:
    total = 0.0
    for metric in registry.collect():
        for sample in metric.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def test_a_shadow_limit_refuses_nothing_and_counts_what_it_would_refuse(
        http, redis_gateway, upstream):
    registry = CollectorRegistry()
    gw = redis_gateway(policy('{per: "body:email", rate: "2/hour", shadow: true}'),
                       registry=registry)
    for _ in range(5):
        r = checkout(http, gw, email=EMAIL)
        assert r.status_code == 200
        assert not any(n.startswith(("x-ratelimit", "ratelimit")) for n in r.headers)
    assert len(upstream.received) == 5
    assert sample_sum(registry, "gateway_rate_limit_shadow_total",
                      route="checkout-mail-in") == 3
    assert sample_sum(registry, "gateway_rate_limited_total") == 0


def test_a_shadow_limit_beside_an_enforced_one_only_counts(http, redis_gateway, upstream):
    registry = CollectorRegistry()
    gw = redis_gateway(policy('{per: "body:email", rate: "1/hour", shadow: true}',
                              '{per: ip, rate: "3/hour"}'), registry=registry)
    answers = [checkout(http, gw, email=EMAIL) for _ in range(4)]
    assert [r.status_code for r in answers] == [200, 200, 200, 429]
    assert [r.headers["x-ratelimit-limit"] for r in answers] == ["3"] * 4
    assert all("body-email" not in r.headers["ratelimit-policy"] for r in answers)
    assert sample_sum(registry, "gateway_rate_limit_shadow_total") == 2
    assert sample_sum(registry, "gateway_rate_limited_total", route="checkout-mail-in",
                      per="ip") == 1


CLIENT_A = "client-a-token-1f2e3d"
CLIENT_B = "client-b-token-4c5b6a"


def test_a_clients_quota_counts_across_routes(http, redis_gateway, upstream):
    gw = redis_gateway(policy(extra="""
  - name: inventory
    path: /api/v2/public/inventory/{rest:path}
    methods: [GET]
    credentials: [api_key, secret_key]
    access: internal
  - name: orders
    path: /api/v2/orders/{rest:path}
    methods: [GET]
    credentials: [api_key, secret_key]
    access: internal
""", clients=f"""
clients:
  - name: team-a
    token_sha256: "{sha(CLIENT_A)}"
    routes: ["*"]
    limits:
      - {{per: client, rate: "3/hour"}}
  - name: team-b
    token_sha256: "{sha(CLIENT_B)}"
    routes: ["*"]
    limits:
      - {{per: client, rate: "3/hour"}}
"""))

    def get(path: str, token: str) -> httpx.Response:
        return http.get(gw.url + path, headers={"authorization": f"Bearer {token}"})

    a = [get("/api/v2/public/inventory/x", CLIENT_A), get("/api/v2/orders/y", CLIENT_A),
         get("/api/v2/public/inventory/z", CLIENT_A), get("/api/v2/orders/w", CLIENT_A)]
    assert [r.status_code for r in a] == [200, 200, 200, 429]
    assert [r.headers["x-ratelimit-remaining"] for r in a] == ["2", "1", "0", "0"]
    assert_refused(a[3])
    assert get("/api/v2/orders/w", CLIENT_B).status_code == 200
    assert len(upstream.received) == 4


# -- Redis unavailable --------------------------------------------------------


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    server = PrivateRedis().start()
    yield server
    server.stop()


OUTAGE = policy('{per: "body:email", rate: "5/hour"}', timeout=0.2, extra="""
  - name: strict
    path: /b/strict
    methods: [POST]
    credentials: [api_key]
    access: public
    on_error: deny
    limits:
      - {per: ip, rate: "100/hour"}
""")


def no_limit_headers(r: httpx.Response) -> bool:
    return not any(n.startswith(("x-ratelimit", "ratelimit")) for n in r.headers)


def test_with_redis_down_allow_keeps_serving_deny_refuses_and_both_recover(
        http, redis_gateway, upstream, private_redis):
    registry = CollectorRegistry()
    env = {"GATEWAY_REDIS_URL": private_redis.url}
    allow = redis_gateway(OUTAGE, env=env, registry=registry)
    deny = redis_gateway(OUTAGE.replace("on_error: allow", "on_error: deny"), env=env)
    errors = "gateway_rate_limiter_errors_total"
    fast = httpx.Timeout(1.5)  # "well under a second" per Redis call: no answer may hang

    r = checkout(http, allow, email=EMAIL)
    assert r.status_code == 200 and r.headers["x-ratelimit-remaining"] == "4"
    assert http.get(allow.url + "/readyz").json()["redis"] == "up"
    assert (registry.get_sample_value(errors) or 0) == 0

    private_redis.stop()
    for i in range(3):
        r = http.post(allow.url + MAIL_IN, json=offer(email=EMAIL), timeout=fast)
        assert r.status_code == 200
        assert no_limit_headers(r)
        assert registry.get_sample_value(errors) == i + 1
    r = http.post(allow.url + "/b/strict", json={}, timeout=fast)  # the route says deny
    assert r.status_code == 503 and error_of(r) == "rate_limiter_unavailable"
    r = http.post(deny.url + MAIL_IN, json=offer(email=EMAIL), timeout=fast)
    assert r.status_code == 503 and error_of(r) == "rate_limiter_unavailable"
    ready = http.get(allow.url + "/readyz", timeout=fast)
    assert ready.status_code == 200 and ready.json()["redis"] == "down"
    ready = http.get(deny.url + "/readyz", timeout=fast)
    assert ready.status_code == 503 and ready.json()["redis"] == "down"
    forwarded = len(upstream.received)
    assert forwarded == 4

    private_redis.start()  # same port, empty: limits apply again with no restart
    deadline = time.monotonic() + 10
    while no_limit_headers(r := checkout(http, allow, email="grace@example.org")):
        assert time.monotonic() < deadline, "limits did not come back"
        time.sleep(0.05)
    assert r.status_code == 200
    remaining = int(r.headers["x-ratelimit-remaining"])
    for _ in range(remaining):
        assert checkout(http, allow, email="grace@example.org").status_code == 200
    assert_refused(checkout(http, allow, email="grace@example.org"))
    assert http.get(allow.url + "/readyz").json()["redis"] == "up"
    assert http.get(deny.url + "/readyz").status_code == 200
    assert checkout(http, deny, email=EMAIL).status_code == 200


def test_a_redis_that_stops_answering_is_bounded_by_the_timeout(
        http, redis_gateway, upstream, private_redis):
    registry = CollectorRegistry()
    env = {"GATEWAY_REDIS_URL": private_redis.url}
    allow = redis_gateway(OUTAGE, env=env, registry=registry)
    deny = redis_gateway(OUTAGE.replace("on_error: allow", "on_error: deny"), env=env)
    assert checkout(http, allow, email=EMAIL).status_code == 200
    assert checkout(http, deny, email=EMAIL).status_code == 200
    fast = httpx.Timeout(1.5)
    private_redis.pause()  # accepts connections, answers nothing
    try:
        r = http.post(allow.url + MAIL_IN, json=offer(email=EMAIL), timeout=fast)
        assert r.status_code == 200 and no_limit_headers(r)
        assert registry.get_sample_value("gateway_rate_limiter_errors_total") == 1
        r = http.post(deny.url + MAIL_IN, json=offer(email=EMAIL), timeout=fast)
        assert r.status_code == 503 and error_of(r) == "rate_limiter_unavailable"
        assert http.get(allow.url + "/readyz", timeout=fast).json()["redis"] == "down"
        assert http.get(deny.url + "/readyz", timeout=fast).status_code == 503
    finally:
        private_redis.resume()
    deadline = time.monotonic() + 10
    while no_limit_headers(r := checkout(http, deny, email=EMAIL)):
        assert time.monotonic() < deadline, "limits did not come back"
        time.sleep(0.05)
    assert r.status_code == 200
    assert len(upstream.received) == 4

