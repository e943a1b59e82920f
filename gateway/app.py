"""`create_app(settings)`: the gateway as one ASGI application.

The request path is plain calls in one place (`Gateway._handle`), the cheap
refusals first and the body last:

    health                          /healthz, /readyz: never routed
    routes.match                    400 invalid_path, 404, 405
    cors                            a preflight answered (204 / 403); 403 origin_not_allowed
    access.caller, .authorize       401, 403
    credentials.headers_for         503 credential_not_configured
    idempotency.claim               a replay, 409, 422, 400 (routes with `idempotency`)
    forwarding.resolve              the caller's address; X-Forwarded-* to send
    limits.cheap                    429 before a body-keyed route's body is read
    body                            413, 415, 400 invalid_body
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
from collections.abc import AsyncIterator
from typing import Any

from limits.aio.storage import Storage
from prometheus_client import CollectorRegistry

from gateway import __version__, body
from gateway.access import Access, Caller
from gateway.accesslog import AccessLog
from gateway.cacheflight import ResponseCache
from gateway.config import Route, Settings
from gateway.cooldown import Cooldowns
from gateway.cors import CorsPolicy
from gateway.credentials import CredentialSet, status_of
from gateway.environment import load_settings
from gateway.errors import (
    ClientDisconnected,
    ConfigError,
    CredentialNotConfigured,
    GatewayError,
    Headers,
    InternalError,
    RateLimited,
    RateLimiterUnavailable,
    StoreError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from gateway.exchange import Exchange
from gateway.forward import Forwarder, Outgoing
from gateway.forwarding import Forwarding
from gateway.headers import clean_request_headers
from gateway.health import PATHS as HEALTH
from gateway.health import Health
from gateway.idempotency import Claim, Idempotency, Replay, fingerprint
from gateway.limiter import LimitCheck, Limiter
from gateway.limitkeys import LimitKeys
from gateway.logsetup import hide_in_logs
from gateway.metrics import Metrics, method_label
from gateway.respond import Receive, Reply, Scope, Send
from gateway.routing import RouteTable, check_path
from gateway.store import Store
from gateway.tokens import TokenTable
from gateway.upstream import Transport, Upstream, ascii_target

log = logging.getLogger("gateway")
_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._-]{1,128}$")


class Gateway:
    def __init__(self, settings: Settings, *, registry: CollectorRegistry | None = None,
                 transport: Transport | None = None, storage: Storage | None = None) -> None:
        policy = settings.policy
        self.settings = settings
        self.metrics = Metrics(registry or CollectorRegistry(), version=__version__)
        self.access_log = AccessLog()
        self.routes = RouteTable(policy.routes)
        self.cors = CorsPolicy(policy.cors, policy.routes)
        self.access = Access(TokenTable(policy.clients))
        self.credentials = CredentialSet(settings.credentials, policy.routes)
        self.forwarding = Forwarding(policy.limits.trusted_proxies)
        self.store = Store(settings.redis_url, budget=policy.limits.timeout, storage=storage)
        keys = LimitKeys(settings.limit_key)
        self.limiter = Limiter(settings, self.store, keys, self.metrics)
        self.cooldowns = Cooldowns(settings, self.store, keys, self.metrics)
        self.idempotency = Idempotency(self.store, keys)
        self.health = Health(settings, self.store)
        secret_values = tuple(s.reveal().encode("latin-1")
                              for s in settings.credentials.values() if s is not None)
        self.upstream = Upstream(settings, transport=transport)
        self.cache = ResponseCache(self.store, keys)
        self.forwarder = Forwarder(self.upstream, self.cooldowns, self.cache, self.metrics,
                                   secret_values)

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
        settings = self.settings
        self.cooldowns.begin_polling()
        for warning in settings.warnings:
            log.warning("%s", warning)
        enabled = [r.name for r in settings.policy.routes if r.name not in settings.disabled_routes]
        log.info("routes enabled: %s", ", ".join(enabled) or "none")
        log.info("gateway %s ready: %d routes, %d clients, credentials %s, upstream %s",
                 __version__, len(settings.policy.routes), len(settings.policy.clients),
                 ", ".join(f"{k} {v}" for k, v in status_of(settings.credentials).items()),
                 settings.base_url_display)
        self.health.ready = True

    async def shutdown(self) -> None:
        self.health.ready = False
        await self.forwarder.aclose()
        await self.upstream.aclose()
        await self.cooldowns.aclose()
        await self.store.aclose()

    # -- one request --------------------------------------------------------

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        start = time.perf_counter()
        headers: dict[bytes, bytes] = dict(scope["headers"])
        sent_id = headers.get(b"x-request-id")
        request_id = sent_id if sent_id and _REQUEST_ID.match(sent_id) else os.urandom(16).hex(
        ).encode()
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
            self.access_log.record({
                "request_id": ex.request_id.decode(), "client": ex.client, "route": ex.route,
                "method": ex.method, "path": ex.path, "status": ex.status,
                "duration_ms": round(elapsed * 1000, 3), "upstream_status": ex.upstream_status,
                "limited": ex.limited,
            })

    async def _refuse(self, exc: GatewayError, reply: Reply) -> None:
        ex = reply.ex
        if isinstance(exc, UpstreamTimeout | UpstreamUnavailable):
            self.metrics.upstream_errors.labels(ex.route, exc.kind).inc()
        ex.limited = ex.limited or isinstance(exc, RateLimited)
        if ex.started:  # too late for an answer: the connection is cut short
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
        if route.idempotency and (key := Idempotency.key_of(route, scope["headers"])):
            read = await self._read_whole(route, headers, receive)
            found = await self._claim(route, caller, key, fingerprint(ex.method, target, read))
            if isinstance(found, Replay):
                self.metrics.idempotent_replays.labels(route.name).inc()
                await reply.whole(found.status, found.headers, found.body)
                return
            claim = found
        try:
            await self._limit_and_forward(scope, headers, receive, reply, route, caller,
                                          target, read, claim)
        finally:
            if claim is not None and not claim.settled:
                try:  # the gateway's own answer, or an error: the key is free again
                    await claim.free()
                except StoreError:
                    log.warning("could not free an idempotency key; its marker will expire")

    async def _limit_and_forward(self, scope: Scope, headers: dict[bytes, bytes],
                                 receive: Receive, reply: Reply, route: Route, caller: Caller,
                                 target: str, read: bytes | None, claim: Claim | None) -> None:
        ex = reply.ex
        client = scope.get("client")
        network = self.forwarding.resolve(client[0] if client else "0.0.0.0",
                                          headers.get(b"x-forwarded-for"),
                                          scope.get("scheme", "http"),
                                          headers.get(b"x-forwarded-proto"))
        limits = self.limiter.begin(route, caller.client, ip_key=network.limit_key,
                                    headers=headers)
        content: bytes | AsyncIterator[bytes] | None = read
        values: dict[str, str] = {}
        if route.body_fields:
            content, values = await self._read_keyed(route, scope, headers, receive, limits, read)
        if limits is not None:
            values = limits.values(values)
            ex.headers += await limits.full(values, self.cooldowns.keyed(route, values))
        if read is None and not route.body_fields:
            content = self._stream(route, headers, receive)
        out = [*clean_request_headers(scope["headers"]), *self._credentials(route),
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

    async def _claim(self, route: Route, caller: Caller, key: str,
                     print_: bytes) -> Claim | Replay | None:
        """The key claimed, or the answer to replay; Redis failing follows `on_error`."""
        try:
            return await self.idempotency.claim(route, caller.name, key, print_)
        except StoreError as exc:
            if exc.kind == "busy" or route.on_error == "deny":
                raise RateLimiterUnavailable() from exc
            log.warning("idempotency keys unavailable (%s): handling the request without",
                        exc.kind)
            return None

    @staticmethod
    async def _read_whole(route: Route, headers: dict[bytes, bytes], receive: Receive) -> bytes:
        body.check_length(headers, route.max_body_bytes)
        return await body.read(receive, route.max_body_bytes) if body.has_body(headers) else b""

    @staticmethod
    async def _read_keyed(route: Route, scope: Scope, headers: dict[bytes, bytes],
                          receive: Receive, limits: LimitCheck | None,
                          read: bytes | None) -> tuple[bytes, dict[str, str]]:
        """A body-keyed route's body, read once and bounded, and the values it is counted by."""
        if limits is not None:
            await limits.cheap()
        body.check_query(scope["query_string"], route.body_fields)
        if read is None:
            body.check_length(headers, route.max_body_bytes)
            if not body.has_body(headers):
                return b"", {}
        body.check_media_type(scope["headers"])
        raw = read if read is not None else await body.read(receive, route.max_body_bytes)
        return raw, body.keyed_values(raw, route.body_fields)

    @staticmethod
    def _stream(route: Route, headers: dict[bytes, bytes],
                receive: Receive) -> AsyncIterator[bytes] | None:
        body.check_length(headers, route.max_body_bytes)
        return body.stream(receive, route.max_body_bytes) if body.has_body(headers) else None


