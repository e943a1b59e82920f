"""CORS for public routes: the Origin allow-list, preflights, and response headers.

Everything is validated and precomputed once, per route, in `__init__` (the
habit of Starlette's CORS middleware); a request costs one Origin judgement
and one list concatenation. Only public routes speak CORS: internal routes are
for servers holding a token, so they answer no preflight (403) and send no
CORS headers. An Origin on a public route must be on `cors.allow_origins`
(exact, `scheme://*.suffix[:port]`, or `*`), else 403 `origin_not_allowed`;
a request without an Origin (a server-side caller) gets no CORS headers.

Preflights allow the route's methods and the request headers `content-type`
and `x-request-id` (and `idempotency-key` on routes with `idempotency`);
actual answers expose `Retry-After`, `X-Request-ID`, the rate limit headers
and `Idempotent-Replayed`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from gateway.config import Cors, Route
from gateway.errors import Headers, OriginNotAllowed

_ORIGIN = re.compile(r"^(https?)://([a-z0-9.-]+|\[[0-9a-f:]+\])(?::(\d{1,5}))?$")
EXPOSE_HEADERS = (b"Retry-After, X-Request-ID, X-RateLimit-Limit, X-RateLimit-Remaining, "
                  b"X-RateLimit-Reset, RateLimit, RateLimit-Policy, Idempotent-Replayed")
ALLOW_HEADERS = b"content-type, x-request-id"
PREFLIGHT_VARY = b"Origin, Access-Control-Request-Method, Access-Control-Request-Headers"


class OriginPolicy:
    """Exact origins and `scheme://*.suffix[:port]` wildcards, precomputed once."""

    def __init__(self, cors: Cors) -> None:
        self.any = "*" in cors.allow_origins
        self._exact = frozenset(o for o in cors.allow_origins if "*" not in o)
        self._wild: list[tuple[str, str, str | None]] = []
        for origin in cors.allow_origins:
            if origin.startswith(("http://*.", "https://*.")):
                scheme, rest = origin.split("://*", 1)
                host, _, port = rest.partition(":")
                self._wild.append((scheme, host, port or None))

    def allows(self, origin: str) -> bool:
        origin = origin.lower()
        if self.any or origin in self._exact:
            return True
        if not self._wild:
            return False
        parsed = _ORIGIN.match(origin)
        if parsed is None:
            return False
        scheme, host, port = parsed.groups()
        for w_scheme, w_suffix, w_port in self._wild:
            if (scheme == w_scheme and port == w_port and host.endswith(w_suffix)
                    and len(host) > len(w_suffix) and not host.startswith(".")):
                return True
        return False


@dataclass(frozen=True, slots=True)
class _RouteCors:
    public: bool
    preflight: Headers  # after Access-Control-Allow-Origin
    actual: Headers


class CorsPolicy:
    def __init__(self, cors: Cors, routes: tuple[Route, ...]) -> None:
        self.origins = OriginPolicy(cors)
        max_age = str(cors.max_age).encode()
        self._routes: dict[str, _RouteCors] = {}
        for route in routes:
            allow = ALLOW_HEADERS + (b", idempotency-key" if route.idempotency else b"")
            self._routes[route.name] = _RouteCors(
                public=route.access == "public",
                preflight=[(b"access-control-allow-methods", ", ".join(route.methods).encode()),
                           (b"access-control-allow-headers", allow),
                           (b"access-control-max-age", max_age),
                           (b"vary", PREFLIGHT_VARY)],
                actual=[(b"vary", b"Origin"), (b"access-control-expose-headers", EXPOSE_HEADERS)])

    @staticmethod
    def is_preflight(method: str, headers: dict[bytes, bytes]) -> bool:
        return (method == "OPTIONS" and b"origin" in headers
                and b"access-control-request-method" in headers)

    @staticmethod
    def requested_method(headers: dict[bytes, bytes]) -> str:
        """The method a preflight asks about: what the route is matched with."""
        return headers[b"access-control-request-method"].decode("latin-1").strip().upper()

    def preflight(self, route: Route, headers: dict[bytes, bytes]) -> Headers:
        """The headers of the gateway's 204 answer to a preflight, or 403."""
        entry = self._routes[route.name]
        origin = headers[b"origin"]
        if not entry.public or not self.origins.allows(origin.decode("latin-1")):
            raise OriginNotAllowed()
        return [(b"access-control-allow-origin", origin), *entry.preflight]

    def actual(self, route: Route, headers: dict[bytes, bytes]) -> Headers:
        """The CORS headers of an answer on this route (none without an Origin), or 403."""
        origin = headers.get(b"origin")
        entry = self._routes[route.name]
        if origin is None or not entry.public:
            return []
        if not self.origins.allows(origin.decode("latin-1")):
            raise OriginNotAllowed()
        return [(b"access-control-allow-origin", origin), *entry.actual]
