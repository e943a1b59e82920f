"""Idempotency-Key over real sockets: one offer per key, whatever the retries."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from tests.support.gateway import InProcessGateway, ServedGateway, raw_request, wait_for
from tests.support.http import error_of, sha
from tests.support.redisserver import PrivateRedis
from tests.support.upstream import Upstream

TOKEN = "idempotency-team-token-7e8f"
ORIGIN = "https://shop.example.com"
POLICY = f"""
limits: {{on_error: allow, timeout: 0.25}}
cors: {{allow_origins: ["{ORIGIN}"]}}
routes:
  - name: required
    path: /b/required/{{rest:path}}
    methods: [POST]
    credentials: [api_key]
    access: public
    idempotency: {{ttl: 60, required: true}}
  - name: hang
    path: /b/hang
    methods: [POST]
    credentials: [api_key]
    access: public
    timeout: {{read: 0.5}}
    idempotency: {{}}
  - name: per-second
    path: /b/second/{{rest:path}}
    methods: [POST]
    credentials: [api_key]
    access: public
    idempotency: {{ttl: 60}}
    limits:
      - {{per: "body:email", rate: "1/second"}}
  - name: mail-in
    path: /b/{{rest:path}}
    methods: [GET, POST]
    credentials: [api_key]
    access: public
    idempotency: {{ttl: 60}}
    limits:
      - {{per: "body:email", rate: "2/hour"}}
clients:
  - name: team
    token_sha256: "{sha(TOKEN)}"
    routes: ["*"]
