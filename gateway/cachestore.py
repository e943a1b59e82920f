"""Where kept answers live: one Redis hash per cached answer, or this process's memory.

With GATEWAY_REDIS_URL every worker and replica shares one hash per key,
`rg/cache/<format>/<route>/<HMAC of target and Accept-Encoding>` (so nothing
of a caller's request is readable in Redis), with the fields:

    f   fresh until, ms since the epoch (the storing replica's clock)
    e   the kept answer (`cache.pack`: status, headers, body, when Reusely answered)
    l   who is asking Reusely for it:  L<deadline ms>:<token>  a request's lock
                                       P<deadline ms>:<token>  its answer could not be
                                           kept: go to Reusely yourself
                                       F<deadline ms>:<token>  Reusely failed: serve a
                                           stale copy if you may, else go yourself
    x   present while Reusely's last answer for it was a failure

Every call is one Lua script on that one key (so it runs on Redis Cluster
too), through `Store.run`:

    LOOKUP   a fresh entry (state FRESH); else take the lock if nobody holds it
             (TAKEN), or say who does (LOCKED, PASS, FAILED); with any expired
             entry still inside the route's stale windows, and the `x` flag
    STORE    the entry written, our lock freed, `x` cleared
    RELEASE  our lock freed, or replaced by a P or F mark (`x` set on F, cleared on P:
             Reusely answered)

Redis memory is bounded by TTLs: a stored entry lives until its freshness
ends plus the route's longer stale window, and no longer; a lock or mark
keeps the key at least as long as it lasts (the route's read timeout,
`MARK_SECONDS`). Without Redis, `MemoryEntries` plays the same scripts in
this process, bounded in bytes.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from gateway.cache import COPIES_BYTES, Entry, pack, size_of, unpack
from gateway.store import Store

FRESH, TAKEN, LOCKED, PASS, FAILED = range(5)
Found = tuple[int, Entry | None, bool]
"""(state, an entry: fresh, or expired but inside the stale windows, Reusely failing)."""

LOOKUP = """
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local v = redis.call('HMGET', KEYS[1], 'f', 'e', 'l', 'x')
local fresh = tonumber(v[1]) or 0
local entry = v[2]
if entry and fresh > now then
    return {0, entry, 0}
end
if fresh + window < now then
    entry = false
end
local failing = 0
if v[4] then
    failing = 1
end
if v[3] then
    local kind, deadline = string.match(v[3], '^(%u)(%d+):')
    if deadline and tonumber(deadline) > now then
        local state = 3
        if kind == 'L' then
            state = 2
        elseif kind == 'F' then
            state = 4
        end
        return {state, entry, failing}
    end
end
redis.call('HSET', KEYS[1], 'l', ARGV[3])
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[4]) then
    redis.call('PEXPIRE', KEYS[1], ARGV[4])
