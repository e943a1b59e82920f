"""The four Reusely values: which routes they enable, and the headers each route adds.

Least privilege: a route adds exactly the credentials its `credentials` list
names, as pre-encoded header pairs.

The values can change while the gateway runs (a credential file rewritten,
see `credwatch.py`). Every fact derived from them (each route's header pairs,
which routes are disabled) lives in one immutable table that a change
replaces whole, by one attribute assignment: a request reads either the old
table or the new one, never half of each, with no lock on the request path.
Only the watcher writes, under its own lock.

`seen` keeps every value held since start-up, rotated ones included: the
response filter drops any header of Reusely's answer that holds one
(`headers.clean_response_headers`), and the logs hide them. A key that was
rotated away stays a secret.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass

from gateway.config import CREDENTIAL_HEADERS, Route
from gateway.settings import Secret

Pairs = list[tuple[bytes, bytes]]
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # every control character but tab


def fingerprint(value: str) -> str:
    """The first 8 hex digits of the value's SHA-256: tells keys apart, reveals nothing usable.

    The same in the logs and in `check-config`, so an operator can see which
    key a gateway holds without anyone printing it.
    """
    return hashlib.sha256(value.encode()).hexdigest()[:8]


def header_value(value: str) -> bytes | None:
    """The value as an HTTP header value, or None when it cannot be one.

    A control character (a line break inside a file, say) would split the
    header; anything beyond Latin-1 cannot be sent at all.
    """
    if _CONTROL.search(value):
        return None
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:
        return None


class SeenValues(Collection[bytes]):
    """Every credential value held since start-up, as bytes; grows, never shrinks.

    A live view: `Forwarder` holds this object, and each answer is filtered
    against the values known at that moment.
    """

    def __init__(self, values: Iterable[bytes] = ()) -> None:
        self._values: tuple[bytes, ...] = tuple(dict.fromkeys(values))

    def add(self, value: bytes) -> None:
        if value not in self._values:
            self._values = (*self._values, value)  # one assignment: readers see old or new

    def __contains__(self, value: object) -> bool:
        return value in self._values

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)


@dataclass(frozen=True, slots=True)
class _Table:
    values: Mapping[str, Secret | None]
    headers: Mapping[str, Pairs]  # route name -> the header pairs it adds
    missing: Mapping[str, tuple[str, ...]]  # disabled route -> the credentials it lacks


class CredentialSet:
    """Precomputed credential headers per route; routes with a value missing are disabled."""

    def __init__(self, values: Mapping[str, Secret | None], routes: tuple[Route, ...]) -> None:
        self._routes = routes
        self._table = self._build(dict(values))
        self.seen = SeenValues(encoded for s in values.values() if s is not None
                               and (encoded := header_value(s.reveal())) is not None)

    def _build(self, values: dict[str, Secret | None]) -> _Table:
        headers: dict[str, Pairs] = {}
        missing: dict[str, tuple[str, ...]] = {}
        for route in self._routes:
            lacking = tuple(c for c in route.credentials
                            if values.get(c) is None or _encoded(values[c]) is None)
            if lacking:
                missing[route.name] = lacking
                continue
            headers[route.name] = [(CREDENTIAL_HEADERS[c].encode(), _encoded(values[c]) or b"")
                                   for c in route.credentials]
        return _Table(values, headers, missing)

    def headers_for(self, route: str) -> Pairs | None:
        """The header pairs to add, or None when the route is disabled."""
        return self._table.headers.get(route)

    def missing(self, route: str) -> tuple[str, ...]:
        return self._table.missing.get(route, ())

    def value(self, name: str) -> Secret | None:
        return self._table.values.get(name)

    def values(self) -> Mapping[str, Secret | None]:
        return self._table.values

    def replace(self, name: str, value: Secret) -> list[str]:
        """Hold `value` for credential `name` from now on; the routes it enabled.

        The caller (the watcher, under its lock) has checked that the value can
        be a header value. It joins `seen` before any request can send it.
        """
        encoded = header_value(value.reveal())
        assert encoded is not None
        self.seen.add(encoded)
        before = self._table
        self._table = self._build({**before.values, name: value})
        return [route for route in before.missing if route not in self._table.missing]


def _encoded(value: Secret | None) -> bytes | None:
    return None if value is None else header_value(value.reveal())


def status_of(values: Mapping[str, Secret | None]) -> dict[str, str]:
    """`set` or `missing` per credential: what tools may say about secrets."""
    return {name: ("set" if values.get(name) is not None else "missing")
            for name in CREDENTIAL_HEADERS}


def fingerprints(values: Mapping[str, Secret | None]) -> dict[str, str]:
    """The fingerprint of each credential that is set, in the usual order."""
    return {name: fingerprint(secret.reveal()) for name in CREDENTIAL_HEADERS
            if (secret := values.get(name)) is not None}
