"""floor-granian: the same minimal proxy as floor-aiohttp, on Rust server and client.

granian (Rust HTTP server) calling an RSGI app, one pyreqwest client (Rust,
reqwest): the caller's method, path and query go to the upstream with the three
Reusely credential headers added, and the answer streams back. The outside
reference: how far a Python proxy gets when both HTTP ends are native code,
measured in every run so that the stack choice (bench/README.md) can be
revisited with numbers.

Not part of the product. bench/run.py runs it from bench/.venv-floor-granian as
`granian --interface rsgi --factory floor_granian:app_from_env`, with
REUSELY_BASE_URL and the three REUSELY_* keys in the environment.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from floor_headers import HOP_BY_HOP, NOT_FORWARDED, base_url, credential_headers
from pyreqwest.client import Client, ClientBuilder
from pyreqwest.exceptions import PyreqwestError

if TYPE_CHECKING:  # granian's own names for what it passes to an RSGI app
    from granian._granian import RSGIHTTPProtocol as HTTPProtocol
    from granian.rsgi import Scope


class FloorProxy:
    """An RSGI app: one pyreqwest client built when the worker starts, closed when it stops."""

    def __init__(self, base_url: str, credentials: dict[str, str]) -> None:
        self.base_url = base_url
        self.credentials = credentials
        self.client: Client | None = None

    def __rsgi_init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.client = (ClientBuilder().follow_redirects(False).gzip(False).brotli(False)
                       .zstd(False).deflate(False).max_connections(100).build())

    def __rsgi_del__(self, loop: asyncio.AbstractEventLoop) -> None:
        if self.client is not None:
            loop.run_until_complete(self.client.close())

    async def __rsgi__(self, scope: Scope, protocol: HTTPProtocol) -> None:
        assert self.client is not None, "__rsgi_init__ did not run"
        headers = [(name, value) for name, value in scope.headers.items()
                   if name not in NOT_FORWARDED]
        headers.extend(self.credentials.items())
        target = self.base_url + scope.path
        if scope.query_string:
            target += "?" + scope.query_string
        builder = self.client.request(scope.method, target).headers(headers)
        if scope.method not in ("GET", "HEAD"):
            builder = builder.body_bytes(await protocol())
        transport = None
        try:
            async with builder.build_streamed() as resp:
                out = [(name, value) for name, value in resp.headers.items()
                       if name not in HOP_BY_HOP]
                transport = protocol.response_stream(resp.status, out)
                while (chunk := await resp.body_reader.read_chunk()) is not None:
                    await transport.send_bytes(bytes(chunk))
        except PyreqwestError:
            if transport is not None:
                raise  # the answer has started: granian drops the connection
            protocol.response_empty(502, [])


def app_from_env() -> FloorProxy:
    return FloorProxy(base_url(), credential_headers())
