"""The one-call Redis script counts in the same windows as `limits`' own strategy."""

from __future__ import annotations

import asyncio

import pytest
from limits import parse
from limits.aio.strategies import MovingWindowRateLimiter
from prometheus_client import CollectorRegistry

from gateway.environment import load_settings
from gateway.errors import RateLimited
from gateway.limiter import Limiter
from gateway.limitkeys import LimitKeys
from gateway.metrics import Metrics
from gateway.store import Store

POLICY = """
routes:
  - name: mail-in
    path: /m
    methods: [POST]
    limits:
      - {per: "body:email", rate: "3/minute"}
      - {per: ip, rate: "5/minute"}
      - {per: global, rate: "2/minute", shadow: true}
"""


def test_script_hits_are_seen_by_limits_and_a_full_window_or_a_read_consumes_nothing(redis_url):
    settings = load_settings({"GATEWAY_REDIS_URL": redis_url, "REUSELY_API_KEY": "k" * 16},
                             text=POLICY)

    async def go() -> None:
        store = Store(redis_url, budget=0.25)
        registry = CollectorRegistry()
        limiter = Limiter(settings, store, LimitKeys(b"s" * 32), Metrics(registry, version="t"))
        assert limiter._script is not None  # the one-call path is the one under test
        route = settings.policy.routes[0]
        refused = []
        for _ in range(4):
            check = limiter.begin(route, None, ip_key="10.0.0.9", headers={})
            assert check is not None
            await check.cheap()  # reads only
            try:
                await check.full({"body:email": "a@example.com"})
                refused.append(None)
            except RateLimited as exc:
                refused.append(exc.per)
        assert refused == [None, None, None, "body:email"]
        assert registry.get_sample_value("gateway_rate_limit_shadow_total",
                                         {"route": "mail-in", "per": "global"}) == 1
        counted = limiter.counted(limiter._routes["mail-in"], client="public",
                                  ip_key="10.0.0.9", values=None)
        ip = next(c for c in counted if c.limit.rule.per == "ip")
        stats = await MovingWindowRateLimiter(store.limits).get_window_stats(
            parse("5/minute"), *ip.ids)
        assert stats.remaining == 2  # three hits; none from four reads or the refused fourth

        await store.set_ttl("rg/cooldown/mail-in/x", 20)
        check = limiter.begin(route, None, ip_key="10.0.0.10", headers={})
        assert check is not None
        with pytest.raises(RateLimited) as cooled:
            await check.full({"body:email": "b@example.com"}, ("rg/cooldown/mail-in/x",))
        assert cooled.value.per == "upstream" and 19 <= cooled.value.retry_after <= 20
        assert await store.ttl_ms("rg/cooldown/mail-in/x") > 19_000
        counted = limiter.counted(limiter._routes["mail-in"], client="public",
                                  ip_key="10.0.0.10", values={"body:email": "b@example.com"})
        for c in counted:  # the cooldown refused before anything was counted
            if c.limit.rule.per == "global":
                continue  # shared with the requests above
            stats = await MovingWindowRateLimiter(store.limits).get_window_stats(
                c.limit.item, *c.ids)
            assert stats.remaining == c.limit.item.amount
        await store.aclose()

    asyncio.run(go())


def test_a_redis_that_lost_the_script_is_given_it_again_and_counts_on(redis_url):
    """A restarted or flushed Redis, or a failover to a replica, has no script cached."""
    settings = load_settings({"GATEWAY_REDIS_URL": redis_url, "REUSELY_API_KEY": "k" * 16},
                             text=POLICY)

    async def go() -> None:
        store = Store(redis_url, budget=0.25)
        limiter = Limiter(settings, store, LimitKeys(b"s" * 32),
                          Metrics(CollectorRegistry(), version="t"))
        route = settings.policy.routes[0]
        left = []
        for flush in (False, True, True):
            if flush:
                assert store.redis is not None
                await store.redis.script_flush()
            check = limiter.begin(route, None, ip_key="10.0.0.11", headers={})
            assert check is not None
            found = dict(await check.full({"body:email": "flushed@example.com"}))
            left.append(found[b"x-ratelimit-remaining"])
        assert left == [b"2", b"1", b"0"]  # every request counted, none refused or skipped
        assert not check.skipped
        await store.aclose()

    asyncio.run(go())
