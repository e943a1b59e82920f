"""App factories for bench/variants.py: the gateway with another upstream transport.

Not part of the product. `Gateway` takes an httpx transport (the seam the
tests use), so the only change here is which transport its one AsyncClient
sends through. Run with PYTHONPATH=<repo>:<repo>/bench from a venv that also
has httpx-aiohttp (bench/.venv-peer).
"""

from __future__ import annotations

import httpx

from gateway.app import Gateway, create_app_from_env


def httpx_app() -> Gateway:
    """The gateway as shipped (control for the same venv)."""
    return create_app_from_env()


def big_reads_app() -> Gateway:
    """httpcore reading 256 KiB at a time (uvloop's read size) instead of 64 KiB, so
    anyio never splits a received chunk (each split copies the leftover)."""
    from httpcore._async import http11

    http11.AsyncHTTP11Connection.READ_NUM_BYTES = 256 * 1024
    return create_app_from_env()


def httpcore_app() -> Gateway:
    """The gateway with httpx's own transport (httpcore) instead of the shipped
    aiohttp one (gateway/transport.py): the comparison behind that choice."""
    app = create_app_from_env()
    app._transport = httpx.AsyncHTTPTransport(  # the constructor's `transport=` seam, set late
        limits=httpx.Limits(max_connections=100, max_keepalive_connections=16))
    return app


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
