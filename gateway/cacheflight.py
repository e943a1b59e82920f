"""One request per miss: the worker's copies, single-flight, the shared lock, stale copies.

A GET on a `cache_ttl` route, once the limits passed, asks in this order,
stopping at the first that answers:

    Copies.get       the worker's own copy: a hit (or briefly a stale copy, see below);
                     a dict lookup, no await, no Redis call
    flight           another request of this worker asks already: wait for what it
                     learns (at most the route's read timeout), and ask Redis nothing
    entries.lookup   one Redis call: the entry if fresh (a hit); else the lock, taken
                     by this request, which then asks Reusely for everyone (`Fill`);
                     or held by another: ask again with backoff (`BACKOFF_FIRST`
                     doubling to `BACKOFF_MAX`) until its entry appears, it says its
                     answer could not be kept (then each goes to Reusely itself), or
                     the read timeout has passed since this request arrived (then it
                     serves a stale copy within stale_if_error: the one request has
                     timed out, as far as it can tell; else it goes itself). A lock
                     lives for the route's read timeout, so a holder that died delays
                     the others by no more than that.

Stale copies (RFC 5861), each a window past the entry's freshness:
- `stale_while_revalidate`: an expired entry is served at once, marked
  stale, while one request (the lock's) refreshes it in the background.
- `stale_if_error`: the request that asks Reusely serves the expired entry
  when Reusely fails (connection error, timeout, 5xx); its `Fill.fail`
  leaves a mark (`MARK_SECONDS`) so that the others serve it at once rather
  than all trying, and a flag that Reusely is failing for this key: while it
  is set, the one request that tries again does so in the background, and
  everybody gets the stale copy at once. Reusely's next answer that is not a
  failure clears it.
A stale copy served at once is also kept in the worker's copies for
`MARK_SECONDS`, so that an outage costs each worker one Redis read per key
and second.

Without Redis the same happens in the worker's memory (`MemoryEntries`),
shared by its requests only.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from gateway.cache import HIT, STALE, Copies, Entry, Key
from gateway.cachestore import (
    FAILED,
    FRESH,
    LOCKED,
    NO_LOCK,
    TAKEN,
    Entries,
    MemoryEntries,
    RedisEntries,
    mark,
)
from gateway.config import Route
from gateway.errors import StoreError
from gateway.limitkeys import LimitKeys
from gateway.store import Store

log = logging.getLogger("gateway.cache")
MISS, BYPASS = b"miss", b"bypass"
LOCAL_SECONDS = 5.0  # with Redis: a worker's copy lives at most this long (a purge's delay)
MARK_SECONDS = 1.0
BACKOFF_FIRST, BACKOFF_MAX = 0.005, 0.05
_GO, _RETRY = b"go", b"retry"  # what a flight tells its followers, besides HIT, STALE, BYPASS


@dataclass(slots=True)
class Lookup:
    """What the cache has for a request.

    status HIT or STALE: serve `entry` (and with a `fill`, refresh it in the
    background); MISS: ask Reusely, `entry` is what to serve should it fail
    (stale_if_error), `fill` settles the ask for everyone; BYPASS: Redis could
    not answer, ask Reusely and keep nothing.
    """

    status: bytes
    entry: Entry | None = None
    fill: Fill | None = None


@dataclass(slots=True)
class _Flight:
    done: asyncio.Future[tuple[bytes, Entry | None]]
    stale: Entry | None = None


@dataclass(slots=True)
class Fill:
    """This request asks Reusely for the key, for everyone: the first of keep, fail,
    give_up or abandon settles it (the lock and the requests waiting on it); later
    calls do nothing."""

    cache: ResponseCache
    route: Route
    key: Key
    name: str
    token: str  # NO_LOCK: the request asks on its own, without the lock
    stale: Entry | None  # served by the waiters if Reusely fails (stale_if_error)
    flight: _Flight | None = None
    settled: bool = field(default=False)

    async def keep(self, entry: Entry) -> bool:
        """Keep Reusely's answer for everyone; False when Redis could not take it."""
        if self.settled:
            return False
        self.settled = True
        cache = self.cache
        cache.resolve(self, HIT, entry)
        try:
            await cache.entries.store(self.name, entry, self.token, cache.window_ms(self.route))
        except StoreError:
            return False
        cache.copies.put(self.key, entry, min(entry.fresh_until, cache.clock() +
                                              cache.local_seconds))
        return True

    async def fail(self) -> None:
        """Reusely failed: waiters serve the stale entry if they may, else ask themselves."""
        if self.settled:
            return
        self.settled = True
        self.cache.resolve(self, STALE if self.stale is not None else _GO, self.stale)
        await self._release("F", failing=True)

    async def give_up(self) -> None:
        """Reusely's answer may not be kept, or was not asked for: the others ask themselves."""
        if self.settled:
            return
        self.settled = True
        self.cache.resolve(self, _GO, self.stale)
        await self._release("P", failing=False)

    async def abandon(self) -> None:
        """This request went away: the lock is freed and the others ask again."""
        if self.settled:
            return
        self.settled = True
        self.cache.resolve(self, _RETRY, None)
        await self._release("")

    async def _release(self, kind: str, *, failing: bool | None = None) -> None:
        if self.token == NO_LOCK:
            return
        cache = self.cache
        mark_ms = int(MARK_SECONDS * 1000)
        marked = mark(kind, int(cache.clock() * 1000) + mark_ms, self.token) if kind else ""
        try:
            await cache.entries.release(self.name, self.token, marked, mark_ms, failing)
        except StoreError:
            log.warning("could not free a cache lock; it expires on its own")


