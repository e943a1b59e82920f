"""A GET on a `cache_ttl` route: served from the cache, or asked of Reusely once for everyone.

In order (`forward.Forwarder` hands such requests here after the limits):

    a body, or Accept-Encoding twice   not the cache's business (X-Cache-Status: bypass)
    cache.copy, cache.lookup           a hit or a stale copy, with Age (cacheflight.py)
    a route-wide cooldown              the stale copy within stale_if_error, if any;
                                       else 429 upstream_rate_limited
    send                               Reusely's answer. A connection error, timeout or
                                       5xx, with an expired copy within stale_if_error:
                                       that copy, marked stale (the failure counted as
                                       for any request)
    keep                               a keepable answer is written for everyone before
                                       the caller gets it (miss); anything else streams
                                       through (bypass), and the waiters ask themselves
    refresh                            stale_while_revalidate, or Reusely failing: the
                                       lock's request serves the stale copy and asks
                                       Reusely in a background task

Every path settles the request's `Fill` (the lock and the requests waiting
on it) exactly once; a request that goes away abandons it, so the others ask
again rather than wait for nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from gateway.cache import STALE, Entry, cacheable, entry_of
from gateway.cacheflight import BYPASS, MISS, Fill, Lookup, ResponseCache
from gateway.cooldown import Cooldowns
from gateway.errors import GatewayError, UpstreamTimeout, UpstreamUnavailable
from gateway.exchange import Exchange
from gateway.metrics import Metrics
from gateway.respond import Receive, Reply
from gateway.upstream import UpstreamResponse

if TYPE_CHECKING:
    from gateway.forward import Outgoing

log = logging.getLogger("gateway.cache")
STATUS = b"x-cache-status"
BYPASSED = (STATUS, BYPASS)
Send = Callable[["Outgoing", Exchange], Awaitable[UpstreamResponse]]


def _repeated(headers: list[tuple[bytes, bytes]], name: bytes) -> bool:
    seen = False
    for n, _ in headers:
        if n == name:
            if seen:
                return True
            seen = True
    return False


class CachedRead:
    def __init__(self, send: Send, cooldowns: Cooldowns, cache: ResponseCache,
                 metrics: Metrics) -> None:
        self._send, self._cooldowns, self._cache, self._metrics = send, cooldowns, cache, metrics
        self._refreshing: set[asyncio.Task[None]] = set()

    async def forward(self, out: Outgoing, receive: Receive, reply: Reply) -> None:
        route = out.route
        if out.content is not None:
            await self._fetch(out, receive, reply, Lookup(BYPASS))
            return
        key = (route.name, out.target, out.accept_encoding)
        found = self._cache.copy(key)
        if found is not None:
            await self._serve(reply, *found)
            return
        if _repeated(out.headers, b"accept-encoding"):
            await self._fetch(out, receive, reply, Lookup(BYPASS))
            return
        look = await self._cache.lookup(route, key)
        if look.status == MISS or look.status == BYPASS:
            await self._fetch(out, receive, reply, look)
            return
        assert look.entry is not None
        if look.fill is not None:
            self._refresh(out, look.fill)
        await self._serve(reply, look.entry, look.status)

    async def _serve(self, reply: Reply, entry: Entry, status: bytes) -> None:
        await reply.whole(entry.status, [*entry.headers, (b"age", entry.age(self._cache.clock())),
                                         (STATUS, status)], entry.body)

    async def _fetch(self, out: Outgoing, receive: Receive, reply: Reply, look: Lookup) -> None:
        fill = look.fill
        try:
            await self._ask(out, receive, reply, fill, look.entry)
        except GatewayError:
            if fill is not None and not fill.settled:
                await fill.give_up()
            raise
        finally:
            if fill is not None and not fill.settled:
                await fill.abandon()

    async def _ask(self, out: Outgoing, receive: Receive, reply: Reply, fill: Fill | None,
                   stale: Entry | None) -> None:
        """Ask Reusely; keep what may be kept, or serve the stale copy if Reusely fails."""
        route, ex = out.route, reply.ex
        if self._cooldowns.holds(route):
            if fill is not None:
                await fill.give_up()
            if stale is not None:
                await self._serve(reply, stale, STALE)
                return
            self._cooldowns.check_route(route)
        try:
            response = await self._send(out, ex)
        except (UpstreamTimeout, UpstreamUnavailable) as exc:
            if fill is not None:
                await fill.fail()
            if stale is None:
                raise
            await self._stale_instead(reply, exc, stale)
            return
        if response.status >= 500:
            if fill is not None:
                await fill.fail()
            if stale is not None:
                await response.discard()
                await self._stale_instead(reply, None, stale)
                return
        elif response.status == 429:
            await self._cooldowns.start(route, out.values, response.header(b"retry-after"))
        length = cacheable(response.status, response.headers) if fill else None
        if fill is None or length is None:
            if fill is not None:
                await fill.give_up()
            ex.headers.append(BYPASSED)
            await reply.stream(response, receive, stall=route.timeout.read)
            return
        try:
            data = await response.read()
        except (UpstreamTimeout, UpstreamUnavailable) as exc:
            await fill.fail()
            if stale is None:
                raise
            await self._stale_instead(reply, exc, stale)
            return
        kept = len(data) == length and await fill.keep(
            entry_of(response.status, response.headers, data, route.cache_ttl or 0,
                     self._cache.clock()))
        await reply.whole(response.status, [*response.headers, (STATUS, MISS if kept else BYPASS)],
                          data)

    async def _stale_instead(self, reply: Reply, exc: UpstreamTimeout | UpstreamUnavailable | None,
                             stale: Entry) -> None:
        """Reusely failed (counted like any failure): the stale copy instead (stale_if_error)."""
        if exc is not None:
            self._metrics.upstream_errors.labels(reply.ex.route, exc.kind).inc()
        await self._serve(reply, stale, STALE)

    def _refresh(self, out: Outgoing, fill: Fill) -> None:
        task = asyncio.get_running_loop().create_task(self._refill(out, fill))
        self._refreshing.add(task)
        task.add_done_callback(self._refreshed)

    def _refreshed(self, task: asyncio.Task[None]) -> None:
        self._refreshing.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("a background cache refresh failed", exc_info=exc)

    async def _refill(self, out: Outgoing, fill: Fill) -> None:
        """Stale served already: ask Reusely in the background and keep what may be kept."""
        route = out.route
        try:
            if self._cooldowns.holds(route):
                return
            response = await self._send(out, Exchange(b"", out.method, ""))
            if response.status == 429:
                await self._cooldowns.start(route, out.values, response.header(b"retry-after"))
            length = cacheable(response.status, response.headers)
            if response.status >= 500 or length is None:
                await response.discard()
                if response.status >= 500:
                    await fill.fail()
                return
            data = await response.read()
            if len(data) == length:
                await fill.keep(entry_of(response.status, response.headers, data,
                                         route.cache_ttl or 0, self._cache.clock()))
        except (UpstreamTimeout, UpstreamUnavailable) as exc:
            self._metrics.upstream_errors.labels(route.name, exc.kind).inc()
            if not fill.settled:
                await fill.fail()
        except GatewayError:
            pass  # e.g. Reusely refused the credentials: logged where it was seen
        finally:
            if not fill.settled:
                await fill.give_up()

    async def aclose(self) -> None:
        """Stop the background refreshes (at shutdown)."""
        for task in list(self._refreshing):
            task.cancel()
        for task in list(self._refreshing):
            with contextlib.suppress(asyncio.CancelledError):
                await task
