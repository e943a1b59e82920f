"""`Reply`: the one writer of answers to the caller.

Every answer goes through `Reply.start`: Reusely's streamed answer, a cached
or replayed one, the gateway's own JSON errors, health, preflights, quotas. It
sets the status, adds `X-Request-ID` and the headers the request path has
accumulated on the exchange (CORS, rate limits, cache status...), and marks the
exchange started, so there is one place where an answer begins and one shape
for every answer's headers: pre-encoded `(name, value)` byte pairs.

Streaming Reusely's answer (`stream`) stops reading from Reusely when the
caller leaves, and gives up on a caller that stops reading for longer than
the route's read timeout: a stalled caller must not hold a connection to
Reusely (and a slot of its pool) open indefinitely.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any

from gateway.errors import ClientDisconnected, GatewayError, Headers, render
from gateway.exchange import Exchange
from gateway.upstream import UpstreamResponse

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
JSON = (b"content-type", b"application/json")


class Reply:
    __slots__ = ("_send", "ex")

    def __init__(self, send: Send, ex: Exchange) -> None:
        self._send = send
        self.ex = ex

    async def start(self, status: int, headers: Headers) -> None:
        ex = self.ex
        ex.status = status
        ex.started = True
        await self._send({"type": "http.response.start", "status": status,
                          "headers": [*headers, (b"x-request-id", ex.request_id), *ex.headers,
                                      *ex.limit_headers]})

    async def body(self, chunk: bytes, *, more: bool = False) -> None:
        await self._send({"type": "http.response.body", "body": chunk, "more_body": more})

    async def whole(self, status: int, headers: Headers, body: bytes) -> None:
        """A complete answer in one piece; Content-Length added unless given."""
        if not any(name == b"content-length" for name, _ in headers):
            headers = [*headers, (b"content-length", str(len(body)).encode())]
        await self.start(status, headers)
        await self.body(body)

    async def json(self, status: int, body: bytes, headers: Headers | None = None) -> None:
        await self.whole(status, [JSON, *(headers or [])], body)

    async def error(self, exc: GatewayError) -> None:
        """The gateway's own refusal, in the one JSON shape."""
        await self.json(exc.status_code, render(exc.code, exc.message,
                                                self.ex.request_id.decode()), exc.headers)

    async def stream(self, response: UpstreamResponse, receive: Receive, *,
                     stall: float, prefix: bytes = b"") -> None:
        """Reusely's answer to the caller as it arrives; stop if the caller leaves or stalls.

        `prefix` is what was already read of the body (an answer too large to keep).
        """
        await self.start(response.status, response.headers)
        length = response.content_length
        sent = 0
        done = False
        watcher: asyncio.Future[None] | None = None
        chunks = _prepend(prefix, response.body()) if prefix else response.body()
        try:
            async for chunk in chunks:
                sent += len(chunk)
                done = length is not None and sent >= length
                try:
                    async with asyncio.timeout(stall):
                        await self.body(chunk, more=not done)
                except TimeoutError:
                    raise ClientDisconnected("The caller stopped reading.") from None
                if done:
                    # Keep iterating: the transport must see the end of the message,
                    # or it closes the connection instead of returning it to the pool.
                    continue
                if watcher is None:
                    watcher = asyncio.ensure_future(_wait_disconnect(receive))
                elif watcher.done():
                    return  # the caller left; stop reading from Reusely
            if not done:
                await self.body(b"")
        finally:
            if watcher is not None:
                watcher.cancel()
            try:
                if prefix:
                    await chunks.aclose()
            finally:
                await response.aclose()


async def _prepend(first: bytes, rest: AsyncIterator[bytes]) -> AsyncGenerator[bytes, None]:
    yield first
    async for chunk in rest:
        yield chunk


async def _wait_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
