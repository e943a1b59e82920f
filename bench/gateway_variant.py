"""App factories for bench/variants.py: the gateway with another upstream transport.

Not part of the product. `Gateway` takes a transport (anything with the
`send(method, url, headers, body, timeouts)` and `aclose()` of
gateway/transport.py), so the only change here is what requests go out
through. Run with PYTHONPATH=<repo>:<repo>/bench from a venv that also has
httpx-aiohttp (bench/.venv-peer).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import httpx

from gateway.app import Gateway, create_app
from gateway.environment import load_settings
from gateway.factory import create_app_from_env


def httpx_app() -> Gateway:
    """The gateway as shipped (control for the same venv)."""
    return create_app_from_env()


def big_reads_app() -> Gateway:
    """httpcore reading 256 KiB at a time (uvloop's read size) instead of 64 KiB, so
    anyio never splits a received chunk (each split copies the leftover)."""
    from httpcore._async import http11

    http11.AsyncHTTP11Connection.READ_NUM_BYTES = 256 * 1024
    return create_app_from_env()


class _HttpxAnswer:
    def __init__(self, response: httpx.Response) -> None:
        self._response = response
        self.status = response.status_code
        self.headers = list(response.headers.raw)

    async def chunks(self) -> AsyncIterator[bytes]:
        async for chunk in self._response.aiter_raw():
            yield chunk

    def release(self) -> None:
        # The seam's release is synchronous; an async httpx stream closes when awaited.
        asyncio.get_running_loop().create_task(self._response.aclose())


class HttpcoreTransport:
    """httpx's own transport (httpcore) behind the gateway's transport seam."""

    def __init__(self) -> None:
        self._transport = httpx.AsyncHTTPTransport(
            limits=httpx.Limits(max_connections=100, max_keepalive_connections=16))

    async def send(self, method, url, headers, body, timeouts):  # type: ignore[no-untyped-def]
        connect, read, write, pool = timeouts
        request = httpx.Request(method, url, headers=headers, content=body, extensions={
            "timeout": {"connect": connect, "read": read, "write": write, "pool": pool}})
        return _HttpxAnswer(await self._transport.handle_async_request(request))

    async def aclose(self) -> None:
        await self._transport.aclose()


def httpcore_app() -> Gateway:
    """The gateway with httpx's own transport (httpcore) instead of the shipped
    aiohttp one (gateway/transport.py): the comparison behind that choice."""
    settings = load_settings(os.environ, text=os.environ.get("GATEWAY_POLICY_TEXT"),
                             source=os.environ.get("GATEWAY_POLICY_SOURCE"))
    return create_app(settings, transport=HttpcoreTransport())


# -- the server alone: what it costs here (the leanest proxy is bench/floor_aiohttp.py) --

_FIXED = b'{"status_code":200,"message":"fixed answer","result":{}}'


async def _lifespan(receive, send):  # type: ignore[no-untyped-def]
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def floor_app():  # type: ignore[no-untyped-def]
    """uvicorn + gunicorn worker answering a fixed body: the server's own cost."""

    async def app(scope, receive, send):  # type: ignore[no-untyped-def]
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(_FIXED)).encode())]})
        await send({"type": "http.response.body", "body": _FIXED})

    return app
