"""`create_app(settings)`: the gateway as one ASGI application.

The request path is plain calls in one place (`Gateway._handle`), the cheap
refusals first and the body last:

    health                          /healthz, /readyz: never routed
    routes.match                    400 invalid_path, 404, 405
    cors                            a preflight answered (204 / 403); 403 origin_not_allowed
    access.caller, .authorize       401, 403
    credentials.headers_for         503 credential_not_configured
    forwarding.resolve              the caller's address; X-Forwarded-* to send
    limits.cheap                    429 before a body-keyed route's body is read
    body                            413, 415, 400 invalid_body
    limits.full                     429 (ours, or Reusely's cooldown), 503
    upstream.send                   502, 504
    reply.stream                    Reusely's answer, as it arrives

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
from gateway.access import Access
from gateway.accesslog import AccessLog, hide_in_logs
from gateway.cache import ResponseCache, cacheable
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
    UpstreamCredentialsRejected,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from gateway.exchange import Exchange
from gateway.forwarding import Forwarding, Network
from gateway.limiter import LimitCheck, Limiter
from gateway.limitkeys import LimitKeys, limit_key_secret
from gateway.metrics import Metrics, method_label
from gateway.respond import Receive, Reply, Scope, Send
from gateway.routing import RouteTable, check_path
from gateway.store import Store
from gateway.tokens import TokenTable
from gateway.upstream import (
    Transport,
    Upstream,
    UpstreamResponse,
    ascii_target,
    clean_request_headers,
)

log = logging.getLogger("gateway")
_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._-]{1,128}$")
HEALTH = ("/healthz", "/readyz")


class Gateway:
    def __init__(self, settings: Settings, *, registry: CollectorRegistry | None = None,
                 transport: Transport | None = None, storage: Storage | None = None) -> None:
        policy = settings.policy
        self.settings = settings
        self.routes = RouteTable(policy.routes)
        self.cors = CorsPolicy(policy.cors, policy.routes)
        self.access = Access(TokenTable(policy.clients))
        self.credentials = CredentialSet(settings.credentials, policy.routes)
        self.forwarding = Forwarding(policy.limits.trusted_proxies)
        self.metrics = Metrics(registry or CollectorRegistry(), version=__version__)
        self.access_log = AccessLog()
        self.cache = ResponseCache()
        self._transport = transport
        self._storage = storage
        self._secret_values = tuple(s.reveal().encode() for s in settings.credentials.values()
                                    if s is not None)
        self.upstream: Upstream | None = None
        self.limiter: Limiter | None = None
        self.cooldowns: Cooldowns | None = None
        self.store: Store | None = None
        self.ready = False

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
                try:
                    await self.startup()
                except Exception as exc:  # noqa: BLE001 - reported without a traceback
                    await send({"type": "lifespan.startup.failed",
                                "message": f"{type(exc).__name__}: {exc}"})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def startup(self) -> None:
        settings = self.settings
        self.upstream = Upstream(settings, transport=self._transport)
        self.store = Store(settings.redis_url, budget=settings.policy.limits.timeout,
                           storage=self._storage)
        keys = LimitKeys(limit_key_secret(settings))
        self.limiter = Limiter(settings, self.store, keys, self.metrics)
        self.cooldowns = Cooldowns(settings, self.store, keys, self.metrics)
        self.cooldowns.begin_polling()
        if not settings.redis_url:
            log.warning("GATEWAY_REDIS_URL is not set: rate limits are counted in this "
                        "process's memory, so each worker and replica counts on its own")
        enabled = []
        for route in settings.policy.routes:
            missing = self.credentials.missing(route.name)
            if missing:
                log.warning("route %s is disabled: credential %s missing", route.name,
                            ", ".join(missing))
            else:
                enabled.append(route.name)
        log.info("routes enabled: %s", ", ".join(enabled) or "none")
        log.info("gateway %s ready: %d routes, %d clients, credentials %s, upstream %s",
                 __version__, len(settings.policy.routes), len(settings.policy.clients),
                 ", ".join(f"{k} {v}" for k, v in status_of(settings.credentials).items()),
                 settings.base_url)
        self.ready = True

    async def shutdown(self) -> None:
        self.ready = False
        if self.upstream is not None:
            await self.upstream.aclose()
        if self.cooldowns is not None:
            await self.cooldowns.aclose()
        if self.limiter is not None:
            await self.limiter.aclose()

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
        method = ex.method
        if ex.path in HEALTH and method in ("GET", "HEAD"):
            await self._health(ex.path, reply)
            return
        raw_path: bytes = scope.get("raw_path") or ex.path.encode()
        check_path(raw_path)
        preflight = self.cors.is_preflight(method, headers)
        route = self.routes.match(self.cors.requested_method(headers) if preflight else method,
                                  ex.path)
        ex.route = route.name
        if preflight:
            await reply.whole(204, self.cors.preflight(route, headers), b"")
            return
        ex.headers += self.cors.actual(route, headers)
        caller = self.access.caller(headers.get(b"authorization"))
        ex.client = caller.name
        self.access.authorize(route, caller)
        credentials = self.credentials.headers_for(route.name)
        if credentials is None:
            raise CredentialNotConfigured()
        client = scope.get("client")
        network = self.forwarding.resolve(client[0] if client else "0.0.0.0",
                                          headers.get(b"x-forwarded-for"),
                                          scope.get("scheme", "http"),
                                          headers.get(b"x-forwarded-proto"))
        assert self.limiter is not None and self.cooldowns is not None
        limits = self.limiter.begin(route, caller.client, ip_key=network.limit_key,
                                    headers=headers)
        content: bytes | AsyncIterator[bytes] | None
        values: dict[str, str] = {}
        if route.body_fields:
            content, values = await self._read_keyed(route, scope, headers, receive, limits)
        if limits is not None:
            values = limits.values(values)
            ex.headers += await limits.full(values, self.cooldowns.keyed(route, values))
        if not route.body_fields:
            content = self._stream(route, headers, receive)
        await self._forward(route, scope, headers, network, credentials, content, values,
                            receive, reply)

    async def _read_keyed(self, route: Route, scope: Scope, headers: dict[bytes, bytes],
                          receive: Receive, limits: LimitCheck | None
                          ) -> tuple[bytes, dict[str, str]]:
        """A body-keyed route's body, read once and bounded, and the values it is counted by."""
        if limits is not None:
            await limits.cheap()
        body.check_query(scope["query_string"], route.body_fields)
        body.check_length(headers, route.max_body_bytes)
        if not body.has_body(headers):
            return b"", {}
        body.check_media_type(scope["headers"])
        raw = await body.read(receive, route.max_body_bytes)
        return raw, body.keyed_values(raw, route.body_fields)

    @staticmethod
    def _stream(route: Route, headers: dict[bytes, bytes],
                receive: Receive) -> AsyncIterator[bytes] | None:
        body.check_length(headers, route.max_body_bytes)
        return body.stream(receive, route.max_body_bytes) if body.has_body(headers) else None

    async def _forward(self, route: Route, scope: Scope, headers: dict[bytes, bytes],
                       network: Network, credentials: Headers,
                       content: bytes | AsyncIterator[bytes] | None, values: dict[str, str],
                       receive: Receive, reply: Reply) -> None:
        ex = reply.ex
        target = ascii_target(scope.get("raw_path") or ex.path.encode(), scope["query_string"])
        cache_key = None
        if route.cache_ttl and ex.method == "GET":
            cache_key = (route.name, target.encode(), headers.get(b"accept-encoding", b""))
            hit = self.cache.get(cache_key)
            if hit is not None:
                age = str(int(time.monotonic() - hit.stored_at)).encode()
                await reply.whole(hit.status, [*hit.headers, (b"age", age),
                                               (b"x-cache-status", b"hit")], hit.body)
                return
        assert self.cooldowns is not None
        self.cooldowns.check_route(route)
        out = [*clean_request_headers(scope["headers"]), *credentials,
               (b"x-forwarded-for", network.forwarded_for),
               (b"x-forwarded-proto", network.forwarded_proto),
               (b"x-request-id", ex.request_id)]
        response = await self._send(route, ex, target, out, content)
        if response.status == 429:
            await self.cooldowns.start(route, values, response.header(b"retry-after"))
        if cache_key is not None:
            length = cacheable(response.status, response.headers)
            if length is not None:
                data = await response.read()
                if len(data) == length:
                    self.cache.put(cache_key, response.status, response.headers, data,
                                   route.cache_ttl or 0)
                await reply.whole(response.status,
                                  [*response.headers, (b"x-cache-status", b"miss")], data)
                return
            ex.headers.append((b"x-cache-status", b"bypass"))
        await reply.stream(response, receive, stall=route.timeout.read)

    async def _send(self, route: Route, ex: Exchange, target: str, out: Headers,
                    content: bytes | AsyncIterator[bytes] | None) -> UpstreamResponse:
        """One request to Reusely; its 401 to the gateway's own credentials becomes ours."""
        assert self.upstream is not None
        sent_at = time.perf_counter()
        response = await self.upstream.send(route, ex.method, target, out, content,
                                            secret_values=self._secret_values)
        self.metrics.upstream_duration.labels(route.name).observe(time.perf_counter() - sent_at)
        self.metrics.upstream_responses.labels(route.name, str(response.status)).inc()
        ex.upstream_status = response.status
        if response.status == 401:
            await response.discard()
            log.error("Reusely refused the gateway's credentials (401) on route %s: a lapsed "
                      "subscription or a regenerated key", route.name)
            raise UpstreamCredentialsRejected()
        return response

    async def _health(self, path: str, reply: Reply) -> None:
        status, text = 200, b'{"status":"ok"}\n'
        if path == "/readyz":
            status, text = await self._readiness()
        await reply.json(status, text, [(b"cache-control", b"no-store")])

    async def _readiness(self) -> tuple[int, bytes]:
        if not self.ready or self.limiter is None:
            return 503, b'{"status":"not_ready","policy":"not loaded"}\n'
        if not self.settings.redis_url:
            return 200, b'{"status":"ok","policy":"loaded","redis":"memory"}\n'
        assert self.store is not None
        if await self.store.ready():
            return 200, b'{"status":"ok","policy":"loaded","redis":"up"}\n'
        if self.settings.policy.limits.on_error == "allow":
            return 200, b'{"status":"ok","policy":"loaded","redis":"down"}\n'
        return 503, b'{"status":"not_ready","policy":"loaded","redis":"down"}\n'


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
    return create_app(settings, registry=registry)
