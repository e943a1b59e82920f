"""The connection pool to Reusely: aiohttp's, spoken to in raw parts, failing in httpx's words.

The benchmark found httpcore's pool, h11 and anyio's per-read cancel scopes
to be most of the gateway's CPU per request, and httpx's Request/Response
model another ~100 µs: the same gateway sent about three times as many
requests per second through aiohttp's pool. So requests go out through
aiohttp, called with raw parts (method, URL, header pairs, body, timeouts) --
no per-request model objects -- and its failures come out as httpx's
exceptions, the vocabulary `upstream` translates into ours. One table maps
them, the way httpx's own transport maps httpcore's:

    aiohttp.ConnectionTimeoutError  -> httpx.ConnectTimeout   no connection in time
    TimeoutError (once connected)   -> httpx.ReadTimeout      no answer in time
    aiohttp.ClientConnectorError    -> httpx.ConnectError     no connection
    aiohttp.ClientError, OSError    -> httpx.RemoteProtocolError  broke once connected

What a proxy needs from the pool, set here once:
- bytes untouched: no decompression, no compression, the request target sent
  as given (`yarl.URL(..., encoded=True)`, no requoting);
- no headers of its own (`User-Agent`, `Accept`, `Accept-Encoding`): a caller
  that did not ask for gzip must not get gzip;
- no cookie jar, no proxy variables from the environment, no redirects.

A POST is never retried here: aiohttp retries a request once only when it is
idempotent and a reused keep-alive connection turns out to be closed.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import aiohttp
import httpx
import yarl

SKIP_AUTO_HEADERS = ("User-Agent", "Accept", "Accept-Encoding", "Content-Type")
# How much of an answer aiohttp buffers per connection before it stops reading the
# socket. Its default (256 KiB in aiohttp 3.14) let four 32 MiB streams raise a
# worker's RSS by several MiB at the peak; with 16 KiB the peak was +3.1 MiB at
# 1.66x nginx's throughput (bench/RESULTS.md, the stream scenario).
READ_BUFSIZE = 2**14
# (aiohttp's exception, httpx's), most specific first.
EXCEPTIONS: tuple[tuple[type[BaseException], type[httpx.TransportError]], ...] = (
    (aiohttp.ConnectionTimeoutError, httpx.ConnectTimeout),
    (TimeoutError, httpx.ReadTimeout),
    (aiohttp.ClientConnectorError, httpx.ConnectError),
    (aiohttp.ClientError, httpx.RemoteProtocolError),
    (OSError, httpx.RemoteProtocolError),
)
Timeouts = tuple[float, float, float, float]  # connect, read, write, pool (seconds)


FOREIGN = tuple(foreign for foreign, _ in EXCEPTIONS)


def _mapped(exc: BaseException) -> httpx.TransportError:
    """The httpx exception for one of aiohttp's (or the OS's), by the table above."""
    ours = next(httpx_type for foreign, httpx_type in EXCEPTIONS if isinstance(exc, foreign))
    return ours(str(exc) or type(exc).__name__)


class RawResponse:
    """Reusely's status and raw headers, and its body as it arrives."""

    __slots__ = ("_response", "headers", "status")

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        self.status = response.status
        self.headers: list[tuple[bytes, bytes]] = list(response.raw_headers)

    async def chunks(self) -> AsyncGenerator[bytes, None]:
        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except FOREIGN as exc:
            raise _mapped(exc) from exc

    def release(self) -> None:
        """Back to the pool when read to its end; otherwise the connection is closed."""
        self._response.release()


class _Body:
    """The request body for aiohttp, remembering why its source stopped.

    aiohttp reports a failure of the body's source as a connection error; the
    gateway's own reasons (a body over the limit, a caller gone) must come out
    as themselves.
    """

    __slots__ = ("_source", "error")

    def __init__(self, source: AsyncIterator[bytes]) -> None:
        self._source = source
        self.error: BaseException | None = None

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._source:
                yield chunk
        except Exception as exc:
            self.error = exc
            raise


class AiohttpTransport:
    def __init__(self, *, max_connections: int, keepalive_expiry: float = 15.0) -> None:
        self._max_connections = max_connections
        self._keepalive_expiry = keepalive_expiry
        self._session: aiohttp.ClientSession | None = None
        self._timeouts: dict[Timeouts, aiohttp.ClientTimeout] = {}

    def _open(self) -> aiohttp.ClientSession:
        # Created on first use, inside the running event loop, as aiohttp wants.
        connector = aiohttp.TCPConnector(limit=self._max_connections,
                                         keepalive_timeout=self._keepalive_expiry)
        self._session = aiohttp.ClientSession(
            connector=connector, cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=False,
            skip_auto_headers=SKIP_AUTO_HEADERS, trust_env=False, requote_redirect_url=False,
            read_bufsize=READ_BUFSIZE)
        return self._session

    def _timeout(self, timeouts: Timeouts) -> aiohttp.ClientTimeout:
        found = self._timeouts.get(timeouts)
        if found is None:
            connect, read, _, pool = timeouts
            found = self._timeouts[timeouts] = aiohttp.ClientTimeout(
                total=None, connect=pool, sock_connect=connect, sock_read=read)
        return found

    async def send(self, method: str, url: str, headers: list[tuple[str, str]],
                   body: bytes | AsyncIterator[bytes] | None, timeouts: Timeouts) -> RawResponse:
        """Send one request; its answer once the status and headers arrived."""
        session = self._session or self._open()
        source = _Body(body) if body is not None and not isinstance(body, bytes) else None
        data: Any = source.chunks() if source is not None else (body or None)
        try:
            response = await session.request(
                method, yarl.URL(url, encoded=True), headers=headers, data=data,
                allow_redirects=False, compress=None, timeout=self._timeout(timeouts))
        except FOREIGN as exc:
            if source is not None and source.error is not None:
                raise source.error from None
            raise _mapped(exc) from exc
        return RawResponse(response)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
