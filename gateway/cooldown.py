"""Reusely's own 429, remembered: no more requests of the same kind until it said so.

When Reusely answers 429, its answer passes through unchanged, and the gateway
stops sending the same kind of request until Reusely's `Retry-After` has
passed (seconds or an HTTP date; 60 s when absent or unreadable; at most
`MAX_SECONDS`; `0` or a date in the past: no cooldown). Meanwhile such
requests get 429 `upstream_rate_limited` and are not forwarded.

"The same kind": on a route with `body:` or `header:` limits, the route and
the tuple of those fields' normalised values (an absent field is part of the
tuple: Reusely counts mail-in per email); on any other route, the route as a
whole. Keys are `limitkeys.LimitKeys.cooldown`: HMACs, never a value in clear.

Where the lookup costs nothing extra:
- keyed cooldowns ride in the limit script the route already runs
  (`LimitCheck.full(values, cooldowns=...)`);
- route-wide cooldowns live in each worker's memory: the worker that saw the
  429 knows at once, and every worker reads the route-wide keys from Redis
  once per `POLL_SECONDS` (one pipelined call for all routes), so a catalog
  GET never waits on Redis for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from email.utils import parsedate_to_datetime

from gateway.config import Route
from gateway.errors import StoreError, UpstreamRateLimited
from gateway.limitkeys import LimitKeys
from gateway.metrics import Metrics
from gateway.settings import Settings
from gateway.store import Store

log = logging.getLogger("gateway.cooldown")
DEFAULT_SECONDS = 60
MAX_SECONDS = 3600
POLL_SECONDS = 1.0


def retry_after_seconds(value: bytes | None, *, now: float | None = None) -> int:
    """How long Reusely asked the gateway to wait: 0 means no cooldown."""
    if value is None:
        return DEFAULT_SECONDS
    text = value.decode("latin-1").strip()
    if text.isdigit():
        return min(int(text), MAX_SECONDS)
    try:
        when = parsedate_to_datetime(text).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return DEFAULT_SECONDS
    left = when - (time.time() if now is None else now)
    return 0 if left <= 0 else min(math.ceil(left), MAX_SECONDS)


class Cooldowns:
    def __init__(self, settings: Settings, store: Store, keys: LimitKeys,
                 metrics: Metrics) -> None:
        self._store, self._keys, self._metrics = store, keys, metrics
        self._fields = {r.name: tuple(rule.per for rule in r.limits
                                      if rule.kind in ("body", "header"))
                        for r in settings.policy.routes}
        self._wide = tuple(name for name, fields in self._fields.items() if not fields)
        self._until: dict[str, float] = {}  # route-wide cooldowns: route -> monotonic deadline
        self._poller: asyncio.Task[None] | None = None

    def keyed(self, route: Route, values: dict[str, str]) -> tuple[str, ...]:
        """The cooldown key a keyed route's limit check looks up; () for other routes."""
        fields = self._fields[route.name]
        if not fields:
            return ()
        return (self._keys.cooldown(route.name, tuple(values.get(f) for f in fields)),)

    def check_route(self, route: Route) -> None:
        """429 `upstream_rate_limited` while a route-wide cooldown runs (memory only)."""
        until = self._until.get(route.name)
        if until is None:
            return
        left = until - time.monotonic()
        if left <= 0:
            del self._until[route.name]
            return
        self._metrics.rate_limited.labels(route.name, "upstream").inc()
        raise UpstreamRateLimited(max(1, math.ceil(left)))

    def holds(self, route: Route) -> bool:
        """Whether a route-wide cooldown runs, counting nothing: the cache may still answer."""
        until = self._until.get(route.name)
        return until is not None and until > time.monotonic()

    async def start(self, route: Route, values: dict[str, str], retry_after: bytes | None) -> None:
        """Reusely answered 429: remember it for every worker and replica."""
        seconds = retry_after_seconds(retry_after)
        if seconds <= 0:
            return
        keyed = self.keyed(route, values)
        name = keyed[0] if keyed else self._keys.cooldown(route.name, ())
        if not keyed:
            self._until[route.name] = time.monotonic() + seconds
        log.warning("Reusely answered 429 on route %s: holding requests like it for %d s",
                    route.name, seconds)
        try:
            await self._store.run(self._store.set_ttl(name, seconds))
        except StoreError:
            self._metrics.limiter_errors.inc()  # this worker still honours a route-wide one

    def begin_polling(self) -> None:
        if self._store.redis is not None and self._wide and self._poller is None:
            self._poller = asyncio.get_running_loop().create_task(self._poll())

    async def _poll(self) -> None:
        names = [self._keys.cooldown(route, ()) for route in self._wide]
        while True:
            await asyncio.sleep(POLL_SECONDS)
            try:
                pipe = self._store.redis.pipeline(transaction=False)
                for name in names:
                    pipe.pttl(self._store.key(name))
                ttls = await self._store.run(pipe.execute())
            except StoreError:
                continue
            now = time.monotonic()
            for route, ttl in zip(self._wide, ttls, strict=True):
                if isinstance(ttl, int) and ttl > 0:
                    self._until[route] = max(self._until.get(route, 0.0), now + ttl / 1000)

    async def aclose(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
