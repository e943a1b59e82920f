"""The one-call Redis script counts in the same windows as `limits`' own strategy."""

from __future__ import annotations

import asyncio

from limits import parse
from limits.aio.strategies import MovingWindowRateLimiter

from gateway.environment import load_settings
from gateway.ratelimit import Limiter, create_storage

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


def test_script_hits_are_seen_by_limits_and_a_full_window_consumes_nothing(redis_url):
    settings = load_settings({"GATEWAY_REDIS_URL": redis_url, "REUSELY_API_KEY": "k" * 16},
                             text=POLICY)

    async def go() -> None:
        storage = create_storage(settings)
        limiter = Limiter(settings, storage, secret=b"s" * 32)
        assert limiter._script is not None  # the one-call path is the one under test
        route = settings.policy.routes[0]
        decisions = [await limiter.check(route, caller="public", client_rules=(), ip="10.0.0.9",
                                         headers={}, body={"email": "a@example.com"})
                     for _ in range(4)]
        assert [d.refused_per for d in decisions] == [None, None, None, "body:email"]
        assert [d.shadow_refused for d in decisions][:3] == [[], [], [("mail-in", "global")]]
        ip_rule = route.limits[1]
        applied = [a for a in limiter._applied("mail-in", (ip_rule,), "public", "10.0.0.9",
                                               {}, {})]
        stats = await MovingWindowRateLimiter(storage).get_window_stats(
            parse("5/minute"), *applied[0].ids)
        assert stats.remaining == 2  # three hits, and none from the refused fourth
        await limiter.aclose()

    asyncio.run(go())
