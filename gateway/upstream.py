"""Requests to Reusely: header hygiene both ways, retries, and failures in our words.

The transport (`transport.py`, or anything with its `send` and `aclose`)
fails in httpx's exception vocabulary; this is the one place those become
ours, by one table, whether the failure comes while sending or while the
answer's body streams:

    httpx.TimeoutException          -> UpstreamTimeout      (kind "timeout")
    httpx.ConnectError              -> UpstreamUnavailable  (kind "connect")
    any other httpx.TransportError  -> UpstreamUnavailable  (kind "protocol")

A connection that could not be made is retried `route.retries` times, for
GET, HEAD and OPTIONS only; a POST reaches Reusely at most once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Collection, Iterable
from functools import partial
from typing import Protocol

import httpx

from gateway.config import CREDENTIAL_HEADERS, Route, Settings
from gateway.errors import GatewayError, Headers, UpstreamTimeout, UpstreamUnavailable
from gateway.transport import AiohttpTransport, RawResponse, Timeouts

HOP_BY_HOP = frozenset({
    b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"te",
    b"trailer", b"transfer-encoding", b"upgrade", b"proxy-connection",
})
CREDENTIAL_NAMES = frozenset(h.encode() for h in CREDENTIAL_HEADERS.values())
# Never forwarded to Reusely: besides hop-by-hop and credentials, what the
# gateway sets itself, and addressing headers a caller could spoof.
REQUEST_DROP = HOP_BY_HOP | CREDENTIAL_NAMES | frozenset({
    b"host", b"authorization", b"cookie", b"x-forwarded-for", b"x-forwarded-proto",
    b"x-request-id", b"forwarded", b"x-real-ip", b"expect",
})
RESPONSE_DROP = HOP_BY_HOP | CREDENTIAL_NAMES | frozenset({
    b"set-cookie", b"set-cookie2", b"x-request-id", b"date",  # uvicorn sets Date
})
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS"})
# (httpx's exception, ours), most specific first.
EXCEPTIONS: tuple[tuple[type[httpx.TransportError], Callable[[], GatewayError]], ...] = (
    (httpx.TimeoutException, UpstreamTimeout),
    (httpx.ConnectError, partial(UpstreamUnavailable, "connect")),
    (httpx.TransportError, partial(UpstreamUnavailable, "protocol")),
)


def translate(exc: httpx.TransportError) -> GatewayError:
    return next(ours() for foreign, ours in EXCEPTIONS if isinstance(exc, foreign))


def _connection_listed(headers: Iterable[tuple[bytes, bytes]]) -> frozenset[bytes]:
    listed: set[bytes] = set()
    for name, value in headers:
        if name.lower() == b"connection":
            listed.update(v.strip().lower() for v in value.split(b","))
    return frozenset(listed)


def clean_request_headers(raw: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    listed = _connection_listed(raw)
    return [(n, v) for n, v in raw
            if n not in REQUEST_DROP and (not listed or n not in listed)]


def clean_response_headers(raw: list[tuple[bytes, bytes]],
                           secret_values: Collection[bytes] = ()) -> list[tuple[bytes, bytes]]:
    listed = _connection_listed(raw)
    out = []
    for name, value in raw:
        lower = name.lower()
        if lower in RESPONSE_DROP or (listed and lower in listed):
            continue
        if lower.startswith(b"access-control-"):
            continue  # CORS is the gateway's to answer, per route and origin
        out.append((lower, value))
    return out


def ascii_target(raw_path: bytes, query: bytes) -> str:
    """The request target as received; non-ASCII bytes (invalid in HTTP) percent-encoded."""
    target = raw_path + (b"?" + query if query else b"")
    if target.isascii():
        return target.decode("ascii")
    return "".join(chr(b) if b < 128 else f"%{b:02X}" for b in target)


class UpstreamResponse:
    """Reusely's answer: status, cleaned headers, and its body as it arrives."""

    __slots__ = ("_chunks", "_raw", "content_length", "headers", "status")

    def __init__(self, raw: RawResponse, headers: Headers) -> None:
        self._raw = raw
        self._chunks: AsyncIterator[bytes] | None = None
        self.status = raw.status
        self.headers = headers
        self.content_length: int | None = None
        for name, value in headers:
            if name == b"content-length" and value.isdigit():
                self.content_length = int(value)

    def body(self) -> AsyncIterator[bytes]:
        """The raw body bytes as they arrive, continuing where an earlier read stopped."""
        if self._chunks is None:
            self._chunks = self._translated()
        return self._chunks

    async def _translated(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._raw.chunks():
                yield chunk
        except httpx.TransportError as exc:
            raise translate(exc) from exc

    async def read_up_to(self, limit: int) -> tuple[bytes, bool]:
        """The body if it is at most `limit` bytes (True), else what was read of it (False)."""
        parts, size = [], 0
        async for chunk in self.body():
            parts.append(chunk)
            size += len(chunk)
            if size > limit:
                return b"".join(parts), False
        return b"".join(parts), True

    def header(self, name: bytes) -> bytes | None:
        return next((v for n, v in self.headers if n == name), None)

    async def discard(self) -> None:
        """Read the body to its end, unseen, so the connection goes back to the pool."""
        try:
            async for _ in self.body():
                pass
        except GatewayError:
            pass  # the connection is closed instead; the answer is known already
        finally:
            await self.aclose()

    async def read(self) -> bytes:
        try:
            return b"".join([chunk async for chunk in self.body()])
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        self._raw.release()


class Transport(Protocol):
    async def send(self, method: str, url: str, headers: list[tuple[str, str]],
                   body: bytes | AsyncIterator[bytes] | None,
                   timeouts: Timeouts) -> RawResponse: ...

    async def aclose(self) -> None: ...


class Upstream:
    """The requests to Reusely, through one transport (the seam tests and bench use)."""

    def __init__(self, settings: Settings, *, transport: Transport | None = None) -> None:
        up = settings.policy.upstream
        self.transport: Transport = transport or AiohttpTransport(
            max_connections=up.max_connections)
        self._base = settings.base_url
        self._timeouts: dict[str, Timeouts] = {
            r.name: (r.timeout.connect, r.timeout.read, r.timeout.write, r.timeout.pool)
            for r in settings.policy.routes}

    async def aclose(self) -> None:
        await self.transport.aclose()

    async def send(self, route: Route, method: str, target: str, headers: Headers,
                   body: bytes | AsyncIterator[bytes] | None, *,
                   secret_values: Collection[bytes] = ()) -> UpstreamResponse:
        """Send one request; retry a connection that could not be made, for idempotent methods."""
        pairs = [(n.decode("latin-1"), v.decode("latin-1")) for n, v in headers]
        attempts = 1 + (route.retries if method in IDEMPOTENT else 0)
        for attempt in range(attempts):
            try:
                raw = await self.transport.send(method, self._base + target, pairs, body,
                                                self._timeouts[route.name])
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                if attempt + 1 < attempts:
                    continue
                raise translate(exc) from exc
            except httpx.TransportError as exc:
                raise translate(exc) from exc
            return UpstreamResponse(raw, clean_response_headers(raw.headers, secret_values))
        raise AssertionError("unreachable")
