"""`create_app(settings)`: the gateway as one ASGI application.

The request path is plain calls in one place (`Gateway._handle`), the cheap
refusals first and the body last:

    health                          /healthz, /readyz: never routed
    quota                           GET /gateway/quota: 401, 405, 503; never routed (quota.py)
    routes.match                    400 invalid_path, 404, 405
    cors                            a preflight answered (204 / 403); 403 origin_not_allowed
    access.caller, .authorize       401, 403
    credentials.headers_for         503 credential_not_configured
    idempotency.claim               a replay, 409, 422, 400 (routes with `idempotency`)
    forwarding.resolve              the caller's address; X-Forwarded-* to send
    limits.cheap                    429 before a body-keyed route's body is read
    body (keyedbody)                413, 415, 400 invalid_body
    limits.full                     429 (ours, or Reusely's cooldown), 503
    forwarder.forward               the cache, Reusely's answer and what it means (forward.py)

Every answer is written by `respond.Reply`; every refusal is a GatewayError
raised by the module that owns the rule and answered once, in `_http`, which
also times the request and writes its metrics and access line. Anything else
is answered by the last-resort handler with the same JSON shape.

The application is a plain ASGI callable rather than a Starlette router:
every microsecond here is paid by every widget request (see bench/), and a
proxy needs none of the router's features. Starlette supplies the path syntax.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from limits.aio.storage import Storage
from prometheus_client import CollectorRegistry

from gateway import __version__, body, keyedbody, startup
from gateway.access import Access, Caller
from gateway.accesslog import AccessLog
from gateway.cacheflight import ResponseCache
from gateway.config import Route
from gateway.cooldown import Cooldowns
from gateway.cors import CorsPolicy
from gateway.credentials import CredentialSet
from gateway.credwatch import POLL_SECONDS, CredentialWatcher
from gateway.errors import (
    ClientDisconnected,
    CredentialNotConfigured,
    GatewayError,
    Headers,
    InternalError,
    MethodNotAllowed,
    RateLimited,
    Unauthorized,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from gateway.exchange import Exchange
from gateway.forward import Forwarder, Outgoing
from gateway.forwarding import Forwarding, Network
from gateway.headers import clean_request_headers, keep_last
from gateway.health import NO_STORE, Health
from gateway.health import PATHS as HEALTH
from gateway.idempotency import Claim, Idempotency, Replay, fingerprint
from gateway.limiter import Limiter
from gateway.limitkeys import LimitKeys
from gateway.metrics import Metrics, method_label
from gateway.quota import QUOTA_METHODS, QUOTA_PATH, Quotas
from gateway.redact import mask
from gateway.respond import Receive, Reply, Scope, Send
from gateway.routing import RouteTable, check_path
from gateway.settings import Settings
from gateway.startup import LogSecrets
from gateway.store import Store
from gateway.tokens import TokenTable
from gateway.upstream import Transport, Upstream, ascii_target

log = logging.getLogger("gateway")
_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._-]{1,128}$")


def _personal(request_id: bytes) -> bool:
    """A caller's request id that looks like a phone: it would reach the logs."""
    text = request_id.decode("ascii")
    return mask(text) != text


