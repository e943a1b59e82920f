"""Requests to Reusely: retries, Reusely's answer cleaned, and failures in our words.

The transport (`transport.py`, or anything with its `send` and `aclose`)
fails in httpx's exception vocabulary; this is the one place those become
ours, by one table, whether the failure comes while sending or while the
answer's body streams:

    httpx.TimeoutException          -> UpstreamTimeout      (kind "timeout")
    httpx.ConnectError              -> UpstreamUnavailable  (kind "connect")
    any other httpx.TransportError  -> UpstreamUnavailable  (kind "protocol")

A connection that could not be made is retried `route.retries` times, for
GET, HEAD and OPTIONS only; a POST reaches Reusely at most once. Reusely's
headers are cleaned for the caller (`headers.clean_response_headers`) as the
answer arrives, so whatever is later streamed, kept for an Idempotency-Key or
cached carries only what a caller may see.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Callable, Collection
from functools import partial
from typing import Protocol

import httpx

from gateway.config import Route
from gateway.errors import GatewayError, Headers, UpstreamTimeout, UpstreamUnavailable
from gateway.headers import clean_response_headers
from gateway.settings import Settings
from gateway.transport import AiohttpTransport, Timeouts

IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS"})
# (httpx's exception, ours), most specific first.
EXCEPTIONS: tuple[tuple[type[httpx.TransportError], Callable[[], GatewayError]], ...] = (
    (httpx.TimeoutException, UpstreamTimeout),
    (httpx.ConnectError, partial(UpstreamUnavailable, "connect")),
    (httpx.TransportError, partial(UpstreamUnavailable, "protocol")),
)


def translate(exc: httpx.TransportError) -> GatewayError:
    return next(ours() for foreign, ours in EXCEPTIONS if isinstance(exc, foreign))


def ascii_target(raw_path: bytes, query: bytes) -> str:
    """The request target as received; non-ASCII bytes (invalid in HTTP) percent-encoded."""
    target = raw_path + (b"?" + query if query else b"")
    if target.isascii():
        return target.decode("ascii")
    return "".join(chr(b) if b < 128 else f"%{b:02X}" for b in target)


class RawAnswer(Protocol):
    """What a transport returns: Reusely's status and raw headers, its body as it arrives."""

    status: int
    headers: list[tuple[bytes, bytes]]

    def chunks(self) -> AsyncGenerator[bytes, None]: ...

    def release(self) -> None: ...


class UpstreamResponse:
    """Reusely's answer: status, cleaned headers, and its body as it arrives."""

    __slots__ = ("_chunks", "_raw", "content_length", "headers", "status")

    def __init__(self, raw: RawAnswer, headers: Headers) -> None:
        self._raw = raw
        self._chunks: AsyncGenerator[bytes, None] | None = None
        self.status = raw.status
        self.headers = headers
        self.content_length: int | None = None
        for name, value in headers:
            if name == b"content-length" and value.isdigit():
                self.content_length = int(value)

    def body(self) -> AsyncGenerator[bytes, None]:
        """The raw body bytes as they arrive, continuing where an earlier read stopped."""
        if self._chunks is None:
            self._chunks = self._translated()
        return self._chunks

    async def _translated(self) -> AsyncGenerator[bytes, None]:
        chunks = self._raw.chunks()
        try:
            async for chunk in chunks:
                yield chunk
        except httpx.TransportError as exc:
            raise translate(exc) from exc
        finally:
            await chunks.aclose()

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
        # Close the body's generator first: one left suspended holds its last chunk
        # (up to the transport's read buffer) in a reference cycle with this answer,
        # which only a full garbage collection frees; under a stream that is megabytes.
        try:
            if self._chunks is not None:
                await self._chunks.aclose()
        finally:
            self._raw.release()  # whatever closing the generator raised


class Transport(Protocol):
    async def send(self, method: str, url: str, headers: list[tuple[str, str]],
                   body: bytes | AsyncIterator[bytes] | None,
                   timeouts: Timeouts) -> RawAnswer: ...

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
