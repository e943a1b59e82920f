"""`Idempotency-Key`: a double click or a phone's retry gets the first answer, not a second offer.

Semantics (the IETF draft "The Idempotency-Key HTTP Header Field", with
Stripe's details):

- The key is 1 to 255 visible ASCII characters (0x21-0x7E), bare or as an
  RFC 8941 quoted string (the quotes are not part of it). Anything else, or
  the header twice: 400 `invalid_idempotency_key`; none on a `required` route:
  400 `idempotency_key_required`.
- Scope: the route and the caller (a client's name, or every anonymous caller
  together). Fingerprint: SHA-256 of the method, the target (path and query)
  and the exact body bytes.
- The first request claims the key with an in-flight marker, atomically (one
  Lua call: read the key, set the marker if there is none). A second request
  meanwhile gets 409 `idempotency_key_in_use` (`Retry-After: 1`), or 422
  `idempotency_key_reused` when its fingerprint differs.
- Reusely's 2xx, and its 4xx except 401, 408, 409, 425 and 429, are kept for
  the route's `ttl` (status, headers already cleaned for the caller, body up
  to `MAX_KEPT_BYTES`) before the answer's last byte is sent; a later request
  with the key and fingerprint is answered from it with
  `Idempotent-Replayed: true`, not forwarded, not counted against any limit.
- Everything else frees the key at once, before the caller sees the answer:
  the gateway's own answers (its 4xx, 429, 502, 503, 504), Reusely's 5xx, and
  an answer too large to keep (streamed instead). A retry is then handled as
  new.

The in-flight marker lives for the route's connect + pool + write timeouts,
twice its read timeout (Reusely's first byte, then reading an answer to keep,
bounded as a whole) plus `MARKER_SLACK` seconds: long enough for any request the route
can still be handling, short enough that a worker dying mid-request blocks
the key no longer than that. A timeout after the body reached Reusely is the
gateway's own 504 and frees the key, as the rules above say; the offer may
have been created, so a retry can create a second one: the price of never
answering a shopper with a stale "in use" for a request nobody is handling.

Markers and answers are kept in Redis when GATEWAY_REDIS_URL is set (every
worker and replica sees them) under `rg/idem/<route>/<HMAC of caller and
key>`, so nothing in clear identifies a shopper; in process memory otherwise.
Every marker carries a random token: a request frees or replaces only its own.
"""

from __future__ import annotations

import hashlib
import logging
import os
import struct
import time
from collections import OrderedDict
from dataclasses import dataclass

from gateway.config import Route
from gateway.errors import (
    Headers,
    IdempotencyKeyInUse,
    IdempotencyKeyRequired,
    IdempotencyKeyReused,
    InvalidIdempotencyKey,
    RateLimiterUnavailable,
    StoreError,
)
from gateway.limitkeys import LimitKeys
from gateway.store import Store

log = logging.getLogger("gateway.idempotency")
MAX_KEPT_BYTES = 1024 * 1024
MARKER_SLACK = 10.0
UNKEPT = frozenset({401, 408, 409, 425, 429})
UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})
IN_FLIGHT, KEPT = b"F", b"K"
REPLAYED = (b"idempotent-replayed", b"true")
MEMORY_BYTES = 64 * 1024 * 1024
# Read the key; claim it with the marker when there is none. One round trip, atomic.
CLAIM = """
local old = redis.call('get', KEYS[1])
if not old then
    redis.call('set', KEYS[1], ARGV[1], 'PX', ARGV[2])
end
return old
"""
# Replace (ARGV[2] non-empty) or delete the key, only while it still holds our marker.
SETTLE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    if ARGV[2] == '' then
        return redis.call('del', KEYS[1])
    end
    redis.call('set', KEYS[1], ARGV[2], 'PX', ARGV[3])
    return 1
end
return 0
"""


def parse_key(values: list[bytes]) -> str | None:
    """The key of the `Idempotency-Key` headers sent (None: none sent), or 400."""
    if not values:
        return None
    if len(values) > 1:
        raise InvalidIdempotencyKey()
    raw = values[0].strip(b" \t")
    if raw.startswith(b'"'):
        if len(raw) < 2 or not raw.endswith(b'"'):
            raise InvalidIdempotencyKey()
        inner, out, escaped = raw[1:-1], bytearray(), False
        for byte in inner:
            if escaped:
                if byte not in b'"\\':
                    raise InvalidIdempotencyKey()
                out.append(byte)
                escaped = False
            elif byte == 0x5C:
                escaped = True
            elif byte == 0x22:
                raise InvalidIdempotencyKey()
            else:
                out.append(byte)
        if escaped:
            raise InvalidIdempotencyKey()
        raw = bytes(out)
    if not 1 <= len(raw) <= 255 or any(b < 0x21 or b > 0x7E for b in raw):
        raise InvalidIdempotencyKey()
    return raw.decode("ascii")


def fingerprint(method: str, target: str, body: bytes) -> bytes:
    return hashlib.sha256(b"%s\0%s\0%s" % (method.encode(), target.encode(), body)).digest()


def keepable(status: int) -> bool:
    return 200 <= status < 300 or (400 <= status < 500 and status not in UNKEPT)


def pack(marker: bytes, status: int, headers: Headers, body: bytes) -> bytes:
    """K, the marker's fingerprint, then status, headers and body, length-prefixed."""
    blob = b"".join(struct.pack(">HH", len(n), len(v)) + n + v for n, v in headers)
    return (KEPT + marker[1:33] + struct.pack(">HII", status, len(headers), len(blob))
            + blob + body)


