"""The per-email limit against a caller who tries to break it, sent the way an attacker would."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from prometheus_client import CollectorRegistry

from tests.support.gateway import InProcessGateway, raw_request, wait_for
from tests.support.http import MAIL_IN, error_of, offer, sha, status_line
from tests.support.redisserver import PrivateRedis

VICTIM = "victim@example.com"
TOKEN = "narrow-team-token-3c4d"


def policy(*limits: str, on_error: str = "allow", max_body: int = 16384) -> str:
    listed = "".join(f"\n      - {line}" for line in limits)
    return f"""
limits: {{on_error: {on_error}, timeout: 0.25}}
routes:
  - name: checkout-mail-in
    path: {MAIL_IN}
    methods: [POST]
    credentials: [api_key, tenant_id]
    access: public
    max_body_bytes: {max_body}
    limits:{listed}
  - name: orders
    path: /b/orders
    methods: [GET]
    credentials: [api_key]
    access: internal
clients:
  - name: narrow
    token_sha256: "{sha(TOKEN)}"
    routes: []
"""


CHECKOUT = policy('{per: "body:email", rate: "5/hour"}', '{per: "body:phone", rate: "5/hour"}',
                  '{per: ip, rate: "30/hour"}')


def raw_post(gw: InProcessGateway, target: str, body: bytes,
             headers: list[tuple[str, str]], *, length: int | None = None) -> tuple[int, bytes]:
    head = [f"POST {target} HTTP/1.1", "Host: gateway", "Connection: close",
            f"Content-Length: {len(body) if length is None else length}",
            *(f"{n}: {v}" for n, v in headers)]
    status, reply = raw_request(gw.port, ("\r\n".join(head) + "\r\n\r\n").encode() + body)
    return status, reply


def emails_upstream(upstream: Any) -> list[str]:
    return [json.loads(r.body).get("email") for r in upstream.received if r.body]


def test_a_form_body_that_looks_like_json_is_415_and_never_reaches_reusely(redis_gateway, upstream):
    gw = redis_gateway(CHECKOUT)
    body = b'{"email":"decoy@example.net","x":"&email=' + VICTIM.encode() + b'&first_name=A"}'
    for content_type in ("application/x-www-form-urlencoded", "text/plain",
                         "multipart/form-data; boundary=x", "application/jsonp"):
        status, reply = raw_post(gw, MAIL_IN, body, [("Content-Type", content_type)])
        assert status == 415 and b'"unsupported_media_type"' in reply
    status, _ = raw_post(gw, MAIL_IN, body, [])  # no Content-Type at all
    assert status == 415
    status, _ = raw_post(gw, MAIL_IN, body, [("Content-Type", "application/x-www-form-urlencoded"),
                                             ("Content-Type", "application/json")])
    assert status == 415  # two Content-Types: which one would Reusely believe?
    assert upstream.received == []


def test_a_query_naming_a_body_field_is_400_and_never_reaches_reusely(
        http, redis_gateway, upstream):
    gw = redis_gateway(CHECKOUT)
    for query in (f"email={VICTIM}", f"EMAIL={VICTIM}", f"e%6Dail={VICTIM}", "phone=5550100",
                  f"a=1&email={VICTIM}"):
        r = http.post(f"{gw.url}{MAIL_IN}?{query}", json=offer(first_name="no email here"))
        assert r.status_code == 400 and error_of(r) == "invalid_body", query
    assert http.post(f"{gw.url}{MAIL_IN}?ref=newsletter", json=offer(email="a@b.c")
                     ).status_code == 200
    assert len(upstream.received) == 1


def test_shoppers_sending_an_empty_phone_do_not_share_one_bucket(http, redis_gateway, upstream):
    gw = redis_gateway(CHECKOUT)
    for i in range(8):
        r = http.post(gw.url + MAIL_IN, json=offer(email=f"shopper{i}@example.com", phone=""))
        assert r.status_code == 200, i
    for i in range(6):
        r = http.post(gw.url + MAIL_IN, json=offer(email=f"other{i}@example.com", phone="\u200b "))
        assert r.status_code == 200, i


def test_invisible_characters_do_not_make_a_fresh_email(http, redis_gateway, upstream):
    gw = redis_gateway(CHECKOUT)
    spellings = [VICTIM, VICTIM + "\u200b", "\ufeff" + VICTIM, "vic\u200dtim@example.com",
                 " VICTIM@EXAMPLE.COM\u2060", "\uff56ictim@example.com"]
    statuses = [http.post(gw.url + MAIL_IN, json=offer(email=e)).status_code for e in spellings]
    assert statuses == [200] * 5 + [429]
    assert len(upstream.received) == 5


@pytest.mark.parametrize("field", [b'"\\ud800"', b'"a\\udfff@example.com"',
                                   b'"\xed\xa0\x80@example.com"'])
def test_a_lone_surrogate_is_400_not_500(redis_gateway, upstream, field):
    gw = redis_gateway(CHECKOUT)
    status, reply = raw_post(gw, MAIL_IN, b'{"email": ' + field + b', "first_name": "A"}',
                             [("Content-Type", "application/json")])
    assert status == 400 and b'"invalid_body"' in reply
    assert upstream.received == []


def test_an_exhausted_ip_limit_refuses_before_the_body_is_read(http, redis_gateway, upstream):
    gw = redis_gateway(policy('{per: "body:email", rate: "5/hour"}', '{per: ip, rate: "2/hour"}'))
    for i in range(2):
        assert http.post(gw.url + MAIL_IN, json=offer(email=f"s{i}@example.com")).status_code == 200
    # Whatever the body, the ip limit answers first: bad JSON, a form, a query naming
    # the email, and a Content-Length far over the limit whose body never comes.
    cases = [(b"not json", [("Content-Type", "application/json")], None),
             (b"email=x", [("Content-Type", "application/x-www-form-urlencoded")], None),
             (b"", [("Content-Type", "application/json")], 50_000_000)]
    for body, headers, length in cases:
        status, reply = raw_post(gw, MAIL_IN, body, headers, length=length)
        assert status == 429 and b'"rate_limited"' in reply, reply[:200]
    status, reply = raw_post(gw, f"{MAIL_IN}?email={VICTIM}", b"{}",
                             [("Content-Type", "application/json")])
    assert status == 429
    assert len(upstream.received) == 2


def test_a_known_client_refused_with_403_is_counted_under_its_name(http, redis_gateway, upstream):
    registry = CollectorRegistry()
    gw = redis_gateway(CHECKOUT, registry=registry)
    r = http.get(gw.url + "/b/orders", headers={"authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 403 and error_of(r) == "forbidden"
    # Counted once the answer is sent, so a moment after the caller may have read it.
    wait_for(lambda: registry.get_sample_value("gateway_requests_total", {
        "route": "orders", "method": "GET", "status": "403", "client": "narrow"}) == 1,
        "the 403 to be counted")
    assert registry.get_sample_value("gateway_requests_total", {
        "route": "orders", "method": "GET", "status": "403", "client": "public"}) is None


@pytest.fixture
def full_redis() -> Iterator[PrivateRedis]:
    """A Redis at its maxmemory with noeviction: it refuses every write."""
    server = PrivateRedis("--maxmemory", "2mb", "--maxmemory-policy", "noeviction").start()
    client = redis.Redis(port=server.port)
    try:
        for i in range(10_000):
            client.set(f"filler:{i}", b"x" * 1024)
    except redis.exceptions.OutOfMemoryError:
        pass
    finally:
        client.close()
    yield server
    server.stop()


def test_a_full_redis_is_a_redis_that_cannot_answer(http, gateway_factory, upstream, full_redis):
    """OOM refusals follow on_error like an outage, and both count as limiter errors."""
    allow_registry, deny_registry = CollectorRegistry(), CollectorRegistry()
    env = {"GATEWAY_REDIS_URL": full_redis.url}
    text = policy('{per: "body:email", rate: "5/hour"}')
    allow = gateway_factory(text, env=env, registry=allow_registry)
    deny = gateway_factory(text.replace("on_error: allow", "on_error: deny"), env=env,
                           registry=deny_registry)
    r = http.post(allow.url + MAIL_IN, json=offer(email=VICTIM))
    assert r.status_code == 200 and "x-ratelimit-remaining" not in r.headers
    r = http.post(deny.url + MAIL_IN, json=offer(email=VICTIM))
    assert r.status_code == 503 and error_of(r) == "rate_limiter_unavailable"
    for registry in (allow_registry, deny_registry):
        assert registry.get_sample_value("gateway_rate_limiter_errors_total") == 1
    assert len(upstream.received) == 1


def test_an_error_under_deny_counts_as_a_limiter_error(http, gateway_factory, upstream):
    registry = CollectorRegistry()
    dead = PrivateRedis()  # never started: connections are refused
    gw = gateway_factory(policy('{per: "body:email", rate: "5/hour"}', on_error="deny"),
                         env={"GATEWAY_REDIS_URL": dead.url}, registry=registry)
    for i in range(3):
        r = http.post(gw.url + MAIL_IN, json=offer(email=VICTIM))
        assert r.status_code == 503 and error_of(r) == "rate_limiter_unavailable"
        assert registry.get_sample_value("gateway_rate_limiter_errors_total") == i + 1
    assert upstream.received == []


def test_status_line_reads_a_raw_reply():
    assert status_line(b"HTTP/1.1 429 Too Many Requests\r\n") == 429
    assert status_line(b"") == 0


def test_an_exhausted_ip_limit_does_not_wait_for_a_small_body(http, redis_gateway, upstream):
    gw = redis_gateway(policy('{per: "body:email", rate: "5/hour"}', '{per: ip, rate: "1/hour"}'))
    assert http.post(gw.url + MAIL_IN, json=offer(email="first@example.com")).status_code == 200
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", gw.port), timeout=5) as sock:
        # A small body announced and never sent: the ip limit answers without waiting for it.
        sock.sendall(f"POST {MAIL_IN} HTTP/1.1\r\nHost: g\r\nContent-Type: application/json\r\n"
                     "Content-Length: 100\r\n\r\n".encode())
        reply = sock.recv(4096)
    assert reply.startswith(b"HTTP/1.1 429") and time.monotonic() - started < 1.5
    assert len(upstream.received) == 1


def test_a_bodiless_post_with_an_idempotency_key_is_forwarded(http, gateway_factory, upstream):
    text = policy('{per: "body:email", rate: "5/hour"}').replace(
        "    max_body_bytes: 16384\n", "    max_body_bytes: 16384\n    idempotency: {}\n")
    gw = gateway_factory(text)
    for key in (None, "key-1"):
        headers = {"idempotency-key": key} if key else {}
        assert http.post(gw.url + MAIL_IN, headers=headers).status_code == 200
    assert [r.body for r in upstream.received] == [b"", b""]


def test_a_burst_cannot_exhaust_redis_clients_and_pass_an_email_uncounted(gateway_factory,
                                                                          upstream):
    """Each worker keeps at most 64 calls at Redis; a Redis refusing new clients is load,
    not an outage: the request is refused (503), never let through uncounted."""
    tight = PrivateRedis("--maxclients", "40").start()
    try:
        gw = gateway_factory(policy('{per: "body:email", rate: "5/hour"}'),
                             env={"GATEWAY_REDIS_URL": tight.url})
        body = json.dumps(offer(email=VICTIM)).encode()
        request = (f"POST {MAIL_IN} HTTP/1.1\r\nHost: g\r\nContent-Type: application/json\r\n"
                   f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body

        async def burst() -> list[int]:
            streams = [await asyncio.open_connection("127.0.0.1", gw.port) for _ in range(80)]
            for _, writer in streams:  # every request at once, on its own connection
                writer.write(request)

            async def status(reader: asyncio.StreamReader) -> int:
                line = await asyncio.wait_for(reader.readline(), 15)
                return int(line.split(b" ", 2)[1]) if line else 0

            out = await asyncio.gather(*(status(r) for r, _ in streams))
            for _, writer in streams:
                writer.close()
            return list(out)

        statuses = asyncio.run(burst())
        assert statuses.count(200) <= 5, statuses
        assert set(statuses) <= {200, 429, 503}, statuses
        assert len(upstream.received) <= 5
    finally:
        tight.stop()


def test_a_limited_header_sent_twice_reaches_reusely_once_as_counted(redis_gateway, upstream):
    text = policy('{per: "header:x-shopper", rate: "2/hour"}')
    gw = redis_gateway(text)
    statuses = []
    for _ in range(3):
        body = b'{"first_name": "A"}'
        status, _ = raw_post(gw, MAIL_IN, body, [("Content-Type", "application/json"),
                                                 ("X-Shopper", "victim"), ("X-Shopper", "decoy")])
        statuses.append(status)
    assert statuses == [200, 200, 429]  # counted as "decoy", the copy Reusely gets
    for received in upstream.received:
        assert [v for n, v in received.headers if n == "x-shopper"] == ["decoy"]


def test_a_refused_body_on_a_limited_route_still_says_the_limits(http, redis_gateway, upstream):
    gw = redis_gateway(policy('{per: "body:email", rate: "5/hour"}', '{per: ip, rate: "30/hour"}'))
    assert http.post(gw.url + MAIL_IN, json=offer(email="a@example.com")).status_code == 200
    small = http.post(gw.url + MAIL_IN, content=b"not json",
                      headers={"content-type": "application/json"})
    form = http.post(gw.url + MAIL_IN, content=b"email=a", headers={
        "content-type": "application/x-www-form-urlencoded"})
    large = http.post(gw.url + MAIL_IN, content=b"[" + b" " * 8000 + b"]",
                      headers={"content-type": "application/json"})
    for r, status in ((small, 400), (form, 415), (large, 400)):
        assert r.status_code == status
        assert (r.headers["x-ratelimit-limit"], r.headers["x-ratelimit-remaining"]) == ("30", "29")
        assert list(r.headers.keys()).count("x-ratelimit-limit") == 1
    refused = http.post(gw.url + MAIL_IN, json=offer(email="a@example.com"))
    assert list(refused.headers.keys()).count("x-ratelimit-limit") == 1