"""
KEY = "8e03978e-40d5-43e8-bc93-6894a57f9324"
OFFER = {"email": "ada@example.com", "first_name": "Ada"}


@pytest.fixture
def start(gateway_factory: Callable[..., InProcessGateway],
          redis_url: str) -> Callable[..., InProcessGateway]:
    def start(*, redis: str | None = None, text: str = POLICY,
              **app_kwargs: Any) -> InProcessGateway:
        return gateway_factory(text, env={"GATEWAY_REDIS_URL": redis or redis_url},
                               **app_kwargs)
    return start


def post(http: httpx.Client, gw: InProcessGateway, path: str, key: str | None = KEY,
         body: dict[str, Any] | None = None, **headers: str) -> httpx.Response:
    sent = {"idempotency-key": key} if key is not None else {}
    return http.post(gw.url + path, json=OFFER if body is None else body,
                     headers={**sent, **headers})


def test_a_repeated_key_replays_the_first_answer_without_forwarding(http, start, upstream):
    registry = CollectorRegistry()
    gw = start(registry=registry)
    first = post(http, gw, "/b/status/201")
    assert first.status_code == 201 and "idempotent-replayed" not in first.headers
    for sent_key in (KEY, f'"{KEY}"'):  # bare, or an RFC 8941 string
        again = post(http, gw, "/b/status/201", key=sent_key)
        assert again.status_code == 201 and again.content == first.content
        assert again.headers["idempotent-replayed"] == "true"
        assert again.headers["content-type"] == first.headers["content-type"]
        assert again.headers["x-request-id"] != first.headers["x-request-id"]
    body = first.request.content  # the same bytes, the key with whitespace around it
    status, reply = raw_request(gw.port, b"POST /b/status/201 HTTP/1.1\r\nHost: g\r\n"
                                b"Content-Type: application/json\r\nIdempotency-Key: \t \"%s\" "
                                b"\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
                                % (KEY.encode(), len(body), body))
    assert status == 201 and b"idempotent-replayed: true" in reply.lower()
    assert len(upstream.received) == 1
    wait_for(lambda: registry.get_sample_value("gateway_idempotent_replays_total",
                                               {"route": "mail-in"}) == 3, "three replays")


def test_replays_use_none_of_the_shoppers_checkouts(http, start, upstream):
    gw = start()
    assert post(http, gw, "/b/status/201").headers["x-ratelimit-remaining"] == "1"
    for _ in range(5):
        again = post(http, gw, "/b/status/201")
        assert again.status_code == 201 and again.headers["idempotent-replayed"] == "true"
        assert not any(h.startswith(("x-ratelimit", "ratelimit")) for h in again.headers)
    second = post(http, gw, "/b/status/201", key="another-attempt")
    assert second.status_code == 201 and second.headers["x-ratelimit-remaining"] == "0"
    third = post(http, gw, "/b/status/201", key="a-third-attempt")
    assert third.status_code == 429 and error_of(third) == "rate_limited"
    assert len(upstream.received) == 2


def test_the_same_key_with_another_request_is_422(http, start, upstream):
    gw = start()
    assert post(http, gw, "/b/status/201").status_code == 201
    for other in ({"body": {**OFFER, "first_name": "Grace"}}, {"path": "/b/status/202"}):
        r = post(http, gw, other.get("path", "/b/status/201"), body=other.get("body"))
        assert r.status_code == 422 and error_of(r) == "idempotency_key_reused"
    assert len(upstream.received) == 1


def test_bad_missing_and_required_keys(http, start, upstream):
    gw = start()
    for bad in ("", "a b", "x" * 256, '"unterminated', '"a"b"'):
        r = post(http, gw, "/b/status/201", key=bad)
        assert r.status_code == 400 and error_of(r) == "invalid_idempotency_key", bad
    body = b'{"email": "a@b.c"}'
    for keys in (b"Idempotency-Key: a\r\nIdempotency-Key: b\r\n",  # two of them
                 b"Idempotency-Key: caf\xc3\xa9\r\n", b"Idempotency-Key: a\x01b\r\n"):
        status, reply = raw_request(gw.port, b"POST /b/status/201 HTTP/1.1\r\nHost: g\r\n"
                                    b"Content-Type: application/json\r\n" + keys +
                                    b"Content-Length: %d\r\nConnection: close\r\n\r\n%s"
                                    % (len(body), body))
        assert status == 400, reply[:200]
    r = post(http, gw, "/b/required/x", key=None)
    assert r.status_code == 400 and error_of(r) == "idempotency_key_required"
    assert post(http, gw, "/b/status/201", key=None).status_code == 201  # optional: as usual
    assert post(http, gw, "/b/status/201", key=None).status_code == 201  # no key, no replay
    assert http.get(gw.url + "/b/x", headers={"idempotency-key": "a b"}).status_code == 200
    assert len(upstream.received) == 3  # two plain POSTs and the GET (its key is ignored)


def test_a_key_is_scoped_to_the_caller(http, start, upstream):
    gw = start()
    assert post(http, gw, "/b/status/201").status_code == 201
    team = post(http, gw, "/b/status/201", authorization=f"Bearer {TOKEN}")
    assert team.status_code == 201 and "idempotent-replayed" not in team.headers
    assert post(http, gw, "/b/status/201", authorization=f"Bearer {TOKEN}"
                ).headers["idempotent-replayed"] == "true"
    assert len(upstream.received) == 2


def test_what_is_not_kept_frees_the_key(http, start, upstream):
    gw = start()
    lead = {"first_name": "Ada"}  # no email: the route's per-email limit does not count it
    for path in ("/b/status/503", "/b/status/500", "/b/status/409", "/b/status/401",
                 "/b/status/429"):  # the 429 last: it holds these requests for a while
        key = f"key-for-{path.rsplit('/', 1)[1]}"
        first = post(http, gw, path, key=key, body=lead)
        again = post(http, gw, path, key=key, body=lead)
        assert "idempotent-replayed" not in again.headers
        assert first.status_code == again.status_code
    assert len(upstream.received) == 10 - 1  # the 429 held them: its retry not forwarded
    kept = post(http, gw, "/b/status/404", key="kept-404")
    assert post(http, gw, "/b/status/404", key="kept-404").headers["idempotent-replayed"] == "true"
    assert kept.status_code == 404


def test_the_gateways_own_refusal_is_not_kept(http, start, upstream):
    gw = start()
    assert post(http, gw, "/b/second/x", key="first").status_code == 200
    refused = post(http, gw, "/b/second/x", key="second")
    assert refused.status_code == 429 and error_of(refused) == "rate_limited"
    time.sleep(1.1)
    retried = post(http, gw, "/b/second/x", key="second")
    assert retried.status_code == 200 and "idempotent-replayed" not in retried.headers
    assert len(upstream.received) == 2


def test_a_timeout_after_the_body_was_sent_frees_the_key(http, start, upstream):
    gw = start()
    for _ in range(2):
        r = post(http, gw, "/b/hang", key="hangs")
        assert r.status_code == 504 and error_of(r) == "upstream_timeout"
    assert len(upstream.received) == 2  # the gateway's 504 is not kept: handled as new


def test_an_answer_too_large_to_keep_is_streamed_and_frees_the_key(http, start, upstream):
    gw = start()
    for _ in range(2):
        r = post(http, gw, "/b/big/2000000", key="big")
        assert r.status_code == 200 and len(r.content) == 2_000_000
        assert "idempotent-replayed" not in r.headers
    assert len(upstream.received) == 2


def test_two_gateways_on_one_redis_share_the_keys(http, start, upstream):
    one, two = start(), start()
    assert post(http, one, "/b/status/201").status_code == 201
    assert post(http, two, "/b/status/201").headers["idempotent-replayed"] == "true"
    assert post(http, two, "/b/status/202").status_code == 422
    assert len(upstream.received) == 1


def test_preflights_allow_the_key_and_pages_can_read_the_replay_flag(http, start, upstream):
    gw = start()
    r = http.options(gw.url + "/b/x", headers={
        "origin": ORIGIN, "access-control-request-method": "POST",
        "access-control-request-headers": "content-type, idempotency-key"})
    assert r.status_code == 204
    allowed = {h.strip() for h in r.headers["access-control-allow-headers"].split(",")}
    assert "idempotency-key" in allowed
    answer = post(http, gw, "/b/status/201", origin=ORIGIN)
    exposed = answer.headers["access-control-expose-headers"].lower()
    assert "idempotent-replayed" in exposed


def test_redis_down_follows_on_error(http, start, upstream):
    dead = PrivateRedis()  # never started: connections are refused
    allow = start(redis=dead.url)
    deny = start(redis=dead.url, text=POLICY.replace("on_error: allow", "on_error: deny"))
    for _ in range(2):
        assert post(http, allow, "/b/status/201").status_code == 201  # without idempotency
    r = post(http, deny, "/b/status/201")
    assert r.status_code == 503 and error_of(r) == "rate_limiter_unavailable"
    assert len(upstream.received) == 2


def test_memory_without_redis_replays_within_one_process(http, gateway_factory, upstream):
    gw = gateway_factory(POLICY)
    assert post(http, gw, "/b/status/201").status_code == 201
    assert post(http, gw, "/b/status/201").headers["idempotent-replayed"] == "true"
    assert len(upstream.received) == 1


def test_concurrent_requests_with_one_key_across_workers_reach_reusely_once(
        tmp_path: Path, redis_url: str):
    upstream = Upstream().start()
    policy = tmp_path / "gateway.yaml"
    policy.write_text(POLICY)
    served = ServedGateway(policy, upstream.url, workers=2,
                           env={"GATEWAY_REDIS_URL": redis_url}).start()
    try:
        def one(_: int) -> httpx.Response:
            with httpx.Client(timeout=15) as client:  # a connection each: either worker
                return client.post(served.url + "/b/slow", json=OFFER,
                                   headers={"idempotency-key": "double-click"})

        with ThreadPoolExecutor(8) as pool:
            first = pool.submit(one, 0)
            upstream.first_sent.wait(10)  # the first one is in flight at Reusely
            others = list(pool.map(one, range(7)))
            threading.Timer(0.2, upstream.release.set).start()
            winner = first.result()
        assert winner.status_code == 200 and winner.content == b"firstlast"
        assert {r.status_code for r in others} == {409}
        for r in others:
            assert error_of(r) == "idempotency_key_in_use" and r.headers["retry-after"] == "1"
        replay = httpx.post(served.url + "/b/slow", json=OFFER,
                            headers={"idempotency-key": "double-click"}, timeout=10)
        assert replay.headers["idempotent-replayed"] == "true" and replay.content == b"firstlast"
        assert len(upstream.received) == 1
        wait_for(lambda: "gateway_idempotent_replays_total" in httpx.get(
            served.metrics_url).text, "the replay to be counted")
    finally:
        served.stop()
        upstream.stop()
