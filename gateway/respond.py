"""Writing answers to the caller: Reusely's, streamed or from the cache, and empty ones.

Also the request body as it is read from the caller, bounded by the route's
`max_body_bytes`, and `Exchange`: what one request has become so far, which
metrics and the access log read when it ends.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from gateway.cache import Cached, ResponseCache
from gateway.errors import ClientDisconnected, PayloadTooLarge
from gateway.upstream import UpstreamResponse

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


@dataclass
class Exchange:
    """What one request has become so far; read by metrics and the access log."""

    request_id: bytes
    method: str
    path: str
    route: str = "unmatched"
    client: str = "public"
    status: int = 0
    upstream_status: int | None = None
    limited: bool = False
    started: bool = False
    extra_headers: list[tuple[bytes, bytes]] = field(default_factory=list)


async def stream(response: UpstreamResponse, receive: Receive, send: Send,
                 ex: Exchange) -> None:
    """Reusely's answer to the caller as it arrives; stop reading if the caller leaves."""
    out = [*response.headers, (b"x-request-id", ex.request_id), *ex.extra_headers]
    ex.status = response.status
    await send({"type": "http.response.start", "status": response.status, "headers": out})
    ex.started = True
    length = _content_length(response.headers)
    sent = 0
    done = False
    watcher: asyncio.Future[None] | None = None
    try:
        async for chunk in response.body():
            sent += len(chunk)
            done = length is not None and sent >= length
            await send({"type": "http.response.body", "body": chunk, "more_body": not done})
            if done:
                # Keep iterating: the transport must see the end of the message,
                # or it closes the connection instead of returning it to the pool.
                continue
            if watcher is None:
                watcher = asyncio.ensure_future(_wait_disconnect(receive))
            elif watcher.done():
                return  # the caller left; stop reading from Reusely
        if not done:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
    finally:
        if watcher is not None:
            watcher.cancel()
        await response.aclose()


async def send_empty(send: Send, ex: Exchange, status: int,
                     headers: list[tuple[bytes, bytes]]) -> None:
    ex.status = status
    await send({"type": "http.response.start", "status": status,
                "headers": [*headers, (b"x-request-id", ex.request_id)]})
    await send({"type": "http.response.body", "body": b""})


async def send_and_cache(response: UpstreamResponse, cache: ResponseCache,
                         key: tuple[str, bytes, bytes], ttl: int, length: int, send: Send,
                         ex: Exchange) -> None:
    """Buffer a cacheable answer (bounded by its Content-Length), keep it, send it."""
    try:
        body = b"".join([chunk async for chunk in response.body()])
    finally:
        await response.aclose()
    if len(body) == length:
        cache.put(key, response.status, response.headers, body, ttl)
    ex.status = response.status
    out = [*response.headers, (b"x-request-id", ex.request_id), *ex.extra_headers,
           (b"x-cache-status", b"miss")]
    await send({"type": "http.response.start", "status": response.status, "headers": out})
    await send({"type": "http.response.body", "body": body})

async def send_cached(hit: Cached, send: Send, ex: Exchange) -> None:
    ex.status = hit.status
    age = str(int(time.monotonic() - hit.stored_at)).encode()
    out = [*hit.headers, (b"x-request-id", ex.request_id), *ex.extra_headers,
           (b"age", age), (b"x-cache-status", b"hit")]
    await send({"type": "http.response.start", "status": hit.status, "headers": out})
    await send({"type": "http.response.body", "body": hit.body})


def _content_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    for name, value in headers:
        if name == b"content-length" and value.isdigit():
            return int(value)
    return None


async def read_body(receive: Receive, limit: int) -> bytes:
    return b"".join([chunk async for chunk in stream_body(receive, limit)])


async def stream_body(receive: Receive, limit: int) -> AsyncIterator[bytes]:
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge()
        if chunk:
            yield chunk
        if not message.get("more_body"):
            return


async def _wait_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
