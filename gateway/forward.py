"""After the limits: Reusely's answer, what it means, and what the gateway keeps of it.

In order, for one request that passed every check:

    a GET on a cache_ttl route   the cache: a hit, a stale copy, or one request to Reusely
                                 for everyone waiting on the same answer (cachedread.py)
    cooldowns.check_route        429 upstream_rate_limited while Reusely asked to wait
    upstream.send                502 upstream_unavailable, 504 upstream_timeout
    Reusely's 401                502 upstream_credentials_rejected; but a GET or HEAD sent
                                 with a credential whose file has changed since is sent
                                 once more, with the new value
    Reusely's 429                a cooldown starts; the answer passes through unchanged
    keep                         for an Idempotency-Key, before the last byte reaches
                                 the caller
    reply.stream                 everything else, as it arrives
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Collection
from dataclasses import dataclass

from gateway.cachedread import CachedRead
from gateway.cacheflight import ResponseCache
from gateway.config import Route
from gateway.cooldown import Cooldowns
from gateway.credwatch import CredentialWatcher
from gateway.errors import Headers, UpstreamCredentialsRejected, UpstreamTimeout
from gateway.exchange import Exchange
from gateway.idempotency import MAX_KEPT_BYTES, Claim, keepable
from gateway.metrics import Metrics
from gateway.respond import Receive, Reply
from gateway.upstream import Upstream, UpstreamResponse

log = logging.getLogger("gateway.forward")
# Sent once more after Reusely's 401 when the credentials sent were stale: the
# methods that change nothing. A POST reaches Reusely at most once.
RETRIED_ON_401 = frozenset({"GET", "HEAD"})


@dataclass(slots=True)
class Outgoing:
    """One request as it goes to Reusely."""

    route: Route
    method: str
    target: str
    headers: Headers
    content: bytes | AsyncIterator[bytes] | None
    values: dict[str, str]  # the keyed values its limits counted (cooldowns key on them)
    accept_encoding: bytes  # part of a cached answer's key


class Forwarder:
    def __init__(self, upstream: Upstream, cooldowns: Cooldowns, cache: ResponseCache,
                 metrics: Metrics, secret_values: Collection[bytes], *,
                 credentials: CredentialWatcher | None = None) -> None:
        """`secret_values`: every credential value held since start-up (a live view)."""
        self._upstream, self._cooldowns = upstream, cooldowns
        self._metrics, self._secret_values = metrics, secret_values
        self._credentials = credentials
        self._cached = CachedRead(self._send, cooldowns, cache, metrics)

    async def forward(self, out: Outgoing, receive: Receive, reply: Reply,
                      claim: Claim | None) -> None:
        route, ex = out.route, reply.ex
        if route.cache_ttl and out.method == "GET":
            await self._cached.forward(out, receive, reply)
            return
        self._cooldowns.check_route(route)
        response = await self._send(out, ex)
        if response.status == 429:
            await self._cooldowns.start(route, out.values, response.header(b"retry-after"))
        if claim is not None:
            await self._keep_for_key(response, claim, receive, reply, route.timeout.read)
            return
        await reply.stream(response, receive, stall=route.timeout.read)

    async def aclose(self) -> None:
        await self._cached.aclose()

    async def _send(self, out: Outgoing, ex: Exchange) -> UpstreamResponse:
        """One request to Reusely; its 401 to the gateway's own credentials becomes ours.

        After a 401 the route's credential files are looked at (`renew`): when
        the values sent are no longer the current ones (a key rotated while the
        request was on its way, or before this worker saw the file change), a
        GET or HEAD whose body is not a stream is sent once more with the new
        values. Anything else, or a second 401: 502. Reusely's 401 body is
        read and dropped, never shown.
        """
        route = out.route
        response = await self._send_once(out, ex)
        if response.status != 401:
            return response
        await response.discard()
        renewed = (await self._credentials.renew(route, out.headers)
                   if self._credentials is not None else None)
        if (renewed is not None and out.method in RETRIED_ON_401
                and not isinstance(out.content, AsyncIterator)):
            log.warning("Reusely refused a credential of route %s that has changed since; "
                        "sending the request once more with the new value", route.name)
            out.headers = renewed
            response = await self._send_once(out, ex)
            if response.status != 401:
                return response
            await response.discard()
        log.error("Reusely refused the gateway's credentials (401) on route %s: a lapsed "
                  "subscription or a regenerated key", route.name)
        raise UpstreamCredentialsRejected()

    async def _send_once(self, out: Outgoing, ex: Exchange) -> UpstreamResponse:
        route = out.route
        sent_at = time.perf_counter()
        response = await self._upstream.send(route, out.method, out.target, out.headers,
                                             out.content, secret_values=self._secret_values)
        self._metrics.upstream_duration.labels(route.name).observe(time.perf_counter() - sent_at)
        self._metrics.upstream_responses.labels(route.name, str(response.status)).inc()
        ex.upstream_status = response.status
        return response

    @staticmethod
    async def _keep_for_key(response: UpstreamResponse, claim: Claim, receive: Receive,
                            reply: Reply, stall: float) -> None:
        """Keep a keepable answer for its Idempotency-Key, or free the key, then answer."""
        length = response.content_length
        if keepable(response.status) and (length is None or length <= MAX_KEPT_BYTES):
            try:  # as a whole within one read timeout: the in-flight marker outlives it
                async with asyncio.timeout(stall):
                    data, complete = await response.read_up_to(MAX_KEPT_BYTES)
            except TimeoutError:
                await response.aclose()
                raise UpstreamTimeout() from None
            if complete:
                await claim.keep(response.status, response.headers, data)
                await reply.whole(response.status, response.headers, data)
                return
            await claim.release()  # too large to keep: streamed, the key free again
            await reply.stream(response, receive, stall=stall, prefix=data)
            return
        await claim.release()
        await reply.stream(response, receive, stall=stall)

