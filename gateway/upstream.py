"""The one httpx client to Reusely: streaming, retries, errors (header hygiene: headers.py).

httpx exceptions are translated into ours here and nowhere else:

    httpx.TimeoutException          -> UpstreamTimeout      (kind "timeout")
    httpx.ConnectError              -> UpstreamUnavailable  (kind "connect")
    any other httpx.TransportError  -> UpstreamUnavailable  (kind "protocol")

A connection that could not be made is retried `route.retries` times, for
GET, HEAD and OPTIONS only; a POST reaches Reusely at most once.

What a gateway must not have is absent: a cookie jar (it would carry one
caller's cookies to the next), proxy variables from the environment,
redirects (see `transport.py`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx

from gateway.config import Route, Settings
from gateway.errors import UpstreamTimeout, UpstreamUnavailable
from gateway.headers import clean_response_headers
from gateway.transport import AiohttpTransport

IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS"})


def ascii_target(raw_path: bytes, query: bytes) -> str:
    """The request target as received; non-ASCII bytes (invalid in HTTP) percent-encoded."""
    target = raw_path + (b"?" + query if query else b"")
    if target.isascii():
        return target.decode("ascii")
    return "".join(chr(b) if b < 128 else f"%{b:02X}" for b in target)


@dataclass
class UpstreamResponse:
    status: int
    headers: list[tuple[bytes, bytes]]
    response: httpx.Response

    async def body(self) -> AsyncIterator[bytes]:
        """The raw body bytes as they arrive; httpx errors become ours."""
        try:
            async for chunk in self.response.aiter_raw():
                yield chunk
        except httpx.TimeoutException as exc:
            raise UpstreamTimeout() from exc
        except httpx.TransportError as exc:
            raise UpstreamUnavailable("protocol") from exc

    async def aclose(self) -> None:
        await self.response.aclose()


def _timeouts(route: Route) -> dict[str, float]:
    t = route.timeout
    return {"connect": t.connect, "read": t.read, "write": t.write, "pool": t.pool}


class Upstream:
    """Requests to Reusely through one httpx transport (the seam tests and bench use).

    The transport is called directly rather than through `httpx.AsyncClient`:
    what the client adds on top (auth flows, redirects, a cookie jar, event
    hooks) is what a gateway must turn off anyway, and its layers cost ~15%
    of the worker's CPU per request (bench/PROFILE.md). Timeouts travel per
    route in each request's `timeout` extension.
    """

    def __init__(self, settings: Settings, *,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        up = settings.policy.upstream
        self.transport = transport or AiohttpTransport(max_connections=up.max_connections)
        self._base = settings.base_url
        self._timeouts = {r.name: _timeouts(r) for r in settings.policy.routes}
        self._secret_values = tuple(s.reveal().encode("latin-1")
                                    for s in settings.credentials.values() if s is not None)

    async def aclose(self) -> None:
        await self.transport.aclose()

    async def send(self, route: Route, method: str, target: str,
                   headers: list[tuple[bytes, bytes]], content: Any) -> UpstreamResponse:
        """Send one request; retry a failed connect for idempotent methods."""
        request = httpx.Request(method, self._base + target, headers=headers, content=content,
                                extensions={"timeout": self._timeouts[route.name]})
        attempts = 1 + (route.retries if method in IDEMPOTENT else 0)
        for attempt in range(attempts):
            try:
                response = await self.transport.handle_async_request(request)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                if attempt + 1 < attempts:
                    continue
                if isinstance(exc, httpx.ConnectTimeout):
                    raise UpstreamTimeout() from exc
                raise UpstreamUnavailable("connect") from exc
            except httpx.TimeoutException as exc:
                raise UpstreamTimeout() from exc
            except httpx.TransportError as exc:
                raise UpstreamUnavailable("protocol") from exc
            return UpstreamResponse(response.status_code,
                                    clean_response_headers(response.headers.raw,
                                                           self._secret_values), response)
        raise AssertionError("unreachable")