end
return {1, entry, failing}
"""
STORE = """
redis.call('HSET', KEYS[1], 'f', ARGV[1], 'e', ARGV[2])
redis.call('HDEL', KEYS[1], 'x')
local lock = redis.call('HGET', KEYS[1], 'l')
if lock and string.sub(lock, -#ARGV[3] - 1) == ':' .. ARGV[3] then
    redis.call('HDEL', KEYS[1], 'l')
end
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
"""
RELEASE = """
local lock = redis.call('HGET', KEYS[1], 'l')
if not lock or string.sub(lock, -#ARGV[1] - 1) ~= ':' .. ARGV[1] then
    return 0
end
if ARGV[4] == '1' then
    redis.call('HSET', KEYS[1], 'x', '1')
elseif ARGV[4] == '0' then
    redis.call('HDEL', KEYS[1], 'x')
end
if ARGV[2] == '' then
    redis.call('HDEL', KEYS[1], 'l')
else
    redis.call('HSET', KEYS[1], 'l', ARGV[2])
    if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[3]) then
        redis.call('PEXPIRE', KEYS[1], ARGV[3])
    end
end
return 1
"""
NO_LOCK = "-"  # the token of a request that stores without holding the lock
MEMORY_RECORDS = 100_000  # without Redis: keys remembered (locks and marks included)


def mark(kind: str, deadline_ms: int, token: str) -> str:
    """A lock (`L`) or mark (`P`, `F`) as the `l` field holds it."""
    return f"{kind}{deadline_ms}:{token}"


class RedisEntries:
    """The shared entries, one hash per key, each call one script through `Store.run`."""

    def __init__(self, store: Store) -> None:
        assert store.redis is not None
        self._store = store
        self._lookup = store.redis.register_script(LOOKUP)
        self._write = store.redis.register_script(STORE)
        self._release = store.redis.register_script(RELEASE)

    async def lookup(self, name: str, now_ms: int, lock: str, lock_ms: int,
                     window_ms: int) -> Found:
        """One call: the entry if fresh, else the lock taken (`lock`) or who holds it."""
        found = await self._store.run(self._lookup(keys=[self._store.key(name)],
                                                   args=[now_ms, window_ms, lock, lock_ms]))
        state, data = int(found[0]), found[1]
        entry = unpack(data) if data else None
        if state == FRESH and entry is None:  # written by another format: ask Reusely, keep none
            return PASS, None, False
        return state, entry, bool(found[2])

    async def store(self, name: str, entry: Entry, token: str, window_ms: int) -> None:
        """Write the entry, kept its freshness and stale window, and free our lock."""
        fresh_until_ms = int(entry.fresh_until * 1000)
        keep_ms = max(1, fresh_until_ms - int(entry.stored_at * 1000) + window_ms)
        await self._store.run(self._write(keys=[self._store.key(name)],
                                          args=[fresh_until_ms, pack(entry), token, keep_ms]))

    async def release(self, name: str, token: str, marked: str, mark_ms: int,
                      failing: bool | None) -> None:
        """Free our lock, or replace it by a mark (`marked`, empty: none); set or clear
        the failing flag (None: leave it)."""
        flag = "" if failing is None else "1" if failing else "0"
        await self._store.run(self._release(keys=[self._store.key(name)],
                                            args=[token, marked, mark_ms, flag]))


@dataclass(slots=True)
class _Record:
    entry: Entry | None = None
    lock: str = ""
    failing: bool = False
    until_ms: int = 0  # the record is forgotten after this


def _held(lock: str, now_ms: int) -> str:
    """The kind of a lock or mark still in force ('' when none)."""
    if not lock:
        return ""
    deadline = int(lock[1:lock.index(":")])
    return lock[0] if deadline > now_ms else ""


class MemoryEntries:
    """The same three calls without Redis: this process's entries, bounded in bytes."""

    def __init__(self, max_bytes: int = COPIES_BYTES) -> None:
        self._records: OrderedDict[str, _Record] = OrderedDict()
        self._bytes = 0
        self._max = max_bytes

    async def lookup(self, name: str, now_ms: int, lock: str, lock_ms: int,
                     window_ms: int) -> Found:
        record = self._records.get(name)
        if record is None or record.until_ms <= now_ms:
            if record is not None:
                self._forget(name)
            record = self._records[name] = _Record()
            if len(self._records) > MEMORY_RECORDS:
                self._forget(next(iter(self._records)))
        self._records.move_to_end(name)
        entry = record.entry
        fresh_ms = int(entry.fresh_until * 1000) if entry is not None else 0
        if entry is not None and fresh_ms > now_ms:
            return FRESH, entry, False
        if fresh_ms + window_ms < now_ms:
            entry = None
        held = _held(record.lock, now_ms)
        if held:
            return {"L": LOCKED, "F": FAILED}.get(held, PASS), entry, record.failing
        record.lock = lock
        record.until_ms = max(record.until_ms, now_ms + lock_ms)
        return TAKEN, entry, record.failing

    async def store(self, name: str, entry: Entry, token: str, window_ms: int) -> None:
        record = self._records.get(name) or _Record()
        self._forget(name)
        record.entry, record.failing = entry, False
        if record.lock.endswith(":" + token):
            record.lock = ""
        record.until_ms = int(entry.fresh_until * 1000) + window_ms
        self._records[name] = record
        self._bytes += size_of(entry)
        while self._bytes > self._max and self._records:
            self._forget(next(iter(self._records)))

    async def release(self, name: str, token: str, marked: str, mark_ms: int,
                      failing: bool | None) -> None:
        record = self._records.get(name)
        if record is None or not record.lock.endswith(":" + token):
            return
        if failing is not None:
            record.failing = failing
        record.lock = marked
        if marked:
            deadline = int(marked[1:marked.index(":")])
            record.until_ms = max(record.until_ms, deadline)

    def _forget(self, name: str) -> None:
        record = self._records.pop(name, None)
        if record is not None and record.entry is not None:
            self._bytes -= size_of(record.entry)


Entries = RedisEntries | MemoryEntries
