"""httpx's transport interface over an aiohttp connection pool.

The benchmark (bench/PROFILE.md) found httpcore's pool, h11 and anyio's
per-read cancel scopes to be most of the gateway's CPU per request: the same
gateway sent about three times as many requests per second through aiohttp's
pool, and streamed 32 MiB with a few MiB of memory growth instead of tens.
So the gateway keeps httpx's request, response and exception types as the
interface of `upstream.py`, and this transport turns them into aiohttp calls.

What a proxy needs from it, set here once:
- bytes untouched: no decompression, no compression, the request target sent
  as given (`yarl.URL(..., encoded=True)`, no requoting);
- no headers of its own (`User-Agent`, `Accept`, `Accept-Encoding`): a caller
  that did not ask for gzip must not get gzip;
- no cookie jar, no proxy variables from the environment, no redirects;
- aiohttp's exceptions mapped onto httpx's: no connection (connect error,
  connect timeout: the only ones `upstream.py` retries), no answer in time
  (read timeout), anything else once connected (protocol), so `upstream.py`
  translates them into ours at one place.

A POST is never retried here: aiohttp retries a request once only when it is
idempotent and a reused keep-alive connection turns out to be closed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import aiohttp
import httpx
import yarl

SKIP_AUTO_HEADERS = ("User-Agent", "Accept", "Accept-Encoding", "Content-Type")


@contextmanager
def _mapped() -> Iterator[None]:
    try:
        yield
    except aiohttp.ConnectionTimeoutError as exc:  # no connection within sock_connect / pool
        raise httpx.ConnectTimeout(str(exc)) from exc
    except TimeoutError as exc:  # connected, but Reusely did not answer in time
        raise httpx.ReadTimeout(str(exc)) from exc
    except aiohttp.ClientConnectorError as exc:
        raise httpx.ConnectError(str(exc)) from exc
    except (aiohttp.ClientError, OSError) as exc:
        raise httpx.RemoteProtocolError(str(exc) or type(exc).__name__) from exc


class _Body(httpx.AsyncByteStream):
    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _mapped():
            async for chunk in self._response.content.iter_any():
                yield chunk

    async def aclose(self) -> None:
        # Fully read: the connection goes back to the pool; otherwise it is closed.
        self._response.release()


class _RequestBody:
    """The request body for aiohttp, remembering why its source stopped.

    aiohttp reports a failure of the body's source as a connection error; the
    gateway's own reasons (a body over the limit, a caller gone) must come out
    as themselves.
    """

    def __init__(self, stream: httpx.AsyncByteStream) -> None:
        self._stream = stream
        self.error: BaseException | None = None

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._stream:
                yield chunk
        except Exception as exc:
            self.error = exc
            raise


class AiohttpTransport(httpx.AsyncBaseTransport):
    def __init__(self, *, max_connections: int, keepalive_expiry: float = 15.0) -> None:
        self._max_connections = max_connections
        self._keepalive_expiry = keepalive_expiry
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        # Created on first use, inside the running event loop, as aiohttp wants.
        connector = aiohttp.TCPConnector(limit=self._max_connections,
                                         keepalive_timeout=self._keepalive_expiry)
        self._session = aiohttp.ClientSession(
            connector=connector, cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=False,
            skip_auto_headers=SKIP_AUTO_HEADERS, trust_env=False, requote_redirect_url=False)
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        session = self._session or self._open()
        timeout: dict[str, Any] = request.extensions.get("timeout", {})
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw
                   if k.lower() != b"transfer-encoding"]  # aiohttp frames the body itself
        data: Any = None
        body = None
        if isinstance(request.stream, httpx.ByteStream):
            data = request.content or None
        elif request.stream is not None:
            body = _RequestBody(request.stream)  # type: ignore[arg-type]
            data = body.chunks()
        try:
            with _mapped():
                response = await session.request(
                    request.method, yarl.URL(str(request.url), encoded=True), headers=headers,
                    data=data, allow_redirects=False, compress=None,
                    timeout=aiohttp.ClientTimeout(total=None, connect=timeout.get("pool"),
                                                  sock_connect=timeout.get("connect"),
                                                  sock_read=timeout.get("read")))
        except httpx.TransportError:
            if body is not None and body.error is not None:
                raise body.error from None
            raise
        return httpx.Response(status_code=response.status, headers=list(response.raw_headers),
                              stream=_Body(response), request=request,
                              extensions={"http_version": b"HTTP/1.1"})

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
