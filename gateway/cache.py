"""A small response cache for `cache_ttl` routes (catalog reads).

Per worker, in memory, bounded in bytes with least-recently-used eviction.
Only what is safe to share between callers is kept: a GET answered 200 with
a Content-Length of at most `MAX_ENTRY_BYTES`, no `Set-Cookie` (already
stripped), no `Cache-Control: private / no-store / no-cache`, and no `Vary`
beyond `Accept-Encoding` (which is part of the key). The key is the route and
the raw target (path and query, byte for byte): every caller of a route gets
the same credentials, so the same answer.

Why not Redis: a hit here costs microseconds and no network; the catalog is
small and read-mostly, so each worker warming its own copy costs Reusely a
handful of requests per TTL, while a Redis hit would add a round trip to
every read.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass

MAX_ENTRY_BYTES = 256 * 1024
_UNCACHEABLE = (b"private", b"no-store", b"no-cache")


@dataclass(frozen=True)
class Cached:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes
    stored_at: float
    expires_at: float


def cacheable(status: int, headers: list[tuple[bytes, bytes]]) -> int | None:
    """The body length to buffer if this response may be cached, else None."""
    if status != 200:
        return None
    length = None
    for name, value in headers:
        if name == b"content-length" and value.isdigit():
            length = int(value)
        elif _private(name, value.lower()):
            return None
    if length is None or length > MAX_ENTRY_BYTES:
        return None
    return length


def _private(name: bytes, value: bytes) -> bool:
    if name == b"cache-control":
        return any(v in value for v in _UNCACHEABLE)
    if name == b"vary":
        return any(v.strip() not in (b"accept-encoding", b"origin") for v in value.split(b","))
    return False


class ResponseCache:
    def __init__(self, max_bytes: int = 32 * 1024 * 1024) -> None:
        self._entries: OrderedDict[tuple[str, bytes, bytes], Cached] = OrderedDict()
        self._bytes = 0
        self._max = max_bytes

    def get(self, key: tuple[str, bytes, bytes]) -> Cached | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.expires_at <= time.monotonic():
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return entry

    def put(self, key: tuple[str, bytes, bytes], status: int,
            headers: list[tuple[bytes, bytes]], body: bytes, ttl: int) -> None:
        now = time.monotonic()
        if key in self._entries:
            self._drop(key)
        self._entries[key] = Cached(status, headers, body, now, now + ttl)
        self._bytes += len(body)
        while self._bytes > self._max and self._entries:
            self._drop(next(iter(self._entries)))

    def _drop(self, key: tuple[str, bytes, bytes]) -> None:
        entry = self._entries.pop(key)
        self._bytes -= len(entry.body)
