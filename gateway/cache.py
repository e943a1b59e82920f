"""The response cache's rules: what may be kept, a kept answer, and a worker's own copies.

What may be kept is what is safe to give every caller of a route (they all
get the same credentials, so the same answer): a GET answered 200 with a
Content-Length of at most `MAX_ENTRY_BYTES` and at most `MAX_HEADERS` header
fields, no `Cache-Control: private`, `no-store` or `no-cache`, and no `Vary`
beyond `Accept-Encoding` (part of the key) and `Origin` (the gateway answers
CORS itself). The headers kept are the
already-cleaned ones callers see (no `Set-Cookie`, no credential, no
credential echo); Reusely's own `Age` is dropped, ours is written on use.
The key is the route, the raw target (path and query, byte for byte) and
`Accept-Encoding`; a request carrying a body, or `Accept-Encoding` twice
(Reusely might choose by either), is not served from nor kept in the cache.

Where entries live and how one miss becomes one request: `cacheflight.py`
(single-flight, the lock, stale answers) over `cachestore.py` (Redis or
memory). This module holds what both need and what a hit needs: `Copies`,
the worker's own copies, read without any await, so a hit costs a dict
lookup and no Redis call.
"""

from __future__ import annotations

import struct
from collections import OrderedDict
from dataclasses import dataclass

from gateway.errors import Headers

MAX_ENTRY_BYTES = 256 * 1024
MAX_HEADERS = 100  # as for requests: an answer with more is not kept
COPIES_BYTES = 32 * 1024 * 1024
_UNCACHEABLE = (b"private", b"no-store", b"no-cache")
_VARY_ALLOWED = (b"accept-encoding", b"origin")
FORMAT = 1  # a kept answer's layout in Redis; part of the key names (cachestore.PREFIX)
_HEAD = struct.Struct(">BqqHH")  # format, stored_at ms, fresh_until ms, status, header count
_PAIR = struct.Struct(">II")
HIT, STALE = b"hit", b"stale"

Key = tuple[str, str, bytes]
KEY_OVERHEAD = 200  # bytes a copy's dict slot, tuple and entry object cost besides their data
"""A cached answer's key: route name, raw target, Accept-Encoding."""


def cacheable(status: int, headers: Headers) -> int | None:
    """The body length to buffer if this answer may be kept, else None."""
    if status != 200 or len(headers) > MAX_HEADERS:
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
        return any(v.strip() not in _VARY_ALLOWED for v in value.split(b","))
    return False


@dataclass(frozen=True, slots=True)
class Entry:
    """A kept answer; times are wall-clock seconds, shared by every replica."""

    status: int
    headers: Headers  # as callers see them, without Age
    body: bytes
    stored_at: float  # when Reusely answered
    fresh_until: float

    def age(self, now: float) -> bytes:
        """`Age`: whole seconds since Reusely answered."""
        return b"%d" % max(0, int(now - self.stored_at))

    def within(self, seconds: int | None, now: float) -> bool:
        """Expired at most `seconds` ago (None: never usable once expired)."""
        return seconds is not None and now <= self.fresh_until + seconds


def entry_of(status: int, headers: Headers, body: bytes, ttl: int, now: float) -> Entry:
    kept = [(n, v) for n, v in headers if n != b"age"]
    return Entry(status, kept, body, now, now + ttl)


def pack(entry: Entry) -> bytes:
    parts = [_HEAD.pack(FORMAT, int(entry.stored_at * 1000), int(entry.fresh_until * 1000),
                        entry.status, len(entry.headers))]
    for name, value in entry.headers:
        parts += (_PAIR.pack(len(name), len(value)), name, value)
    parts.append(entry.body)
    return b"".join(parts)


def unpack(data: bytes) -> Entry | None:
    """The entry, or None when `data` is not one this version wrote."""
    try:
        fmt, stored, fresh, status, count = _HEAD.unpack_from(data)
        if fmt != FORMAT:
            return None
        offset, headers = _HEAD.size, []
        for _ in range(count):
            name_len, value_len = _PAIR.unpack_from(data, offset)
            offset += _PAIR.size
            headers.append((data[offset:offset + name_len],
                            data[offset + name_len:offset + name_len + value_len]))
            offset += name_len + value_len
    except struct.error:
        return None
    if offset > len(data):
        return None
    return Entry(status, headers, data[offset:], stored / 1000, fresh / 1000)


def size_of(entry: Entry) -> int:
    return len(entry.body) + sum(len(n) + len(v) for n, v in entry.headers)


class Copies:
    """A worker's own copies of kept answers, least recently used dropped first.

    Each copy is served until its own deadline, never past what it was put
    in as: `HIT` copies at most until the entry's freshness ends, `STALE`
    ones (during an outage, or while another worker refreshes) briefly, so
    that a hot key costs each worker one Redis read per deadline.
    """

    def __init__(self, max_bytes: int = COPIES_BYTES) -> None:
        self._copies: OrderedDict[Key, tuple[Entry, float, bytes, int]] = OrderedDict()
        self._bytes = 0
        self._max = max_bytes

    def get(self, key: Key, now: float) -> tuple[Entry, bytes] | None:
        """The copy to serve and how (`HIT` or `STALE`), or None."""
        found = self._copies.get(key)
        if found is None:
            return None
        entry, until, status, _ = found
        if until <= now:
            self._drop(key)
            return None
        self._copies.move_to_end(key)
        return entry, status

    def put(self, key: Key, entry: Entry, until: float, status: bytes = HIT) -> None:
        if key in self._copies:
            self._drop(key)
        # The key holds the raw target (up to the 16 KiB a request head may carry):
        # counted too, so unique query strings cannot grow a worker's memory unseen.
        size = size_of(entry) + len(key[0]) + len(key[1]) + len(key[2]) + KEY_OVERHEAD
        self._copies[key] = (entry, until, status, size)
        self._bytes += size
        while self._bytes > self._max and self._copies:
            self._drop(next(iter(self._copies)))

    def drop(self, key: Key) -> None:
        if key in self._copies:
            self._drop(key)

    def _drop(self, key: Key) -> None:
        self._bytes -= self._copies.pop(key)[3]