class ResponseCache:
    """The cache of `cache_ttl` routes: the worker's copies in front of the shared entries."""

    def __init__(self, store: Store, keys: LimitKeys, *,
                 clock: Callable[[], float] = time.time) -> None:
        shared = store.redis is not None
        self.entries: Entries = RedisEntries(store) if shared else MemoryEntries()
        self.local_seconds = LOCAL_SECONDS if shared else math.inf
        self.copies = Copies()
        self.clock = clock
        self._keys = keys
        self._flights: dict[Key, _Flight] = {}

    def name(self, key: Key) -> str:
        """The key's name where entries live: nothing of the request readable in it."""
        route, target, encoding = key
        hidden = self._keys.hide("cache", f"{target}\0{encoding.decode('latin-1')}")
        return f"rg/cache/1/{route}/{hidden}"

    @staticmethod
    def window_ms(route: Route) -> int:
        return max(route.stale_if_error or 0, route.stale_while_revalidate or 0) * 1000

    def copy(self, key: Key) -> tuple[Entry, bytes] | None:
        """The worker's own copy and how to serve it (HIT or STALE), or None. No await."""
        return self.copies.get(key, self.clock())

    async def lookup(self, route: Route, key: Key) -> Lookup:
        """Past the worker's copies: wait for this worker's flight, or lead one."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + route.timeout.read
        while True:
            flight = self._flights.get(key)
            if flight is None:
                return await self._lead(route, key, deadline)
            done, _ = await asyncio.wait((flight.done,), timeout=max(0.0, deadline -
                                                                      loop.time()))
            if not done:  # waited long enough: the stale copy, or ask Reusely without the lock
                if flight.stale is not None:
                    return Lookup(STALE, flight.stale)
                return Lookup(MISS, None, self._fill(route, key, NO_LOCK, None))
            status, entry = flight.done.result()
            if status == _RETRY:
                continue
            if status == _GO:
                return Lookup(MISS, entry, self._fill(route, key, NO_LOCK, entry))
            return Lookup(status, entry)

    def resolve(self, fill: Fill, status: bytes, entry: Entry | None) -> None:
        """Tell the requests waiting on this worker for `fill` what came of it."""
        flight, fill.flight = fill.flight, None
        if flight is not None:
            self._land(fill.key, flight, status, entry)

    def _land(self, key: Key, flight: _Flight, status: bytes, entry: Entry | None) -> None:
        if self._flights.get(key) is flight:
            del self._flights[key]
        if not flight.done.done():
            flight.done.set_result((status, entry))

    def _fill(self, route: Route, key: Key, token: str, stale: Entry | None) -> Fill:
        return Fill(self, route, key, self.name(key), token, stale)

    async def _lead(self, route: Route, key: Key, deadline: float) -> Lookup:
        flight = _Flight(asyncio.get_running_loop().create_future())
        self._flights[key] = flight
        found: Lookup | None = None
        try:
            found = await self._ask(route, key, deadline, flight)
            return found
        finally:
            if found is None:  # an error or a cancellation: the others ask again
                self._land(key, flight, _RETRY, None)
            elif found.fill is None or found.fill.flight is not flight:
                status = found.status
                if status == MISS:  # on its own: so are they
                    status = _GO
                self._land(key, flight, status, found.entry)

    async def _ask(self, route: Route, key: Key, deadline: float, flight: _Flight) -> Lookup:
        """Ask the shared entries until there is an answer, the lock, or the wait is over."""
        loop = asyncio.get_running_loop()
        name = self.name(key)
        token = os.urandom(8).hex()
        lock_ms = int(route.timeout.read * 1000)
        window_ms = self.window_ms(route)
        delay = BACKOFF_FIRST
        while True:
            now = self.clock()
            now_ms = int(now * 1000)
            try:
                state, entry, failing = await self.entries.lookup(
                    name, now_ms, mark("L", now_ms + lock_ms, token), lock_ms, window_ms)
            except StoreError:
                return Lookup(BYPASS)
            if state == FRESH:
                assert entry is not None
                self.copies.put(key, entry, min(entry.fresh_until, now + self.local_seconds))
                return Lookup(HIT, entry)
            stale = entry if entry is not None and entry.within(route.stale_if_error, now) \
                else None
            flight.stale = stale
            at_once = entry is not None and (entry.within(route.stale_while_revalidate, now)
                                             or (failing and stale is not None))
            if at_once and state in (TAKEN, LOCKED, FAILED):
                assert entry is not None
                self.copies.put(key, entry, now + MARK_SECONDS, STALE)
                fill = Fill(self, route, key, name, token, stale) if state == TAKEN else None
                return Lookup(STALE, entry, fill)  # a fill: refresh it in the background
            if state == TAKEN:
                fill = Fill(self, route, key, name, token, stale, flight)
                return Lookup(MISS, stale, fill)
            if state == FAILED and stale is not None:
                return Lookup(STALE, stale)
            if state == LOCKED and loop.time() >= deadline and stale is not None:
                return Lookup(STALE, stale)  # the one request took the read timeout: failed
            if state != LOCKED or loop.time() >= deadline:  # PASS, FAILED, or waited enough
                return Lookup(MISS, stale, Fill(self, route, key, name, NO_LOCK, stale))
            await asyncio.sleep(min(delay * random.uniform(0.8, 1.2),
                                    max(0.0, deadline - loop.time())))
            delay = min(delay * 2, BACKOFF_MAX)