def create_app(settings: Settings, **kwargs: Any) -> Gateway:
    return Gateway(settings, **kwargs)


def create_app_from_env() -> Gateway:
    """The gunicorn worker factory: settings from the environment `serve` prepared.

    The master validated the policy and passes its text in GATEWAY_POLICY_TEXT
    (after a SIGHUP, the last good one), so a worker never boots on a bad file.
    """
    from gateway.metrics import multiprocess_registry

    environ = os.environ
    text = environ.get("GATEWAY_POLICY_TEXT")
    try:
        settings = load_settings(environ, text=text,
                                 source=environ.get("GATEWAY_POLICY_SOURCE"))
    except ConfigError as exc:
        for problem in exc.problems:
            log.error("configuration: %s", problem)
        raise SystemExit(2) from None
    secrets = tuple(s.reveal() for s in settings.credentials.values() if s is not None)
    if settings.limit_key_secret is not None:
        secrets += (settings.limit_key_secret.reveal(),)
    hide_in_logs(secrets)
    registry = multiprocess_registry() if environ.get("PROMETHEUS_MULTIPROC_DIR") else None
    try:
        return create_app(settings, registry=registry)
    except Exception as exc:  # noqa: BLE001 - reported without a traceback
        log.error("the gateway cannot start: %s: %s", type(exc).__name__, exc)
        raise SystemExit(3) from None
