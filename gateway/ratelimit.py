"""Rate limits: keys, the moving-window check, and failure modes.

Every limit is a moving window (`limits.aio` MovingWindowRateLimiter), so
`5/hour` never lets 6 through in any 60 minutes. Several limits on one request
are checked first and consumed only if none refuses, so a refusal by one does
not use up the others; each consumption is an atomic `hit()` (a Lua script on
Redis), and a hit that loses a race refuses the request.

Keys never hold a caller's email, phone, IP or header value in clear: each
value is normalised, then replaced by an HMAC-SHA256 under the limit key
secret. Route limits count per route; a client's limits count across routes.

Storage errors and timeouts are translated here and only here
(`limits.errors.StorageError`, `TimeoutError`): `on_error: allow` lets the
request through and reports the error; `deny` refuses with 503.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import math
import re
import time
import unicodedata
from dataclasses import dataclass, field
from typing import Any

from limits import RateLimitItem
from limits.aio.storage import MemoryStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError
from limits.storage import storage_from_string
from limits.util import WindowStats
from redis.asyncio import RedisCluster
from redis.exceptions import RedisError

from gateway.config import LimitRule, Route, Settings
from gateway.errors import InvalidBody, RateLimited, RateLimiterUnavailable
from gateway.window import SCRIPT, arguments, windows

log = logging.getLogger("gateway.ratelimit")
_NAME_UNSAFE = re.compile(r"[^a-z0-9.-]+")


def normalise(field_name: str, value: str) -> str:
    """Emails: trimmed, NFKC, lower-case. Phones: digits, with a leading + kept."""
    leaf = field_name.rsplit(".", 1)[-1].lower()
    value = value.strip()
    if "email" in leaf:
        return unicodedata.normalize("NFKC", value).lower()
    if "phone" in leaf:
        digits = "".join(c for c in value if c in "0123456789")
        return ("+" + digits) if value.startswith("+") else digits
    return value


def body_values(route: Route, body: bytes) -> dict[str, str]:
    """The present body-key fields of `route`, or InvalidBody.

    The body is parsed as JSON whatever its Content-Type; `null` counts as
    absent; a field present with a non-string value is invalid.
    """
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise InvalidBody("The request body is not valid JSON.") from exc
    if not isinstance(data, dict):
        raise InvalidBody("The request body must be a JSON object.")
    values: dict[str, str] = {}
    for name in route.body_fields:
        node: Any = data
        for part in name.split("."):
            if node is None:
                break
            if not isinstance(node, dict):
                raise InvalidBody(f"The field {name!r} must be inside a JSON object.")
            node = node.get(part)
        if node is None:
            continue
        if not isinstance(node, str):
            raise InvalidBody(f"The field {name!r} must be a string.")
        values[name] = normalise(name, node)
    return values


@dataclass(frozen=True)
class _Applied:
    scope: str  # the route name, or "client:<name>"
    rule: LimitRule
    item: RateLimitItem
    ids: tuple[str, ...]
    policy_name: str


@dataclass
class Decision:
    """What the limiter found; the app turns it into headers, metrics and a verdict."""

    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    refused_per: str | None = None
    retry_after: int = 0
    shadow_refused: list[tuple[str, str]] = field(default_factory=list)  # (scope, per)
    storage_error: bool = False

    def raise_if_refused(self) -> None:
        if self.refused_per is not None:
            raise RateLimited(self.retry_after)


def create_storage(settings: Settings) -> Storage:
    if not settings.redis_url:
        return MemoryStorage()
    timeout = settings.policy.limits.timeout
    storage = storage_from_string(
        "async+" + settings.redis_url,
        implementation="redispy",
        wrap_exceptions=True,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
    )
    assert isinstance(storage, Storage)
    return storage


class Limiter:
    def __init__(self, settings: Settings, storage: Storage, *, secret: bytes) -> None:
        self._storage = storage
        self._strategy = MovingWindowRateLimiter(storage)
        self._secret = secret
        self._timeout = settings.policy.limits.timeout
        self._budget = 3 * self._timeout + 0.05
        # On Redis (not Cluster), one script call decides a whole request.
        bridge = getattr(storage, "bridge", None)
        client = getattr(bridge, "storage", None)
        self._script: Any = None
        if client is not None and not isinstance(client, RedisCluster):
            self._script = client.register_script(SCRIPT)
            self._key = bridge.prefixed_key  # type: ignore[union-attr]

    def _hash(self, kind: str, value: str) -> str:
        return hmac.new(self._secret, f"{kind}\0{value}".encode(), hashlib.sha256).hexdigest()[:32]

    def _applied(self, scope: str, rules: tuple[LimitRule, ...], caller: str, ip: str,
                 headers: dict[str, str], body: dict[str, str]) -> list[_Applied]:
        out = []
        for rule in rules:
            if rule.kind == "ip":
                key = self._hash("ip", ip)
            elif rule.kind == "client":
                key = caller
            elif rule.kind == "global":
                key = "all"
            else:
                assert rule.field is not None
                raw = body.get(rule.field) if rule.kind == "body" else headers.get(rule.field)
                if raw is None:
                    continue  # a keyed limit applies only when its key is present
                key = self._hash(rule.per, raw)
            base = _NAME_UNSAFE.sub("-", f"{scope.replace('client:', 'client.')}.{rule.per}")
            for item in rule.items:
                name = base if len(rule.items) == 1 else f"{base}.{item.get_expiry()}s"
                out.append(_Applied(scope, rule, item, ("rg", scope, rule.per, key), name))
        return out

    async def check(self, route: Route, *, caller: str, client_rules: tuple[LimitRule, ...],
                    ip: str, headers: dict[str, str], body: dict[str, str]) -> Decision:
        applied = self._applied(route.name, route.limits, caller, ip, headers, body)
        if client_rules:
            applied += self._applied(f"client:{caller}", client_rules, caller, ip, headers, body)
        if not applied:
            return Decision()
        try:
            async with asyncio.timeout(self._budget):
                return await self._decide(applied)
        except (StorageError, RedisError, TimeoutError) as exc:
            log.warning("rate limiter storage failed: %s", type(exc).__name__)
            if route.on_error == "deny":
                raise RateLimiterUnavailable() from exc
            return Decision(storage_error=True)

    async def _decide(self, applied: list[_Applied]) -> Decision:
        strategy = self._strategy
        now = time.time()
        hits: list[bool] | None = None
        if self._script is not None:
            found = windows(await self._script(
                keys=[self._key(a.item.key_for(*a.ids)) for a in applied],
                args=arguments(now, [(a.item.amount, a.item.get_expiry(), a.rule.shadow)
                                     for a in applied])))
            stats = [WindowStats(w.oldest + a.item.get_expiry(), a.item.amount - w.count)
                     for a, w in zip(applied, found, strict=True)]
            hits = [w.hit for w in found]
        else:
            stats = list(await asyncio.gather(
                *(strategy.get_window_stats(a.item, *a.ids) for a in applied)))
        decision = Decision()
        enforced = [(a, s) for a, s in zip(applied, stats, strict=True) if not a.rule.shadow]
        full = [(a, s) for a, s in enforced if s.remaining < 1]
        if full:
            decision.refused_per = full[0][0].rule.per
            decision.retry_after = max(1, max(math.ceil(s.reset_time - now) for _, s in full))
            decision.headers = _headers(enforced, now, consumed=False)
            return decision
        if hits is None:
            hits = list(await asyncio.gather(*(strategy.hit(a.item, *a.ids) for a in applied)))
        for a, ok in zip(applied, hits, strict=True):
            if ok:
                continue
            if a.rule.shadow:  # once per limit, by the hit its full window refused
                if (a.scope, a.rule.per) not in decision.shadow_refused:
                    decision.shadow_refused.append((a.scope, a.rule.per))
            elif decision.refused_per is None:
                # Lost a race with another request for the last slot.
                decision.refused_per = a.rule.per
                decision.retry_after = max(1, math.ceil(a.item.get_expiry() / a.item.amount))
        decision.headers = _headers(enforced, now, consumed=decision.refused_per is None)
        return decision

    async def aclose(self) -> None:
        """Close the storage's Redis connections; the app calls this at shutdown.

        `limits` storages have no close of their own: its Redis bridge holds the
        redis-py clients (`storage`, and with Sentinel `storage_replica` and
        `sentinel`). Memory storage holds nothing to close.
        """
        bridge = getattr(self._storage, "bridge", None)
        for name in ("storage", "storage_replica", "sentinel"):
            close = getattr(getattr(bridge, name, None), "aclose", None)
            if close is not None:
                await close()

    async def ready(self) -> bool:
        try:
            async with asyncio.timeout(self._budget):
                return bool(await self._storage.check())
        except (StorageError, TimeoutError):
            return False


def _headers(enforced: list[tuple[_Applied, Any]], now: float,
             *, consumed: bool) -> list[tuple[bytes, bytes]]:
    """X-RateLimit-* for the tightest limit, and the IETF RateLimit fields for all."""
    if not enforced:
        return []
    rows = []
    for a, s in enforced:
        remaining = max(0, s.remaining - (1 if consumed else 0))
        expiry = a.item.get_expiry()
        if consumed and s.remaining == a.item.amount:
            reset = expiry  # this request is the oldest in its window
        else:
            reset = max(0, math.ceil(s.reset_time - now))
        rows.append((remaining, -expiry, a, reset))
    remaining, _, tight, reset = min(rows, key=lambda r: (r[0], r[1]))
    policy = ", ".join(f'"{a.policy_name}";q={a.item.amount};w={a.item.get_expiry()}'
                       for _, _, a, _ in rows)
    return [
        (b"x-ratelimit-limit", str(tight.item.amount).encode()),
        (b"x-ratelimit-remaining", str(remaining).encode()),
        (b"x-ratelimit-reset", str(reset).encode()),
        (b"ratelimit-policy", policy.encode()),
        (b"ratelimit", f'"{tight.policy_name}";r={remaining};t={reset}'.encode()),
    ]
