"""floor-aiohttp: the leanest proxy on the gateway's own stack, the floor it is measured to.

gunicorn with one uvicorn worker (uvloop, httptools) and one aiohttp session:
the caller's method, path and query go to the upstream with the three Reusely
credential headers added and hop-by-hop headers dropped, and the answer streams
back. No routing, auth, limits, metrics or access log: what the gateway does on
the catalog GET minus everything else, so the gateway's req/s over this one's is
its distance to the floor of its stack.

Not part of the product. bench/run.py runs it from bench/.venv-floor-aiohttp as
`gunicorn 'floor_aiohttp:app_from_env()'`, with REUSELY_BASE_URL and the three
REUSELY_* keys in the environment.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from floor_headers import HOP_BY_HOP, NOT_FORWARDED, base_url, credential_headers

Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

NOT_RETURNED = frozenset(name.encode() for name in HOP_BY_HOP)


class FloorProxy:
    """A raw ASGI app: one aiohttp session opened at startup, closed at shutdown."""

    def __init__(self, base_url: str, credentials: dict[str, str]) -> None:
        self.base_url = base_url
        self.credentials = credentials
        self.session: aiohttp.ClientSession | None = None

    async def __call__(self, scope: Message, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            await self._proxy(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.session = aiohttp.ClientSession(
                    connector=aiohttp.TCPConnector(limit=100),
                    cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=False)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.session is not None:
                    await self.session.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _proxy(self, scope: Message, receive: Receive, send: Send) -> None:
        assert self.session is not None, "lifespan startup did not run"
        headers = {name.decode("latin-1"): value.decode("latin-1")
                   for name, value in scope["headers"]
                   if name.decode("latin-1") not in NOT_FORWARDED}
        headers.update(self.credentials)
        target = scope["raw_path"].decode("latin-1")
        if scope["query_string"]:
            target += "?" + scope["query_string"].decode("latin-1")
        body = b"" if scope["method"] in ("GET", "HEAD") else await _read_body(receive)
        try:
            resp = await self.session.request(scope["method"], self.base_url + target,
                                              headers=headers, data=body or None,
                                              allow_redirects=False)
        except aiohttp.ClientError:
            await send({"type": "http.response.start", "status": 502, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        async with resp:
            out = [(name.lower(), value) for name, value in resp.raw_headers
                   if name.lower() not in NOT_RETURNED]
            await send({"type": "http.response.start", "status": resp.status, "headers": out})
            async for chunk in resp.content.iter_any():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})


async def _read_body(receive: Receive) -> bytes:
    parts: list[bytes] = []
    while True:
        message = await receive()
        parts.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(parts)


def app_from_env() -> FloorProxy:
    return FloorProxy(base_url(), credential_headers())
