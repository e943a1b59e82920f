"""The worker's one Redis connection (or none), and every call to it bounded.

Limits, Reusely's cooldowns, idempotency keys and the shared cache all keep
their state in the Redis named by GATEWAY_REDIS_URL; this module owns the one
client they share and is the only place that catches redis-py's and `limits`'
exceptions, translating them into `StoreError(kind)`.

**Busy is not down.** A plain socket timeout is a wall-clock timer on the
event loop. Under a flood of large bodies the loop runs late, and uvloop runs
timers before it polls sockets, so a short timeout fires while Redis's reply
already sits in the socket: a healthy Redis then looks "down" exactly when an
attacker is busiest, and `on_error: allow` would forward uncounted. So every
call here is bounded by the worker's *attention* instead: a watchdog ticks
every `budget / TICKS` seconds of loop time and counts one tick per wake-up,
however late it woke (the lateness is time the worker spent on other
requests). Only after TICKS ticks -- each of which gave the loop a chance to
read the reply -- is the call given up as `timeout`. A worker too busy to hear
an answer within `HARD_SECONDS` of wall-clock time gives up as `busy`, which
features must treat as a refusal whatever `on_error` says. Connection-level
failures (refused, reset, closed) come back at once as `unreachable`.
redis-py's own read timeout is off (it would be one more wall-clock timer per
command, and would fire first); its connect timeout is HARD_SECONDS.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from limits.aio.storage import MemoryStorage, Storage
from limits.errors import StorageError
from limits.storage import storage_from_string
from redis.asyncio import RedisCluster
from redis.exceptions import RedisClusterException, RedisError

from gateway.errors import StoreError

log = logging.getLogger("gateway.store")
T = TypeVar("T")
TICKS = 10
HARD_SECONDS = 3.0
IN_FLIGHT = 64  # calls of one worker at Redis at once (and so connections it opens)


class _Watchdog:
    """Cancels `task` once the budget of attention (or the hard wall-clock bound) is spent."""

    __slots__ = ("_budget", "_handle", "_loop", "_start", "_step", "_task", "attended", "expired")

    def __init__(self, loop: asyncio.AbstractEventLoop, task: asyncio.Task[Any],
                 budget: float) -> None:
        self._loop, self._task, self._budget = loop, task, budget
        self._step = budget / TICKS
        self._start = loop.time()
        self.attended = 0.0
        self.expired: str | None = None
        self._handle = loop.call_later(self._step, self._tick)

    def _tick(self) -> None:
        self.attended += self._step  # one tick per wake-up, however late it came
        if self._loop.time() - self._start >= HARD_SECONDS:
            self.expired = "busy"
        elif self.attended >= self._budget - 1e-9:
            self.expired = "timeout"
        if self.expired:
            self._task.cancel()
        else:
            self._handle = self._loop.call_later(self._step, self._tick)

    def cancel(self) -> None:
        self._handle.cancel()


async def attend(call: Awaitable[T], budget: float) -> T:
    """Await `call`, giving up after `budget` seconds of this worker's own attention.

    Raises StoreError("timeout") or StoreError("busy") when it gives up; any other
    cancellation passes through untouched.
    """
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    watchdog = _Watchdog(loop, task, budget)
    try:
        return await call
    except BaseException as exc:
        if watchdog.expired is None:
            raise
        # The watchdog cancelled this task; undo its request. redis-py may turn the
        # cancellation into an error of its own while it drops the connection.
        if task.uncancel() > 0 and isinstance(exc, asyncio.CancelledError):
            raise  # cancelled by someone else too: let that win
        raise StoreError(watchdog.expired) from None
    finally:
        watchdog.cancel()


def _redis_of(storage: Storage) -> tuple[Any, Callable[[str], str] | None, list[Any]]:
    """(redis-py client, key prefixer, clients to close) behind a `limits` storage.

    The one place that reads `limits`' undocumented internals: its Redis
    storages keep a bridge whose `storage` is the redis-py client (Sentinel
    adds `storage_replica` and `sentinel`), and whose `prefixed_key` names keys
    the way its strategies do. Checked against limits 5.8.0 (pinned <6).
    """
    bridge = getattr(storage, "bridge", None)
    client = getattr(bridge, "storage", None)
    closers = [c for c in (getattr(bridge, n, None) for n in ("storage", "storage_replica",
                                                               "sentinel")) if c is not None]
    prefixer = getattr(bridge, "prefixed_key", None)
    return client, prefixer, closers


def _overloaded(exc: BaseException) -> bool:
    """A failure that is load, not an outage: Redis refusing new clients, no file left."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in (errno.EMFILE, errno.ENFILE):
            return True
        if "max number of clients" in str(seen).lower():
            return True
        seen = seen.__cause__ or seen.__context__
    return False


