"""`create_app(settings)`: the gateway as one ASGI application.

The request path is plain calls in one place, in this order:

    check_path / routes.match      400 invalid_path, 404, 405
    access.identify                401, 403 (and CORS preflight answered here)
    credentials.headers_for        503 credential_not_configured
    read body (body-keyed routes)  413, 400 invalid_body
    limiter.check                  429, 503 rate_limiter_unavailable
    upstream.send + stream         502, 504; Reusely's answer streams back

The application is a plain ASGI callable rather than a Starlette router:
every microsecond here is paid by every widget request (see bench/), and a
proxy needs none of the router's features. Starlette supplies the path syntax.
Errors are GatewayErrors raised by the modules above and rendered once here;
anything else is answered by the last-resort handler with the same JSON shape.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
from limits.aio.storage import Storage
from prometheus_client import CollectorRegistry

from gateway import __version__
from gateway.access import Access, cors_headers, preflight_headers
from gateway.accesslog import AccessLog
from gateway.cache import ResponseCache, cacheable
from gateway.config import LimitRule, Route, Settings
from gateway.credentials import CredentialSet, TokenTable, status_of
from gateway.environment import load_settings
from gateway.errors import (
    ClientDisconnected,
    ConfigError,
    CredentialNotConfigured,
    GatewayError,
    InternalError,
    OriginNotAllowed,
    PayloadTooLarge,
    UpstreamTimeout,
    UpstreamUnavailable,
    render,
)
from gateway.forwarding import Forwarding
from gateway.headers import clean_request_headers
from gateway.logsetup import hide_in_logs
from gateway.metrics import Metrics, method_label
from gateway.ratelimit import Decision, Limiter, body_values, create_storage
from gateway.respond import (
    Exchange,
    Receive,
    Scope,
    Send,
    read_body,
    send_and_cache,
    send_cached,
    send_empty,
    stream,
    stream_body,
)
from gateway.routing import RouteTable, check_path
from gateway.upstream import Upstream, ascii_target

log = logging.getLogger("gateway")
_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._-]{1,128}$")
_JSON = (b"content-type", b"application/json")


class Gateway:
    def __init__(self, settings: Settings, *, registry: CollectorRegistry | None = None,
                 transport: httpx.AsyncBaseTransport | None = None,
                 storage: Storage | None = None) -> None:
        policy = settings.policy
        self.settings = settings
        self.routes = RouteTable(policy.routes)
        self.credentials = CredentialSet(settings.credentials, policy.routes)
        self.access = Access(policy.cors, TokenTable(policy.clients))
        self.forwarding = Forwarding(policy.limits.trusted_proxies)
        self.metrics = Metrics(registry or CollectorRegistry(), version=__version__)
        self.access_log = AccessLog()
        self.cache = ResponseCache()
        self._transport = transport
        self._storage = storage
        self.upstream: Upstream | None = None
        self.limiter: Limiter | None = None
        self.ready = False
        self._no_client_rules: tuple[LimitRule, ...] = ()

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
        storage = self._storage or create_storage(settings)
        self.limiter = Limiter(settings, storage, secret=settings.limit_key)
        for warning in settings.warnings:
            log.warning("%s", warning)
        enabled = [r.name for r in settings.policy.routes if r.name not in settings.disabled_routes]
        log.info("routes enabled: %s", ", ".join(enabled) or "none")
        log.info("gateway %s ready: %d routes, %d clients, credentials %s, upstream %s",
                 __version__, len(settings.policy.routes), len(settings.policy.clients),
                 ", ".join(f"{k} {v}" for k, v in status_of(settings.credentials).items()),
                 settings.base_url_display)
        self.ready = True

    async def shutdown(self) -> None:
        self.ready = False
        if self.upstream is not None:
            await self.upstream.aclose()
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
        self.metrics.in_flight.inc()
        try:
            await self._handle(scope, headers, receive, send, ex)
        except GatewayError as exc:
            await self._refuse(exc, send, ex)
        except Exception as exc:
            log.error("unexpected error handling a request", exc_info=exc)
            await self._refuse(InternalError(), send, ex)
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

    async def _refuse(self, exc: GatewayError, send: Send, ex: Exchange) -> None:
        if isinstance(exc, UpstreamTimeout | UpstreamUnavailable):
            self.metrics.upstream_errors.labels(ex.route, exc.kind).inc()
        if ex.started or isinstance(exc, ClientDisconnected):
            ex.status = ex.status or exc.status_code
            if ex.started:  # too late for an answer: the connection is cut short
                raise exc
            return
        ex.status = exc.status_code
        body = render(exc.code, exc.message, ex.request_id.decode())
        out = [_JSON, (b"content-length", str(len(body)).encode()),
               (b"x-request-id", ex.request_id)]
        out += [(k.encode(), v.encode()) for k, v in exc.headers.items()]
        out += ex.extra_headers
        await send({"type": "http.response.start", "status": exc.status_code, "headers": out})
        await send({"type": "http.response.body", "body": body})

    async def _handle(self, scope: Scope, headers: dict[bytes, bytes], receive: Receive,
                      send: Send, ex: Exchange) -> None:
        method, path = ex.method, ex.path
        if path in ("/healthz", "/readyz") and method in ("GET", "HEAD"):
            await self._health(path, send, ex)
            return
        check_path(scope.get("raw_path") or path.encode())
        origin_raw = headers.get(b"origin")
        origin = origin_raw.decode("latin-1") if origin_raw is not None else None
        preflight = (method == "OPTIONS" and origin is not None
                     and b"access-control-request-method" in headers)
        wanted = headers[b"access-control-request-method"].decode("latin-1").upper() \
            if preflight else method
        route = self.routes.match(wanted, path)
        ex.route = route.name
        public = route.access == "public"
        if public and origin is not None and self.access.origins.allows(origin):
            ex.extra_headers = cors_headers(origin)
        if preflight:
            if not (public and ex.extra_headers):
                raise OriginNotAllowed()
            assert origin is not None
            await send_empty(send, ex, 204, preflight_headers(
                origin, route, self.settings.policy.cors.max_age))
            return
        auth = headers.get(b"authorization")
        caller = self.access.identify(
            route, authorization=auth.decode("latin-1") if auth is not None else None,
            origin=origin)
        ex.client = caller.name
        credential_headers = self.credentials.headers_for(route.name)
        if credential_headers is None:
            raise CredentialNotConfigured()
        content = await self._request_content(route, headers, receive)
        peer = scope["client"][0] if scope.get("client") else "0.0.0.0"
        network = self.forwarding.resolve(peer, headers.get(b"x-forwarded-for"),
                                          scope.get("scheme", "http"),
                                          headers.get(b"x-forwarded-proto"))
        client_rules = caller.client.limits if caller.client else self._no_client_rules
        if route.limits or client_rules:
            body = content if isinstance(content, bytes) else b""
            await self._check_limits(route, caller.name, client_rules, network.limit_key,
                                     headers, body, ex)
        upstream_headers = clean_request_headers(scope["headers"]) + credential_headers + [
            (b"x-forwarded-for", network.forwarded_for),
            (b"x-forwarded-proto", network.forwarded_proto),
            (b"x-request-id", ex.request_id),
        ]
        target = ascii_target(scope.get("raw_path") or path.encode(), scope["query_string"])
        cache_key = None
        if route.cache_ttl and method == "GET":
            cache_key = (route.name, target.encode(), headers.get(b"accept-encoding", b""))
            hit = self.cache.get(cache_key)
            if hit is not None:
                await send_cached(hit, send, ex)
                return
        assert self.upstream is not None
        sent_at = time.perf_counter()
        response = await self.upstream.send(route, method, target, upstream_headers, content)
        self.metrics.upstream_duration.labels(route.name).observe(time.perf_counter() - sent_at)
        ex.upstream_status = response.status
        if cache_key is not None and route.cache_ttl:
            length = cacheable(response.status, response.headers)
            if length is not None:
                await send_and_cache(response, self.cache, cache_key, route.cache_ttl, length,
                                     send, ex)
                return
            ex.extra_headers = [*ex.extra_headers, (b"x-cache-status", b"bypass")]
        await stream(response, receive, send, ex)

    async def _request_content(self, route: Route, headers: dict[bytes, bytes],
                               receive: Receive) -> bytes | AsyncIterator[bytes] | None:
        limit = route.max_body_bytes
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            raise PayloadTooLarge()
        has_body = (length is not None and length != b"0") or b"transfer-encoding" in headers
        if route.body_fields:
            return await read_body(receive, limit) if has_body else b""
        return stream_body(receive, limit) if has_body else None

    async def _check_limits(self, route: Route, caller: str, client_rules: tuple[LimitRule, ...],
                            ip: str, headers: dict[bytes, bytes], body: bytes,
                            ex: Exchange) -> None:
        assert self.limiter is not None
        values = body_values(route, body) if route.body_fields else {}
        wanted = {r.field for r in (*route.limits, *client_rules) if r.kind == "header"}
        named = {f: headers[f.encode()].decode("latin-1") for f in wanted if f
                 and f.encode() in headers}
        started = time.perf_counter()
        decision: Decision = await self.limiter.check(
            route, caller=caller, client_rules=client_rules, ip=ip, headers=named, body=values)
        self.metrics.limiter_duration.observe(time.perf_counter() - started)
        if decision.storage_error:
            self.metrics.limiter_errors.inc()
        for counted_in, per in decision.shadow_refused:
            self.metrics.shadow_limited.labels(route.name, per).inc()
            log.info("shadow limit %s (%s) on route %s would refuse this request", per,
                     counted_in, route.name)
        ex.extra_headers = ex.extra_headers + decision.headers
        if decision.refused_per is not None:
            ex.limited = True
            self.metrics.rate_limited.labels(route.name, decision.refused_per).inc()
        decision.raise_if_refused()

    async def _health(self, path: str, send: Send, ex: Exchange) -> None:
        ex.route = "unmatched"
        status, body = 200, b'{"status":"ok"}'
        if path == "/readyz":
            status, body = await self._readiness()
        ex.status = status
        await send({"type": "http.response.start", "status": status,
                    "headers": [_JSON, (b"content-length", str(len(body)).encode()),
                                (b"x-request-id", ex.request_id),
                                (b"cache-control", b"no-store")]})
        await send({"type": "http.response.body", "body": body})

    async def _readiness(self) -> tuple[int, bytes]:
        if not self.ready or self.limiter is None:
            return 503, b'{"status":"not_ready","policy":"not loaded"}'
        if not self.settings.redis_url:
            return 200, b'{"status":"ok","policy":"loaded","redis":"memory"}'
        if await self.limiter.ready():
            return 200, b'{"status":"ok","policy":"loaded","redis":"up"}'
        if self.settings.policy.limits.on_error == "allow":
            return 200, b'{"status":"ok","policy":"loaded","redis":"down"}'
        return 503, b'{"status":"not_ready","policy":"loaded","redis":"down"}'


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
