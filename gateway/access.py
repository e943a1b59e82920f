"""Who is calling: the Origin allow-list of public routes and bearer tokens.

Plain values in, a `Caller` (or a GatewayError) out; no Starlette here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from gateway.config import Client, Cors, Route
from gateway.credentials import TokenTable
from gateway.errors import Forbidden, OriginNotAllowed, Unauthorized

_BEARER = re.compile(r"^[Bb][Ee][Aa][Rr][Ee][Rr] ([A-Za-z0-9\-._~+/]+=*)$")
_ORIGIN = re.compile(r"^(https?)://([a-z0-9.-]+|\[[0-9a-f:]+\])(?::(\d{1,5}))?$")


@dataclass(frozen=True)
class Caller:
    name: str  # the client's name, or "public"
    client: Client | None = None


PUBLIC = Caller("public")


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


class Access:
    def __init__(self, cors: Cors, tokens: TokenTable) -> None:
        self.origins = OriginPolicy(cors)
        self._tokens = tokens

    def identify(self, route: Route, *, authorization: str | None, origin: str | None) -> Caller:
        """The caller of `route`, or 401 / 403.

        Public routes: the Origin, when sent, must be allowed; a token, when
        sent, must be valid, and makes its client the caller. Internal routes: a
        valid token is required, and its client must list the route.
        """
        if route.access == "public" and origin is not None and not self.origins.allows(origin):
            raise OriginNotAllowed()
        if authorization is None:
            if route.access == "public":
                return PUBLIC
            raise Unauthorized()
        client = self._client(authorization)
        if route.access == "internal" and not client.allows(route.name):
            raise Forbidden()
        # On a public route the token only says who is calling (quotas, metrics,
        # logs): refusing it there would refuse what the same request without
        # the token gets.
        return Caller(client.name, client)

    def _client(self, authorization: str) -> Client:
        match = _BEARER.match(authorization)
        client = self._tokens.lookup(match.group(1)) if match else None
        if client is None:
            # One answer for missing, malformed and unknown tokens alike.
            raise Unauthorized()
        return client


EXPOSE_HEADERS = ("Retry-After, X-Request-ID, X-RateLimit-Limit, X-RateLimit-Remaining, "
                  "X-RateLimit-Reset, RateLimit, RateLimit-Policy")
ALLOW_HEADERS = "content-type, x-request-id"


def cors_headers(origin: str) -> list[tuple[bytes, bytes]]:
    """Headers on an actual response to an allowed origin."""
    return [
        (b"access-control-allow-origin", origin.encode("latin-1")),
        (b"vary", b"Origin"),
        (b"access-control-expose-headers", EXPOSE_HEADERS.encode()),
    ]


def preflight_headers(origin: str, route: Route, max_age: int) -> list[tuple[bytes, bytes]]:
    """Headers of the gateway's own 204 answer to a preflight from an allowed origin."""
    return [
        (b"access-control-allow-origin", origin.encode("latin-1")),
        (b"access-control-allow-methods", ", ".join(route.methods).encode()),
        (b"access-control-allow-headers", ALLOW_HEADERS.encode()),
        (b"access-control-max-age", str(max_age).encode()),
        (b"vary", b"Origin, Access-Control-Request-Method, Access-Control-Request-Headers"),
    ]
