"""Rate limits: which windows a request counts in, the check, and what a failure means.

Every limit is a moving window, so `5/hour` never lets 6 through in any 60
minutes. A request's windows are checked together and consumed only if none
refuses, so a refusal by one does not use up the others. On Redis one Lua
script call (`windowscript`) decides them all, together with Reusely's
cooldowns for the request's keyed values; on memory and on Redis Cluster,
`limits`' own strategy reads every window and then hits each, and a hit that
loses a race refuses the request.

A request's check runs in up to two steps (`LimitCheck`):

- `cheap()`, on routes with `body:` limits only: its `ip`, `client` and
  `global` windows (and the client's own) are read without consuming before
  the body is read, so a caller they refuse costs no body read or parse;
- `full(values, cooldowns)`: every window, consumed, once the body's values
  are known.

Redis failures (`StoreError`) are decided here and only here, once per
request: `unreachable` and `timeout` follow the route's `on_error` (allow:
the request passes uncounted, without X-RateLimit headers; deny: 503);
`busy` -- the worker itself could not hear Redis for seconds -- is a 503
whatever `on_error` says. Each failed check counts once in
`gateway_rate_limiter_errors_total`, under allow and deny alike.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass

from limits import RateLimitItem
from limits.aio.strategies import MovingWindowRateLimiter
from limits.util import WindowStats

from gateway.config import Client, LimitRule, Route
from gateway.errors import (
    Headers,
    RateLimited,
    RateLimiterUnavailable,
    StoreError,
    UpstreamRateLimited,
)
from gateway.limitkeys import LimitKeys, normalise, policy_name
from gateway.metrics import Metrics
from gateway.settings import Settings
from gateway.store import Store
from gateway.windowscript import SCRIPT, arguments, windows

log = logging.getLogger("gateway.limiter")


@dataclass(frozen=True, slots=True)
class Limit:
    """One window of one rule, as precomputed for a route or a client.

    What every check needs of it is worked out once here, not per request: its
    expiry, its entry in `RateLimit-Policy`, and its Redis key around the
    request's identifiers (`key`).
    """

    scope: str  # the route name, or "client:<name>"
    rule: LimitRule
    item: RateLimitItem
    name: str  # its name in the RateLimit headers
    cheap: bool  # ip, client or global: known before the body is read
    expiry: int  # seconds
    policy: str  # its item of RateLimit-Policy
    key_head: str  # `item.key_for(*ids)` is key_head + "/".join(ids) + key_tail
    key_tail: str

    def key(self, ids: tuple[str, ...]) -> str:
        """`self.item.key_for(*ids)` for the (non-empty) ids of a `Counted`, without
        building its parts again."""
        return self.key_head + "/".join(ids) + self.key_tail


def _limit(scope: str, rule: LimitRule, item: RateLimitItem) -> Limit:
    expiry = item.get_expiry()
    name = policy_name(scope, rule, expiry, len(rule.items) > 1)
    bare = item.key_for()  # "<namespace>/<amount>/<multiples>/<granularity>"
    return Limit(scope, rule, item, name, rule.kind in ("ip", "client", "global"), expiry,
                 f'"{name}";q={item.amount};w={expiry}', item.namespace + "/",
                 bare[len(item.namespace):])


def limits_of(scope: str, rules: tuple[LimitRule, ...]) -> tuple[Limit, ...]:
    return tuple(_limit(scope, rule, item) for rule in rules for item in rule.items)


@dataclass(frozen=True, slots=True)
class Counted:
    """A limit applied to this request: what it counts the request as."""

    limit: Limit
    ids: tuple[str, ...]  # the `limits` key parts: ("rg", scope, per, identity)


@dataclass(frozen=True, slots=True)
class Seen:
    """A window as found, and whether this request was counted in it."""

    counted: Counted
    stats: WindowStats
    hit: bool


class Limiter:
    def __init__(self, settings: Settings, store: Store, keys: LimitKeys,
                 metrics: Metrics) -> None:
        self._store = store
        self._keys = keys
        self._metrics = metrics
        self._strategy = MovingWindowRateLimiter(store.limits)
        self._script = store.redis.register_script(SCRIPT) if store.scripts else None
        self._routes = {r.name: limits_of(r.name, r.limits) for r in settings.policy.routes}
        self._clients = {c.name: limits_of(f"client:{c.name}", c.limits)
                         for c in settings.policy.clients}

    def begin(self, route: Route, client: Client | None, *, ip_key: str,
              headers: dict[bytes, bytes]) -> LimitCheck | None:
        """The check of one request, or None when no limit counts it.

        `header:` limits read their values from `headers` here; `body:` values
        come later, once the body is read (`LimitCheck.full`).
        """
        limits = self._routes[route.name]
        if client is not None and client.limits:
            limits = limits + self._clients[client.name]
        if not limits:
            return None
        return LimitCheck(self, route, limits, client.name if client else "public", ip_key,
                          header_values(limits, headers))

    def route_limits(self, route: str) -> tuple[Limit, ...]:
        """A route's windows, as every check counts them (read-only: for quotas)."""
        return self._routes[route]

    def client_limits(self, client: str) -> tuple[Limit, ...]:
        """A client's own windows, counted across routes (read-only: for quotas)."""
        return self._clients.get(client, ())

    def counted(self, limits: tuple[Limit, ...], *, client: str, ip_key: str,
                values: dict[str, str] | None) -> list[Counted]:
        """The limits that count this request; keyed ones only when their value is present."""
        out = []
        for limit in limits:
            if values is None and not limit.cheap:
                continue
            identity = self._keys.identity(limit.rule, client=client, ip_key=ip_key,
                                           values=values or {})
            if identity is not None:
                out.append(Counted(limit, ("rg", limit.scope, limit.rule.per, identity)))
        return out

    async def windows(self, counted: list[Counted], *, consume: bool,
                      cooldowns: tuple[str, ...] = ()) -> tuple[list[Seen], int]:
        """Each window (consumed when asked and nothing refuses), and the cooldown left (ms)."""
        now = time.time()
        if self._script is not None:
            key = self._store.key
            reply = await self._script(
                keys=[key(c.limit.key(c.ids)) for c in counted] + [key(k) for k in cooldowns],
                args=arguments(now, [(c.limit.item.amount, c.limit.expiry, c.limit.rule.shadow)
                                     for c in counted], consume=consume))
            found, cooldown = windows(reply)
            return [Seen(c, WindowStats(w.oldest + c.limit.expiry,
                                        c.limit.item.amount - w.count), w.hit)
                    for c, w in zip(counted, found, strict=True)], cooldown
        strategy = self._strategy
        stats = await asyncio.gather(*(strategy.get_window_stats(c.limit.item, *c.ids)
                                       for c in counted))
        cooldown = await self._cooldown_left(cooldowns)
        blocked = cooldown > 0 or any(s.remaining < 1 for c, s in zip(counted, stats, strict=True)
                                      if not c.limit.rule.shadow)
        if not consume or blocked:
            return [Seen(c, s, False) for c, s in zip(counted, stats, strict=True)], cooldown
        hits = await asyncio.gather(*(strategy.hit(c.limit.item, *c.ids) for c in counted))
        return [Seen(c, s, h) for c, s, h in zip(counted, stats, hits, strict=True)], cooldown

    async def _cooldown_left(self, cooldowns: tuple[str, ...]) -> int:
        """Milliseconds left of the longest cooldown, outside the script (Cluster, memory)."""
        return max([0, *[await self._store.ttl_ms(k) for k in cooldowns]])

    def failed(self, route: Route, exc: StoreError) -> None:
        """A check Redis could not answer: count it; refuse unless `on_error: allow` may pass."""
        self._metrics.limiter_errors.inc()
        if exc.kind == "busy" or route.on_error == "deny":
            raise RateLimiterUnavailable() from exc

    def refused(self, route: Route, per: str) -> None:
        self._metrics.rate_limited.labels(route.name, per).inc()

    def shadow(self, route: Route, seen: list[Seen]) -> None:
        reported: set[tuple[str, str]] = set()
        for s in seen:
            c = s.counted.limit
            if c.rule.shadow and not s.hit and s.stats.remaining < 1 \
                    and (c.scope, c.rule.per) not in reported:
                reported.add((c.scope, c.rule.per))
                self._metrics.shadow_limited.labels(route.name, c.rule.per).inc()
                log.info("shadow limit %s (%s) on route %s would refuse this request",
                         c.rule.per, c.scope, route.name)

    def observe(self, seconds: float) -> None:
        self._metrics.limiter_duration.observe(seconds)

    async def aclose(self) -> None:
        await self._store.aclose()


