"""What is left of a limit: `GET /gateway/quota` and `reusely-gateway limits show|reset`.

Internal teams should see how much of their quota is left before they are
refused, and support must be able to look up, and clear, the count of a
shopper who says they are blocked -- although no count is stored under
anything a person could read (emails, phones and addresses are HMACs). Both
are answered here, from the same pieces the limiter counts with
(`Limiter.counted`, the windows' key names, `limitkeys`' normalising and
HMAC, `forwarding.ip_limit_key`), so the endpoint, the command line and the
gateway cannot disagree about which window a value counts in.

Reading is `Limiter.windows(..., consume=False)`: on Redis the same Lua script
in its read-only mode, elsewhere `limits`' `get_window_stats`. Nothing is
written, so reading the quota never uses any of it up.

An entry's numbers, one per window (a rate `100/minute;1000/day` gives two):
`limit` is the window's size; `remaining` what is left of it, never below 0;
`reset` the whole seconds until the oldest request counted leaves the window
(a slot frees), rounded up, and 0 when nothing is counted in it.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from typing import Any

from limits import RateLimitItem

from gateway.config import Client, Route
from gateway.errors import ConfigError, RateLimiterUnavailable, StoreError
from gateway.forwarding import ip_limit_key
from gateway.limiter import Counted, Limit, Limiter, Seen, header_values
from gateway.limitkeys import field_kind, normalise
from gateway.settings import Settings
from gateway.store import Store

QUOTA_PATH = "/gateway/quota"
QUOTA_METHODS = ("GET", "HEAD")


@dataclass(frozen=True, slots=True)
class Entry:
    """One window of one limit, as read."""

    route: str | None  # None: the client's own limit, counted across routes
    per: str
    rate: str  # this window's own rate: "100/minute" of "100/minute;1000/day"
    limit: int
    remaining: int
    reset: int
    shadow: bool

    def as_json(self) -> dict[str, Any]:
        """The entry as `/gateway/quota` shows it."""
        return {"route": self.route, "per": self.per, "rate": self.rate, "limit": self.limit,
                "remaining": self.remaining, "reset": self.reset}


def rate_of(item: RateLimitItem) -> str:
    """One window's rate in the policy's notation: `5/hour`, `3/4 seconds`."""
    unit = item.GRANULARITY.name
    if item.multiples == 1:
        return f"{item.amount}/{unit}"
    return f"{item.amount}/{item.multiples} {unit}s"


def entry_of(seen: Seen, now: float) -> Entry:
    limit = seen.counted.limit
    amount = limit.item.amount
    counted = amount - seen.stats.remaining
    reset = max(0, math.ceil(seen.stats.reset_time - now)) if counted > 0 else 0
    return Entry(route=None if limit.scope.startswith("client:") else limit.scope,
                 per=limit.rule.per, rate=rate_of(limit.item), limit=amount,
                 remaining=max(0, min(amount, seen.stats.remaining)), reset=reset,
                 shadow=limit.rule.shadow)


class Quotas:
    """Reads (and, for support, clears) the windows a caller or a value counts in."""

    def __init__(self, settings: Settings, limiter: Limiter, store: Store) -> None:
        self._settings, self._limiter, self._store = settings, limiter, store

    # -- the endpoint --------------------------------------------------------

    def of_client(self, client: Client, *, ip_key: str,
                  headers: dict[bytes, bytes]) -> list[Counted]:
        """Every enforced window that counts `client`: its own limits, then the `client`,
        `global` and `ip` limits of each route it may call, in policy order.

        A `header:` limit of the client's own counts the value the request for the
        quota carries, as it would on any other request; without it, it is left out.
        Shadow limits refuse nothing, so they are no part of a quota.
        """
        limiter = self._limiter
        own = tuple(lim for lim in limiter.client_limits(client.name) if not lim.rule.shadow)
        routes = tuple(lim for route in self._settings.policy.routes if client.allows(route.name)
                       for lim in limiter.route_limits(route.name)
                       if lim.cheap and not lim.rule.shadow)
        return limiter.counted(own + routes, client=client.name, ip_key=ip_key,
                               values=header_values(own, headers))

    async def answer(self, client: Client, *, ip_key: str,
                     headers: dict[bytes, bytes]) -> bytes:
        """The body of `/gateway/quota` for `client`; 503 when Redis cannot answer."""
        counted = self.of_client(client, ip_key=ip_key, headers=headers)
        try:
            entries = await self.read(counted)
        except StoreError as exc:
            raise RateLimiterUnavailable() from exc
        return json.dumps({"client": client.name, "limits": [e.as_json() for e in entries]},
                          separators=(",", ":")).encode() + b"\n"

    # -- reading and clearing --------------------------------------------------

    async def read(self, counted: list[Counted]) -> list[Entry]:
        """The windows as they stand, consuming nothing; StoreError when Redis fails."""
        if not counted:
            return []
        seen, _ = await self._store.run(self._limiter.windows(counted, consume=False))
        now = time.time()
        return [entry_of(s, now) for s in seen]

    async def clear(self, counted: list[Counted]) -> None:
        """Delete exactly these windows' keys (the names the limiter counts under)."""
        storage = self._store.limits
        for c in counted:
            await self._store.run(storage.clear(c.limit.item.key_for(*c.ids)))

    # -- support: a value's windows on one route --------------------------------

    def of_value(self, route: Route, by: str, value: str) -> list[Counted]:
        """The windows of `route` that `value` (an email, phone, IP or client name) counts in.

        The value is normalised exactly as the gateway does it. With `client`, the
        client's own `per: client` limits are included: they count that client on
        this route too. Raises ConfigError with one line naming the argument when the
        route has no such limit or the value cannot be one.
        """
        limiter, option = self._limiter, f"--{by}"
        limits = limiter.route_limits(route.name)
        if by in ("email", "phone"):
            found = tuple(lim for lim in limits if lim.rule.kind in ("body", "header")
                          and lim.rule.field and field_kind(lim.rule.field) == by)
            values = {lim.rule.per: normal for lim in found
                      if lim.rule.field and (normal := normalise(lim.rule.field, value))}
            self._some(found, route, by)
            if not values:
                raise ConfigError([f"{option}: nothing is left of {value!r} once normalised"])
            return limiter.counted(found, client="", ip_key="", values=values)
        if by == "ip":
            found = tuple(lim for lim in limits if lim.rule.kind == "ip")
            self._some(found, route, by)
            try:
                key = ip_limit_key(value)
            except ValueError:
                raise ConfigError([f"{option}: {value!r} is not an IP address"]) from None
            return limiter.counted(found, client="", ip_key=key, values={})
        clients = {c.name for c in self._settings.policy.clients}
        if value != "public" and value not in clients:
            raise ConfigError([f"{option}: no client named {value!r} in the policy "
                               f"(clients: {', '.join(sorted(clients)) or 'none'}; "
                               "public: anonymous callers)"])
        found = tuple(lim for lim in (*limits, *limiter.client_limits(value))
                      if lim.rule.kind == "client")
        self._some(found, route, by)
        return limiter.counted(found, client=value, ip_key="", values={})

    @staticmethod
    def _some(found: tuple[Limit, ...], route: Route, by: str) -> None:
        if not found:
            kinds = {"email": "an email field", "phone": "a phone field", "ip": "ip",
                     "client": "client"}
            raise ConfigError([f"--{by}: route {route.name} has no limit keyed by {kinds[by]}"])