class Store:
    """What limits, cooldowns, idempotency and the cache keep, and how they reach it.

    `redis` is the redis-py client (`None` without GATEWAY_REDIS_URL: every
    feature then keeps its state in this process's memory); `limits` is the
    `limits` storage over the same connections, for the strategies that run
    on memory and on Redis Cluster; `scripts` says whether multi-key Lua
    scripts may run (not on Cluster, where keys live in different slots).
    """

    def __init__(self, redis_url: str | None, *, budget: float,
                 storage: Storage | None = None) -> None:
        self.budget = budget
        if storage is None:
            storage = MemoryStorage() if not redis_url else self._connect(redis_url)
        self.limits: Storage = storage
        self.redis, prefixer, self._closers = _redis_of(storage)
        self.scripts = self.redis is not None and not isinstance(self.redis, RedisCluster)
        self._prefix = prefixer or (lambda key: key)
        self._local: dict[str, float] = {}  # markers with a deadline, without Redis
        self._turns = asyncio.Semaphore(IN_FLIGHT)

    @staticmethod
    def _connect(url: str) -> Storage:
        options: dict[str, Any] = {"socket_timeout": None,  # limits' stub says float
                                   "socket_connect_timeout": HARD_SECONDS}
        storage = storage_from_string("async+" + url, implementation="redispy",
                                      wrap_exceptions=True, **options)
        assert isinstance(storage, Storage)
        return storage

    def key(self, name: str) -> str:
        """A key name as `limits` writes it, so both paths count in the same windows."""
        return self._prefix(name)

    async def run(self, call: Awaitable[T]) -> T:
        """Await one call to Redis (or the memory storage), bounded; failures -> StoreError.

        At most IN_FLIGHT calls of this worker are at Redis at once, so a burst
        cannot open a connection per request until Redis refuses new clients.
        Waiting for a turn is the worker's own business, not Redis's: it is not
        counted against the attention budget, only bounded by HARD_SECONDS
        (then `busy`).
        """
        if self.redis is None:
            return await self._attended(call)
        if self._turns.locked():  # no turn free: wait for one, bounded
            try:
                async with asyncio.timeout(HARD_SECONDS):
                    await self._turns.acquire()
            except TimeoutError:
                close = getattr(call, "close", None)
                if close is not None:
                    close()  # a coroutine that will never be awaited
                log.warning("redis calls of this worker queued for %s s: busy", HARD_SECONDS)
                raise StoreError("busy") from None
        else:  # a free turn is taken at once, so no timer is armed for it
            await self._turns.acquire()
        try:
            return await self._attended(call)
        finally:
            self._turns.release()

    async def _attended(self, call: Awaitable[T]) -> T:
        try:
            return await attend(call, self.budget)
        except (StorageError, RedisError, RedisClusterException, OSError) as exc:
            # OSError covers ConnectionError (refused, reset) and a socket TimeoutError;
            # RedisClusterException (no node reachable, slots not covered) is no RedisError.
            kind = "busy" if _overloaded(exc) else "unreachable"
            log.warning("redis could not answer (%s): %s", kind, type(exc).__name__)
            raise StoreError(kind) from exc
        except StoreError as exc:
            log.warning("redis did not answer in time (%s)", exc.kind)
            raise

    async def set_ttl(self, name: str, seconds: float) -> None:
        """A marker that lives `seconds` (replacing any), in Redis or in this process."""
        if self.redis is None:
            now = time.monotonic()
            if len(self._local) > 10_000:  # drop the expired ones now and then
                self._local = {k: d for k, d in self._local.items() if d > now}
            self._local[name] = now + seconds
            return
        await self.redis.set(self.key(name), b"1", px=max(1, int(seconds * 1000)))

    async def ttl_ms(self, name: str) -> int:
        """Milliseconds the marker has left; 0 when there is none."""
        if self.redis is None:
            left = self._local.get(name, 0.0) - time.monotonic()
            return max(0, int(left * 1000))
        return max(0, int(await self.redis.pttl(self.key(name))))

    async def ready(self) -> bool:
        try:
            return bool(await self.run(self.limits.check()))
        except StoreError:
            return False

    async def aclose(self) -> None:
        for client in self._closers:
            close = getattr(client, "aclose", None)
            if close is not None:
                await close()