def header_values(limits: tuple[Limit, ...], headers: dict[bytes, bytes]) -> dict[str, str]:
    """The normalised values of the `header:` limits among `limits`, when sent."""
    values: dict[str, str] = {}
    for limit in limits:
        field = limit.rule.field
        if limit.rule.kind == "header" and field and field.encode() in headers:
            value = normalise(field, headers[field.encode()].decode("latin-1"))
            if value is not None:
                values[limit.rule.per] = value
    return values


class LimitCheck:
    """One request's limit check: an optional cheap read, then the consuming one."""

    __slots__ = ("_client", "_headers", "_ip_key", "_limiter", "_limits", "_route",
                 "counted_headers", "skipped")

    def __init__(self, limiter: Limiter, route: Route, limits: tuple[Limit, ...], client: str,
                 ip_key: str, header_values: dict[str, str]) -> None:
        self._limiter, self._route, self._limits = limiter, route, limits
        self._client, self._ip_key, self._headers = client, ip_key, header_values
        self.skipped = False  # Redis failed and on_error allowed the request uncounted
        # The headers `header:` limits count (only their counted copy goes to Reusely).
        self.counted_headers = frozenset(lim.rule.field.encode() for lim in limits
                                         if lim.rule.kind == "header" and lim.rule.field)

    async def cheap(self) -> Headers:
        """Refuse (429) now if a limit known before the body is full; consume nothing.

        The headers of those limits as they stand, for an answer refused before
        the counting check (a body refused with 400, 413 or 415)."""
        counted = self._limiter.counted(self._limits, client=self._client, ip_key=self._ip_key,
                                        values=None)
        if not counted:
            return []
        seen, _ = await self._run(counted, consume=False, cooldowns=())
        return self._verdict(seen, 0, consumed=False, final=False)

    def values(self, body_values: dict[str, str]) -> dict[str, str]:
        """Every keyed value of the request: the body's and the headers'."""
        return {**self._headers, **body_values} if body_values else self._headers

    async def full(self, values: dict[str, str], cooldowns: tuple[str, ...] = ()) -> Headers:
        """Count the request in every window that applies; its headers, or 429/503.

        `values` are the request's keyed values (`values()`); `cooldowns` the keys of
        Reusely's cooldowns that would refuse it.
        """
        if self.skipped:
            return []
        counted = self._limiter.counted(self._limits, client=self._client, ip_key=self._ip_key,
                                        values=values)
        if not counted and not cooldowns:
            return []
        seen, cooldown = await self._run(counted, consume=True, cooldowns=cooldowns)
        return self._verdict(seen, cooldown, consumed=True, final=True)

    async def _run(self, counted: list[Counted], *, consume: bool,
                   cooldowns: tuple[str, ...]) -> tuple[list[Seen], int]:
        limiter = self._limiter
        started = time.perf_counter()
        try:
            return await limiter._store.run(limiter.windows(counted, consume=consume,
                                                            cooldowns=cooldowns))
        except StoreError as exc:
            limiter.failed(self._route, exc)
            self.skipped = True
            return [], 0
        finally:
            limiter.observe(time.perf_counter() - started)

    def _verdict(self, seen: list[Seen], cooldown_ms: int, *, consumed: bool,
                 final: bool) -> Headers:
        limiter, now = self._limiter, time.time()
        enforced = [s for s in seen if not s.counted.limit.rule.shadow]
        full = [s for s in enforced if s.stats.remaining < 1 and not s.hit]
        if full:
            retry = max(1, max(math.ceil(s.stats.reset_time - now) for s in full))
            per = full[0].counted.limit.rule.per
            limiter.refused(self._route, per)
            raise RateLimited(retry, per=per, headers=headers(enforced, now, consumed=False))
        if cooldown_ms > 0:
            limiter.refused(self._route, "upstream")
            raise UpstreamRateLimited(max(1, math.ceil(cooldown_ms / 1000)),
                                      headers=headers(enforced, now, consumed=False))
        lost = [s for s in enforced if consumed and not s.hit]
        if lost:  # the two-phase path lost a race for the last slot
            limit = lost[0].counted.limit
            limiter.refused(self._route, limit.rule.per)
            raise RateLimited(max(1, math.ceil(limit.item.get_expiry() / limit.item.amount)),
                              per=limit.rule.per, headers=headers(enforced, now, consumed=False))
        if final:
            limiter.shadow(self._route, seen)
        return headers(enforced, now, consumed=consumed)


def headers(enforced: list[Seen], now: float, *, consumed: bool) -> Headers:
    """X-RateLimit-* for the tightest limit, and the IETF RateLimit fields for all.

    The tightest is the one with the fewest remaining, the longer window on a tie.
    """
    if not enforced:
        return []
    rows = []
    for s in enforced:
        limit = s.counted.limit
        remaining = max(0, s.stats.remaining - (1 if consumed else 0))
        if consumed and s.stats.remaining == limit.item.amount:
            reset = limit.expiry  # this request is the oldest in its window
        else:
            reset = max(0, math.ceil(s.stats.reset_time - now))
        rows.append((remaining, -limit.expiry, limit, reset))
    remaining, _, tight, reset = min(rows, key=lambda r: (r[0], r[1]))
    policy = ", ".join([lim.policy for _, _, lim, _ in rows])
    return [
        (b"x-ratelimit-limit", str(tight.item.amount).encode()),
        (b"x-ratelimit-remaining", str(remaining).encode()),
        (b"x-ratelimit-reset", str(reset).encode()),
        (b"ratelimit-policy", policy.encode()),
        (b"ratelimit", f'"{tight.name}";r={remaining};t={reset}'.encode()),
    ]