def unpack(value: bytes) -> tuple[int, Headers, bytes]:
    status, count, size = struct.unpack_from(">HII", value, 33)
    offset, headers = 43, []
    for _ in range(count):
        name_len, value_len = struct.unpack_from(">HH", value, offset)
        offset += 4
        headers.append((value[offset:offset + name_len],
                        value[offset + name_len:offset + name_len + value_len]))
        offset += name_len + value_len
    return status, headers, value[43 + size:]


@dataclass(slots=True)
class Replay:
    status: int
    headers: Headers
    body: bytes


class Claim:
    """A key this request holds in flight; exactly one of keep() or free() settles it."""

    __slots__ = ("_keeper", "_name", "_ttl", "marker", "settled")

    def __init__(self, keeper: Idempotency, name: str, marker: bytes, ttl: int) -> None:
        self._keeper, self._name, self.marker, self._ttl = keeper, name, marker, ttl
        self.settled = False

    async def keep(self, status: int, headers: Headers, body: bytes) -> None:
        """Keep Reusely's answer for later requests with the key (best effort: the answer
        reaches the caller either way; if Redis fails now, the marker just expires)."""
        self.settled = True
        try:
            await self._keeper.settle(self._name, self.marker,
                                      pack(self.marker, status, headers, body), self._ttl)
        except StoreError:
            log.warning("could not keep an answer for its idempotency key; it will expire")

    async def free(self) -> None:
        if not self.settled:
            self.settled = True
            await self._keeper.settle(self._name, self.marker, b"", 0)

    async def release(self) -> None:
        """Free the key unless it was kept; Redis failing then only lets the marker expire."""
        try:
            await self.free()
        except StoreError:
            log.warning("could not free an idempotency key; its marker will expire")


class Idempotency:
    def __init__(self, store: Store, keys: LimitKeys) -> None:
        self._store, self._keys = store, keys
        self._claim = store.redis.register_script(CLAIM) if store.redis is not None else None
        self._settle = store.redis.register_script(SETTLE) if store.redis is not None else None
        self._memory: OrderedDict[str, tuple[bytes, float]] = OrderedDict()
        self._memory_bytes = 0

    @staticmethod
    def key_of(route: Route, method: str, raw_headers: list[tuple[bytes, bytes]]) -> str | None:
        """The request's key on an idempotent route: None when it has none to give.

        Only POST, PUT, PATCH and DELETE are keyed: a GET or HEAD on a route that
        also takes them is safe to repeat, and its header is ignored.
        """
        assert route.idempotency is not None
        if method not in UNSAFE:
            return None
        key = parse_key([v for n, v in raw_headers if n == b"idempotency-key"])
        if key is None and route.idempotency.required:
            raise IdempotencyKeyRequired()
        return key

    async def claim(self, route: Route, caller: str, key: str,
                    print_: bytes) -> Claim | Replay | None:
        """Hold the key for this request, or the kept answer to replay; 409 / 422.

        When Redis cannot answer, the route's `on_error` decides: `allow` handles
        the request without idempotency (None), `deny` answers 503; a worker too
        busy to hear Redis answers 503 either way.
        """
        try:
            return await self._claim_or_replay(route, caller, key, print_)
        except StoreError as exc:
            if exc.kind == "busy" or route.on_error == "deny":
                raise RateLimiterUnavailable() from exc
            log.warning("idempotency keys unavailable (%s): handling the request without",
                        exc.kind)
            return None

    async def _claim_or_replay(self, route: Route, caller: str, key: str,
                               print_: bytes) -> Claim | Replay:
        assert route.idempotency is not None
        scoped = self._keys.hide("idem", caller + "\0" + key)
        name = f"rg/idem/{route.name}/{scoped}"
        marker = IN_FLIGHT + print_ + os.urandom(16)
        t = route.timeout
        # Waiting for a connection, sending, Reusely's first byte, then reading an answer
        # to keep (bounded by one more read timeout as a whole: forward.py).
        hold_ms = int((t.connect + t.pool + t.write + 2 * t.read + MARKER_SLACK) * 1000)
        old = await self._store.run(self._claim_once(name, marker, hold_ms))
        if old is None:
            return Claim(self, name, marker, route.idempotency.ttl)
        if old[1:33] != print_:
            raise IdempotencyKeyReused()
        if old[:1] == IN_FLIGHT:
            raise IdempotencyKeyInUse()
        status, headers, body = unpack(old)
        return Replay(status, [*headers, REPLAYED], body)

    async def _claim_once(self, name: str, marker: bytes, hold_ms: int) -> bytes | None:
        if self._claim is not None:
            old: bytes | None = await self._claim(keys=[self._store.key(name)],
                                                  args=[marker, hold_ms])
            return old
        now = time.monotonic()
        found = self._memory.get(name)
        if found is not None and found[1] > now:
            return found[0]
        self._remember(name, marker, now + hold_ms / 1000)
        return None

    async def settle(self, name: str, marker: bytes, value: bytes, ttl: int) -> None:
        """Replace our marker by the kept answer (or delete it when `value` is empty)."""
        if self._settle is not None:
            await self._store.run(self._settle(keys=[self._store.key(name)],
                                               args=[marker, value, ttl * 1000]))
            return
        found = self._memory.get(name)
        if found is not None and found[0] == marker:
            self._forget(name)
            if value:
                self._remember(name, value, time.monotonic() + ttl)

    def _remember(self, name: str, value: bytes, deadline: float) -> None:
        if name in self._memory:
            self._forget(name)
        self._memory[name] = (value, deadline)
        self._memory_bytes += len(value)
        while self._memory_bytes > MEMORY_BYTES and self._memory:
            self._forget(next(iter(self._memory)))  # the oldest first

    def _forget(self, name: str) -> None:
        value, _ = self._memory.pop(name)
        self._memory_bytes -= len(value)