class Gateway:
    def __init__(self, settings: Settings, *, registry: CollectorRegistry | None = None,
                 transport: Transport | None = None, storage: Storage | None = None,
                 metrics_flush_seconds: float | None = None,
                 hide_in_logs: Callable[[tuple[str, ...]], None] | None = None,
                 credential_poll: float = POLL_SECONDS) -> None:
        """`metrics_flush_seconds`: how often metrics counted in memory are written (None:
        at once); `hide_in_logs` is told every secret value the logs must hide, again
        whenever a credential file brings a new one; `credential_poll` is how often
        credential files are looked at besides their directories' watch (seconds)."""
        policy = settings.policy
        self.settings = settings
        self.metrics = Metrics(registry or CollectorRegistry(), version=__version__,
                               flush_seconds=metrics_flush_seconds)
        self.access_log = AccessLog()
        self.routes = RouteTable(policy.routes)
        self.cors = CorsPolicy(policy.cors, policy.routes)
        self.access = Access(TokenTable(policy.clients))
        self.credentials = CredentialSet(settings.credentials, policy.routes)
        hide_secrets = LogSecrets(settings, self.credentials, hide_in_logs)
        hide_secrets()
        self.credential_files = CredentialWatcher(
            self.credentials, settings.credential_files, self.metrics, poll=credential_poll,
            on_new_value=hide_secrets)
        self.forwarding = Forwarding(policy.limits.trusted_proxies)
        self.store = Store(settings.redis_url, budget=policy.limits.timeout, storage=storage)
        keys = LimitKeys(settings.limit_key)
        self.limiter = Limiter(settings, self.store, keys, self.metrics)
        self.cooldowns = Cooldowns(settings, self.store, keys, self.metrics)
        self.idempotency = Idempotency(self.store, keys)
        self.health = Health(settings, self.store)
        self.quotas = Quotas(settings, self.limiter, self.store)
        self.upstream = Upstream(settings, transport=transport)
        self.cache = ResponseCache(self.store, keys)
        self.forwarder = Forwarder(self.upstream, self.cooldowns, self.cache, self.metrics,
                                   self.credentials.seen, credentials=self.credential_files)

    # -- ASGI ---------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        else:  # websocket: not proxied
            await send({"type": "websocket.close", "code": 1008})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.startup()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def startup(self) -> None:
        self.cooldowns.begin_polling()
        self.credential_files.start()
        startup.report(self.settings, self.credentials)
        self.health.ready = True

    async def shutdown(self) -> None:
        self.health.ready = False
        await self.forwarder.aclose()
        self.access_log.flush()
        self.metrics.flush()
        await self.credential_files.aclose()
        await self.upstream.aclose()
        await self.cooldowns.aclose()
        await self.store.aclose()

    # -- one request --------------------------------------------------------

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        start = time.perf_counter()
        headers: dict[bytes, bytes] = dict(scope["headers"])
        sent_id = headers.get(b"x-request-id")
        if not (sent_id and _REQUEST_ID.match(sent_id) and not _personal(sent_id)):
            sent_id = os.urandom(16).hex().encode()
        request_id = sent_id
        ex = Exchange(request_id, scope["method"], scope["path"])
        reply = Reply(send, ex)
        self.metrics.in_flight.inc()
        try:
            await self._handle(scope, headers, receive, reply)
        except GatewayError as exc:
            await self._refuse(exc, reply)
        except Exception as exc:
            log.error("unexpected error handling a request", exc_info=exc)
            await self._refuse(InternalError(), reply)
        finally:
            self.metrics.in_flight.dec()
            elapsed = time.perf_counter() - start
            self.metrics.observe_request(ex.route, method_label(ex.method), ex.status,
                                         ex.client, elapsed)
            self.access_log.record(ex.request_id.decode(), ex.client, ex.route, ex.method,
                                   ex.path, ex.status, round(elapsed * 1000, 3),
                                   ex.upstream_status, ex.limited)

    def record_server_answer(self, request_id: str, method: str, path: str, status: int,
                             seconds: float) -> None:
        """An answer the server gave before this app saw the request (a 431 for a head
        over its bounds): counted and logged like every other answer."""
        self.metrics.observe_request("unmatched", method_label(method), status, "public",
                                     seconds)
        self.access_log.record(request_id, "public", "unmatched", method, path, status,
                               round(seconds * 1000, 3), None, False)

    async def _refuse(self, exc: GatewayError, reply: Reply) -> None:
        ex = reply.ex
        if isinstance(exc, UpstreamTimeout | UpstreamUnavailable):
            self.metrics.upstream_errors.labels(ex.route, exc.kind).inc()
        if isinstance(exc, RateLimited):
            ex.limited = True
            ex.limit_headers = []  # the refusal carries its own, as the check found them
        if ex.started:  # too late for an answer: the connection is cut short
            ex.status = exc.status_code  # recorded as what became of it: 499, 502, 504
            raise exc
        if isinstance(exc, ClientDisconnected):
            ex.status = exc.status_code  # nobody to answer
            return
        await reply.error(exc)

    async def _handle(self, scope: Scope, headers: dict[bytes, bytes], receive: Receive,
                      reply: Reply) -> None:
        ex = reply.ex
        if ex.path in HEALTH and ex.method in ("GET", "HEAD"):
            await self.health.answer(ex.path, reply)
            return
        if ex.path == QUOTA_PATH:
            await self._quota(scope, headers, reply)
            return
        raw_path: bytes = scope.get("raw_path") or ex.path.encode()
        check_path(raw_path)
        preflight = self.cors.is_preflight(ex.method, headers)
        route = self.routes.match(
            self.cors.requested_method(headers) if preflight else ex.method, ex.path)
        ex.route = route.name
        if preflight:
            await reply.whole(204, self.cors.preflight(route, headers), b"")
            return
        ex.headers += self.cors.actual(route, headers)
        caller = self.access.caller(headers.get(b"authorization"))
        ex.client = caller.name
        self.access.authorize(route, caller)
        self._credentials(route)
        target = ascii_target(raw_path, scope["query_string"])
        read: bytes | None = None  # the body, when an Idempotency-Key made us read it first
        claim: Claim | None = None
        if route.idempotency and (key := Idempotency.key_of(route, ex.method, scope["headers"])):
            read = await body.read_whole(route, headers, receive)
            found = await self.idempotency.claim(route, caller.name, key,
                                                 fingerprint(ex.method, target, read))
            if isinstance(found, Replay):
                self.metrics.idempotent_replays.labels(route.name).inc()
                await reply.whole(found.status, found.headers, found.body)
                return
            claim = found
        try:
            await self._limit_and_forward(scope, headers, receive, reply, route, caller,
                                          target, read, claim)
        finally:
            if claim is not None:
                await claim.release()  # unless kept: the gateway's own answer, or an error

    async def _quota(self, scope: Scope, headers: dict[bytes, bytes], reply: Reply) -> None:
        """What is left of the calling client's limits: read, never consumed nor forwarded."""
        ex = reply.ex
        ex.headers.append(NO_STORE)
        if ex.method not in QUOTA_METHODS:
            raise MethodNotAllowed(list(QUOTA_METHODS))
        caller = self.access.caller(headers.get(b"authorization"))
        ex.client = caller.name
        if caller.client is None:
            raise Unauthorized("A client's bearer token is required to see its quota.")
        await reply.json(200, await self.quotas.answer(
            caller.client, ip_key=self._network(scope, headers).limit_key, headers=headers))

    def _network(self, scope: Scope, headers: dict[bytes, bytes]) -> Network:
        client = scope.get("client")
        return self.forwarding.resolve(client[0] if client else "0.0.0.0",
                                       headers.get(b"x-forwarded-for"),
                                       scope.get("scheme", "http"),
                                       headers.get(b"x-forwarded-proto"))

    async def _limit_and_forward(self, scope: Scope, headers: dict[bytes, bytes],
                                 receive: Receive, reply: Reply, route: Route, caller: Caller,
                                 target: str, read: bytes | None, claim: Claim | None) -> None:
        ex = reply.ex
        network = self._network(scope, headers)
        limits = self.limiter.begin(route, caller.client, ip_key=network.limit_key,
                                    headers=headers)
        content: bytes | AsyncIterator[bytes] | None = read
        values: dict[str, str] = {}
        if route.body_fields:
            content, values = await keyedbody.read(route, scope, headers, receive, limits,
                                                   read, ex)
        if limits is not None:
            values = limits.values(values)
            ex.limit_headers = await limits.full(values, self.cooldowns.keyed(route, values))
        if read is None and not route.body_fields:
            content = await body.outgoing(route, ex.method, headers, receive)
        sent = clean_request_headers(scope["headers"])
        if limits is not None and limits.counted_headers:
            sent = keep_last(sent, limits.counted_headers)
        out = [*sent, *self._credentials(route),
               (b"x-forwarded-for", network.forwarded_for),
               (b"x-forwarded-proto", network.forwarded_proto),
               (b"x-request-id", ex.request_id)]
        await self.forwarder.forward(
            Outgoing(route, ex.method, target, out, content, values,
                     headers.get(b"accept-encoding", b"")), receive, reply, claim)

    def _credentials(self, route: Route) -> Headers:
        """The route's Reusely credentials as headers; 503 while one is missing."""
        found = self.credentials.headers_for(route.name)
        if found is None:
            raise CredentialNotConfigured()
        return found


def create_app(settings: Settings, **kwargs: Any) -> Gateway:
    return Gateway(settings, **kwargs)
