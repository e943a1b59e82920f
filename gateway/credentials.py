"""The four Reusely values: which routes they enable, and the headers each route adds.

Least privilege: a route adds exactly the credentials its `credentials` list
names, as pre-encoded header pairs.
"""

from __future__ import annotations

from collections.abc import Mapping

from gateway.config import CREDENTIAL_HEADERS, Route, Secret


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
