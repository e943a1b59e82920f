"""The shared response cache over real sockets and a real Redis: hits, one request per miss,
stale answers, and what is never kept."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import redis
from prometheus_client import CollectorRegistry

from gateway.cachestore import RedisEntries
from gateway.store import Store
from tests.support.gateway import InProcessGateway, free_port, raw_request, wait_for
from tests.support.http import error_of
from tests.support.metrics import sample
from tests.support.redisserver import PrivateCluster
from tests.unit.test_cache import PLAYED, play

IDENTITY = {"accept-encoding": "identity"}


def policy(*, ttl: int = 60, stale_if_error: int | None = None, swr: int | None = None,
           read: float = 2) -> str:
    extra = ""
    if stale_if_error:
        extra += f"    stale_if_error: {stale_if_error}\n"
    if swr:
        extra += f"    stale_while_revalidate: {swr}\n"
    return f"""
routes:
  - name: cached
    path: /b/{{rest:path}}
    methods: [GET]
    credentials: [api_key]
    access: public
    cache_ttl: {ttl}
    timeout: {{connect: 1, read: {read}}}
{extra}"""


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10, headers=IDENTITY) as client:
        yield client


@pytest.fixture
def start(gateway_factory: Callable[..., InProcessGateway],
          redis_url: str) -> Callable[..., InProcessGateway]:
    def start(text: str | None = None, **app_kwargs: Any) -> InProcessGateway:
        return gateway_factory(text or policy(), env={"GATEWAY_REDIS_URL": redis_url},
                               **app_kwargs)
    return start


@pytest.fixture
def rdb(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def kept(client: redis.Redis) -> dict[bytes, dict[bytes, bytes]]:
    """Every cache hash in Redis: key name -> fields."""
    return {k: client.hgetall(k) for k in client.scan_iter("*rg/cache/*")}


def body(r: httpx.Response) -> dict[str, Any]:
    return dict(json.loads(r.content))


def learned_cooldown(http: httpx.Client, gw: InProcessGateway) -> bool:
    """Whether `gw` refuses a request nothing is kept for (a new path each time)."""
    return http.get(f"{gw.url}/b/json/probe-{time.monotonic_ns()}").status_code == 429


def name_of(gw: InProcessGateway, target: str) -> str:
    """The Redis key of a cached answer, as the gateway names it."""
    return gw.app.store.key(gw.app.cache.name(("cached", target, b"identity")))


async def burst(urls: list[str]) -> list[httpx.Response]:
    """All at once, each on its own connection (one client: no per-client setup between)."""
    limits = httpx.Limits(max_connections=len(urls), max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=15, headers=IDENTITY, limits=limits) as client:
        return list(await asyncio.gather(*(client.get(u) for u in urls)))


def test_the_redis_scripts_play_the_memory_stand_ins_part(redis_url, rdb):
    async def run() -> list[tuple[int, bool, bool]]:
        store = Store(redis_url, budget=1.0)
        try:
            return await play(RedisEntries(store))
        finally:
            await store.aclose()

    assert asyncio.run(run()) == PLAYED
    assert all(rdb.pttl(k) > 0 for k in rdb.scan_iter("*"))  # nothing kept without a TTL


# -- hits and misses --------------------------------------------------------------


def test_a_miss_is_kept_in_redis_and_a_second_gateway_answers_it(http, start, upstream, rdb):
    one, two = start(), start()
    first = http.get(one.url + "/b/json/a?x=1")
    assert first.status_code == 200 and first.headers["x-cache-status"] == "miss"
    assert "age" not in first.headers
    second = http.get(two.url + "/b/json/a?x=1")
    assert second.headers["x-cache-status"] == "hit" and second.headers["age"] == "0"
    assert second.content == first.content
    assert second.headers["x-request-id"] != first.headers["x-request-id"]
    assert upstream.count("/json/a") == 1
    # Another query string, or another Accept-Encoding, is another answer.
    assert http.get(two.url + "/b/json/a?x=2").headers["x-cache-status"] == "miss"
    assert http.get(two.url + "/b/json/a?x=1",
                    headers={"accept-encoding": "gzip"}).headers["x-cache-status"] == "miss"
    assert upstream.count("/json/a") == 3


def test_redis_holds_no_caller_data_and_only_what_lives_its_ttl(http, start, upstream, rdb):
    gw = start(policy(ttl=30))
    assert http.get(gw.url + "/b/json/x?email=ada@example.org").status_code == 200
    hashes = kept(rdb)
    assert len(hashes) == 1
    (name, fields), = hashes.items()
    assert b"ada" not in name and b"json" not in name and name.count(b"/cached/") == 1
    assert set(fields) == {b"f", b"e"}  # the lock was freed by the write
    assert 0 < rdb.pttl(name) <= 30_000


def test_a_hit_from_the_workers_copy_makes_no_redis_call(http, start, upstream, rdb):
    gw = start()
    assert http.get(gw.url + "/b/json/c").headers["x-cache-status"] == "miss"
    rdb.flushdb()  # were Redis asked, it would know nothing
    r = http.get(gw.url + "/b/json/c")
    assert r.headers["x-cache-status"] == "hit"
    assert upstream.count("/json/c") == 1


def test_an_answer_lives_in_redis_its_ttl_and_stale_window_and_no_longer(http, start, rdb):
    gw = start(policy(ttl=30, stale_if_error=600, swr=60))
    http.get(gw.url + "/b/json/life")
    assert 600_000 < rdb.pttl(name_of(gw, "/b/json/life")) <= 630_000


def test_age_counts_whole_seconds_since_reusely_answered(http, start, upstream):
    one, two = start(), start()
    http.get(one.url + "/b/json/age")
    time.sleep(1.1)
    assert http.get(two.url + "/b/json/age").headers["age"] == "1"
    assert http.get(one.url + "/b/json/age").headers["age"] == "1"


# -- one request per miss ----------------------------------------------------------


def test_concurrent_misses_in_one_gateway_make_one_request(start, upstream):
    gw = start()
    answers = asyncio.run(burst([gw.url + "/b/delay/300/json/burst"] * 20))
    assert [r.status_code for r in answers] == [200] * 20
    assert upstream.count("/delay/300/json/burst") == 1
    statuses = sorted(r.headers["x-cache-status"] for r in answers)
    assert statuses == ["hit"] * 19 + ["miss"]
    assert len({r.content for r in answers}) == 1


def test_two_gateways_share_one_request_per_miss(start, upstream):
    one, two = start(), start()
    answers = asyncio.run(burst([one.url + "/b/delay/300/json/two",
                                 two.url + "/b/delay/300/json/two"] * 5))
    assert [r.status_code for r in answers] == [200] * 10
    assert upstream.count("/delay/300/json/two") == 1


def test_waiters_go_to_reusely_themselves_when_the_answer_may_not_be_kept(start, upstream):
    gw = start()
    started = time.monotonic()
    answers = asyncio.run(burst([gw.url + "/b/delay/500/with/cache-control/no-store/n"] * 10))
    took = time.monotonic() - started
    assert [r.status_code for r in answers] == [200] * 10
    assert {r.headers["x-cache-status"] for r in answers} == {"bypass"}
    assert upstream.count("/delay/500/with/") == 10
    # One after the other would take 5 s: they waited for the first answer only.
    assert took < 3.5


def test_a_dead_lock_holder_delays_the_others_by_at_most_the_read_timeout(http, start,
                                                                         upstream, rdb):
    gw = start(policy(read=1))
    name = name_of(gw, "/b/json/dead")
    deadline = int(time.time() * 1000) + 1000  # as a holder's lock: the read timeout
    rdb.hset(name, "l", f"L{deadline}:0123456789abcdef")
    rdb.pexpire(name, 1000)
    started = time.monotonic()
    r = http.get(gw.url + "/b/json/dead")
    took = time.monotonic() - started
    assert r.status_code == 200 and r.headers["x-cache-status"] == "miss"
    assert took < 2.5
    assert upstream.count("/json/dead") == 1
    assert http.get(gw.url + "/b/json/dead").headers["x-cache-status"] == "hit"


# -- stale answers -----------------------------------------------------------------


@pytest.mark.parametrize(("failure", "counted"), [
    ("503", ("gateway_upstream_responses_total", {"status": "503"})),
    ("reset", ("gateway_upstream_errors_total", {"kind": "protocol"})),
    ("hang", ("gateway_upstream_errors_total", {"kind": "timeout"})),
])
def test_stale_if_error_serves_the_expired_answer_while_reusely_fails(http, start, upstream,
                                                                      failure, counted):
    registry = CollectorRegistry()
    gw = start(policy(ttl=1, stale_if_error=60, read=1), registry=registry)
    first = http.get(gw.url + "/b/json/s")
    assert first.headers["x-cache-status"] == "miss" and body(first)["generation"] == 1
    time.sleep(1.1)
    upstream.failing, upstream.generation = failure, 2
    r = http.get(gw.url + "/b/json/s")
    assert r.status_code == 200 and r.headers["x-cache-status"] == "stale"
    assert r.content == first.content and int(r.headers["age"]) >= 1
    name, labels = counted
    assert sample(registry, name, route="cached", **labels) == 1  # the failure still counts
    # While it fails, everyone gets the stale copy at once.
    for _ in range(3):
        r = http.get(gw.url + "/b/json/s")
        assert r.status_code == 200 and r.headers["x-cache-status"] == "stale"
    upstream.failing = None
    fresh = wait_for(lambda: (x := http.get(gw.url + "/b/json/s")).headers["x-cache-status"]
                     in ("hit", "miss") and x, "the answer to be refreshed")
    assert body(fresh)["generation"] == 2
    assert http.get(gw.url + "/b/json/s").headers["x-cache-status"] == "hit"


def test_past_the_stale_window_a_failure_is_the_gateways_error(http, start, upstream):
    gw = start(policy(ttl=1, stale_if_error=1))
    http.get(gw.url + "/b/json/old")
    time.sleep(2.2)
    upstream.failing = "503"
    r = http.get(gw.url + "/b/json/old")
    assert r.status_code == 503 and r.headers["x-cache-status"] == "bypass"


def test_without_stale_if_error_an_expired_answer_is_never_served(http, start, upstream):
    gw = start(policy(ttl=1))
    http.get(gw.url + "/b/json/none")
    time.sleep(1.1)
    upstream.failing = "reset"
    r = http.get(gw.url + "/b/json/none")
    assert r.status_code == 502 and error_of(r) == "upstream_unavailable"


def test_stale_while_revalidate_answers_at_once_and_refreshes_once(http, start, upstream):
    gw = start(policy(ttl=1, swr=30))
    http.get(gw.url + "/b/delay/1000/json/w")
    time.sleep(1.1)
    upstream.generation = 2
    answers = asyncio.run(burst([gw.url + "/b/delay/1000/json/w"] * 5))
    assert {r.headers["x-cache-status"] for r in answers} == {"stale"}
    assert {body(r)["generation"] for r in answers} == {1}
    fresh = wait_for(lambda: (x := http.get(gw.url + "/b/delay/1000/json/w")).headers[
        "x-cache-status"] == "hit" and x, "the background refresh")
    assert body(fresh)["generation"] == 2
    assert upstream.count("/delay/1000/json/w") == 2


# -- cooldowns, Redis down ---------------------------------------------------------


def test_a_route_wide_cooldown_never_refuses_a_hit_or_a_stale_copy(http, start, upstream):
    one, two = start(policy(ttl=1, stale_if_error=60)), start(policy(ttl=1, stale_if_error=60))
    http.get(one.url + "/b/json/cool")
    time.sleep(1.1)
    assert http.get(one.url + "/b/retry-after/30").status_code == 429  # Reusely's: a cooldown
    r = http.get(one.url + "/b/json/cool")
    assert r.status_code == 200 and r.headers["x-cache-status"] == "stale"
    refused = http.get(one.url + "/b/json/never-kept")
    assert refused.status_code == 429 and error_of(refused) == "upstream_rate_limited"
    # The other gateway learns of the cooldown and still answers from Redis.
    wait_for(lambda: learned_cooldown(http, two), "the other gateway to learn of the cooldown",
             timeout=5)
    assert http.get(two.url + "/b/json/cool").headers["x-cache-status"] == "stale"
    assert upstream.count("/json/cool") == 1


def test_a_hit_is_served_during_a_cooldown(http, start, upstream):
    one, two = start(), start()
    http.get(one.url + "/b/json/warm")
    assert http.get(one.url + "/b/retry-after/30").status_code == 429
    wait_for(lambda: learned_cooldown(http, two), "the other gateway to learn of the cooldown",
             timeout=5)
    for gw in (one, two):  # one from its own copy, two from Redis
        r = http.get(gw.url + "/b/json/warm")
        assert r.status_code == 200 and r.headers["x-cache-status"] == "hit"


def test_redis_down_bypasses_the_cache_and_still_answers(gateway_factory, upstream, http):
    gw = gateway_factory(policy(), env={"GATEWAY_REDIS_URL": f"redis://127.0.0.1:{free_port()}"})
    for _ in range(2):
        r = http.get(gw.url + "/b/json/down")
        assert r.status_code == 200 and r.headers["x-cache-status"] == "bypass"
    assert upstream.count("/json/down") == 2


# -- what is never kept ------------------------------------------------------------


@pytest.mark.parametrize("path", [
    "/b/with/cache-control/private/p",
    "/b/with/cache-control/no-store/p",
    "/b/with/cache-control/max-age=60%2C%20No-Cache/p",
    "/b/with/vary/cookie/p",
    "/b/with/vary/*/p",
    "/b/with/vary/accept-encoding%2C%20user-agent/p",
    "/b/status/404",
    "/b/status/500",
    "/b/big/300000",
])
def test_private_no_store_vary_errors_and_large_answers_are_never_kept(http, start, upstream,
                                                                       rdb, path):
    gw = start()
    for _ in range(2):
        r = http.get(gw.url + path)
        assert r.headers["x-cache-status"] == "bypass"
    assert len(upstream.received) == 2
    assert all(b"e" not in fields for fields in kept(rdb).values())


def test_vary_on_accept_encoding_and_origin_is_kept(http, start, upstream):
    gw = start()
    path = "/b/with/vary/accept-encoding%2C%20origin/v"
    assert http.get(gw.url + path).headers["x-cache-status"] == "miss"
    assert http.get(gw.url + path).headers["x-cache-status"] == "hit"


def test_a_get_with_a_body_or_two_accept_encodings_is_not_the_caches(start, upstream, rdb):
    gw = start()
    for extra in (b"content-length: 2\r\n\r\n{}", b"accept-encoding: identity\r\n"
                  b"accept-encoding: gzip\r\n\r\n"):
        for _ in range(2):
            status, reply = raw_request(gw.port, b"GET /b/json/odd HTTP/1.1\r\nhost: x\r\n"
                                        b"connection: close\r\n" + extra)
            assert status == 200 and b"x-cache-status: bypass" in reply
    assert upstream.count("/json/odd") == 4
    assert kept(rdb) == {}


def test_headers_kept_are_the_cleaned_ones(http, start, upstream):
    one, two = start(), start()
    http.get(one.url + "/b/with/set-cookie/session=abc/h")
    r = http.get(two.url + "/b/with/set-cookie/session=abc/h")
    assert r.headers["x-cache-status"] == "hit" and "set-cookie" not in r.headers
    http.get(one.url + "/b/with/x-echo/test-api-key-5f1c/k")
    r = http.get(two.url + "/b/with/x-echo/test-api-key-5f1c/k")
    assert r.headers["x-cache-status"] == "hit" and "x-echo" not in r.headers


# -- without Redis, and on Redis Cluster ------------------------------------------


def test_without_redis_one_worker_makes_one_request_per_miss_and_serves_stale(
        gateway_factory, upstream, http):
    gw = gateway_factory(policy(ttl=1, stale_if_error=60))
    answers = asyncio.run(burst([gw.url + "/b/delay/300/json/mem"] * 10))
    assert sorted(r.headers["x-cache-status"] for r in answers) == ["hit"] * 9 + ["miss"]
    assert upstream.count("/delay/300/json/mem") == 1
    time.sleep(1.1)
    upstream.failing = "503"
    r = http.get(gw.url + "/b/delay/300/json/mem")
    assert r.status_code == 200 and r.headers["x-cache-status"] == "stale"


def test_the_cache_works_on_redis_cluster(gateway_factory, upstream, http, tmp_path):
    cluster = PrivateCluster(tmp_path).start()
    try:
        env = {"GATEWAY_REDIS_URL": cluster.url}
        one = gateway_factory(policy(ttl=1, stale_if_error=60), env=env)
        two = gateway_factory(policy(ttl=1, stale_if_error=60), env=env)
        assert http.get(one.url + "/b/json/cl").headers["x-cache-status"] == "miss"
        assert http.get(two.url + "/b/json/cl").headers["x-cache-status"] == "hit"
        time.sleep(1.1)
        upstream.failing = "503"
        assert http.get(one.url + "/b/json/cl").headers["x-cache-status"] == "stale"
    finally:
        cluster.stop()


# -- what it costs in Redis --------------------------------------------------------


def test_a_miss_costs_two_redis_calls_a_workers_hit_none_and_an_uncached_route_none(
        gateway_factory, upstream, http):
    """Counted by the Redis server itself (a private one: nobody else's calls)."""
    from tests.support.redisserver import PrivateRedis

    private = PrivateRedis().start()
    try:
        text = policy() + """  - name: plain
    path: /p/{rest:path}
    methods: [GET]
    credentials: [api_key]
    access: public
"""
        env = {"GATEWAY_REDIS_URL": private.url}
        one, two = gateway_factory(text, env=env), gateway_factory(text, env=env)
        client = redis.Redis(port=private.port)

        def calls() -> int:
            """Round trips: script calls, and any other command sent on its own (the
            commands the scripts run inside are counted by Redis too: not those)."""
            stats = client.info("commandstats")
            inside = {"hmget", "hset", "hget", "hdel", "pttl", "pexpire", "info", "ping"}
            return sum(v["calls"] for k, v in stats.items()
                       if k.removeprefix("cmdstat_") not in inside)

        http.get(one.url + "/b/json/warm-the-scripts")
        http.get(two.url + "/b/json/warm-the-scripts")
        before = calls()
        assert http.get(one.url + "/b/json/cost").headers["x-cache-status"] == "miss"
        after_miss = calls()
        assert http.get(one.url + "/b/json/cost").headers["x-cache-status"] == "hit"
        after_hit = calls()
        assert http.get(two.url + "/b/json/cost").headers["x-cache-status"] == "hit"
        after_redis_hit = calls()
        assert http.get(one.url + "/p/json/plain").status_code == 200
        after_plain = calls()
        client.close()
    finally:
        private.stop()
    assert after_miss - before == 2  # the read that takes the lock, the write that frees it
    assert after_hit - after_miss == 0  # the worker's copy
    assert after_redis_hit - after_hit == 1  # another gateway: one read
    assert after_plain - after_redis_hit == 0
