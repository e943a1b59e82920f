"""The four Reusely values and the client tokens.

Which routes the configured Reusely values enable, the exact header pairs each
route adds (least privilege: only what its `credentials` list names), and the
constant-time lookup of a bearer token by its SHA-256.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

from gateway.config import CREDENTIAL_HEADERS, Client, Route, Secret


class CredentialSet:
    """Precomputed credential headers per route; routes with a value missing are disabled."""

    def __init__(self, values: Mapping[str, Secret | None], routes: tuple[Route, ...]) -> None:
        self._headers: dict[str, list[tuple[bytes, bytes]]] = {}
        self._missing: dict[str, tuple[str, ...]] = {}
        for route in routes:
            missing = tuple(c for c in route.credentials if values.get(c) is None)
            if missing:
                self._missing[route.name] = missing
                continue
            self._headers[route.name] = [
                (CREDENTIAL_HEADERS[c].encode(), _secret(values, c).reveal().encode("latin-1"))
                for c in route.credentials
            ]

    def headers_for(self, route: str) -> list[tuple[bytes, bytes]] | None:
        """The header pairs to add, or None when the route is disabled."""
        return self._headers.get(route)

    def missing(self, route: str) -> tuple[str, ...]:
        return self._missing.get(route, ())


def _secret(values: Mapping[str, Secret | None], name: str) -> Secret:
    value = values[name]
    assert value is not None
    return value


def status_of(values: Mapping[str, Secret | None]) -> dict[str, str]:
    """`set` or `missing` per credential: what tools may say about secrets."""
    return {name: ("set" if values.get(name) is not None else "missing")
            for name in CREDENTIAL_HEADERS}


def token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenTable:
    """Bearer token -> client, comparing the token's SHA-256 with every known hash.

    Every hash is compared with `hmac.compare_digest`, and the loop never stops
    early, so the time taken does not depend on which hash (if any) matched.
    """

    def __init__(self, clients: tuple[Client, ...]) -> None:
        self._entries = [(h.encode(), client) for client in clients for h in client.token_sha256]

    def lookup(self, token: str) -> Client | None:
        digest = token_sha256(token).encode()
        found = None
        for known, client in self._entries:
            if hmac.compare_digest(digest, known):
                found = client
        return found
