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


# -- floors: what the server alone, and the leanest Python proxy, cost here --------

_FIXED = b'{"status_code":200,"message":"fixed answer","result":{}}'


async def _lifespan(receive, send, startup=None, shutdown=None):  # type: ignore[no-untyped-def]
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            if startup:
                await startup()
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            if shutdown:
                await shutdown()
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


def aiohttp_proxy_app():  # type: ignore[no-untyped-def]
    """The leanest streaming proxy: raw ASGI + one aiohttp session, headers added,
    hop-by-hop dropped. No routing, auth, limits, metrics or logs: a floor."""
    import os

    import aiohttp

    base = os.environ["REUSELY_BASE_URL"]
    add = {"x-api-key": os.environ["REUSELY_API_KEY"],
           "x-tenant-id": os.environ["REUSELY_TENANT_ID"]}
    drop = {"host", "connection", "keep-alive", "transfer-encoding", "te", "upgrade",
            "authorization", "cookie"}
    state: dict[str, aiohttp.ClientSession] = {}

    async def startup() -> None:
        state["s"] = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=100), cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False)

    async def shutdown() -> None:
        await state["s"].close()

    async def app(scope, receive, send):  # type: ignore[no-untyped-def]
        if scope["type"] == "lifespan":
            await _lifespan(receive, send, startup, shutdown)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]
                   if k.decode("latin-1") not in drop}
        headers.update(add)
        target = scope["raw_path"].decode() + (
            "?" + scope["query_string"].decode() if scope["query_string"] else "")
        async with state["s"].request(scope["method"], base + target, headers=headers,
                                      allow_redirects=False) as resp:
            out = [(k.lower(), v) for k, v in resp.raw_headers
                   if k.lower() not in (b"connection", b"keep-alive", b"transfer-encoding")]
            await send({"type": "http.response.start", "status": resp.status, "headers": out})
            async for chunk in resp.content.iter_any():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})

    return app
