"""Switches that make the sandbox answer as Reusely does when things go wrong.

So that a gateway (and its tests) can be seen handling Reusely's own answers:

- ``lapsed``: every request gets 401 ``{"status_code": 401, "message":
  "Unauthenticated."}``, as when the subscription has lapsed;
- ``accept_api_key``: only this ``x-api-key`` is accepted from now on, as
  after the key was regenerated in Reusely's dashboard (the configured key
  then gets 401);
- ``rate_limit``: ``{"path_prefix": "/api/...", "retry_after": 30}`` answers
  429 ``{"status_code": 429, "message": "Too Many Attempts."}`` on every path
  starting with the prefix (``"/"``, the default, is every path), with
  ``Retry-After`` set to ``retry_after``: whole seconds, or an HTTP date
  string, or null for no header at all.

They are set at start from the environment (:func:`switches_from_env`) and
changed while running through ``/_sandbox/state``: ``GET`` shows them,
``POST`` with a JSON object replaces them all (a key left out is off, so
``{}`` is normal), ``DELETE`` resets them. That endpoint needs no key and is
not subject to the switches; a request that came through a proxy (it
carries ``X-Forwarded-For`` or ``Forwarded``, which the gateway always adds)
gets 404 there, so no gateway route can reach it.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.sandbox.envelope import (
    Errors,
    envelope,
    invalid,
    json_object,
    not_found,
    unauthenticated,
)

STATE_PATH = "/_sandbox/state"
ADMIN_PREFIX = "/api/v2/admin/"
MAX_RETRY_AFTER = 86_400 * 7
MAX_KEY_LENGTH = 512
TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"", "0", "false", "no", "off"})
ENV_NAMES = ("SANDBOX_LAPSED", "SANDBOX_ACCEPT_API_KEY", "SANDBOX_RATE_LIMIT",
             "SANDBOX_RETRY_AFTER")


class SwitchError(ValueError):
    """A switch value that cannot be used; ``errors`` names each bad field."""

    def __init__(self, errors: Errors) -> None:
        super().__init__("; ".join(f"{k}: {' '.join(v)}" for k, v in errors.items()))
        self.errors = errors


@dataclass(frozen=True)
class RateLimit:
    path_prefix: str = "/"
    retry_after: str | None = None  # the header value, or none at all


@dataclass(frozen=True)
class Switches:
    lapsed: bool = False
    accept_api_key: str | None = None
    rate_limit: RateLimit | None = None

    def public(self) -> dict[str, Any]:
        """What ``/_sandbox/state`` shows: the key only as ``"set"``."""
        limit = self.rate_limit
        return {
            "lapsed": self.lapsed,
            "accept_api_key": "set" if self.accept_api_key is not None else None,
            "rate_limit": None if limit is None else
            {"path_prefix": limit.path_prefix, "retry_after": limit.retry_after},
        }


def _retry_after(value: Any, errors: Errors) -> str | None:
    where = "rate_limit.retry_after"
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        if 0 <= value <= MAX_RETRY_AFTER:
            return str(value)
    elif isinstance(value, str):
        text = value.strip()
        if text.isdigit() and int(text) <= MAX_RETRY_AFTER:
            return str(int(text))
        try:
            parsed = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            parsed = None
        if parsed is not None and text.isascii():
            return text
    errors[where] = [f"The {where} must be whole seconds (0 to {MAX_RETRY_AFTER}), "
                     "an HTTP date, or null."]
    return None


def _rate_limit(value: Any, errors: Errors) -> RateLimit | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        errors["rate_limit"] = ["The rate_limit must be an object or null."]
        return None
    unknown = set(value) - {"path_prefix", "retry_after"}
    if unknown:
        errors["rate_limit"] = [f"Unknown key(s): {', '.join(sorted(unknown))}."]
    prefix = value.get("path_prefix", "/")
    if not (isinstance(prefix, str) and prefix.startswith("/") and prefix.isascii()
            and prefix.isprintable() and len(prefix) <= 2048):
        errors["rate_limit.path_prefix"] = ["The rate_limit.path_prefix must be a path "
                                            "starting with /."]
        prefix = "/"
    return RateLimit(prefix, _retry_after(value.get("retry_after"), errors))


def parse_switches(value: Any) -> Switches:
    """Switches from the JSON ``/_sandbox/state`` takes; :class:`SwitchError` if bad."""
    if not isinstance(value, dict):
        raise SwitchError({"body": ["The request body must be a JSON object."]})
    errors: Errors = {}
    unknown = set(value) - {"lapsed", "accept_api_key", "rate_limit"}
    if unknown:
        errors["body"] = [f"Unknown key(s): {', '.join(sorted(unknown))}."]
    lapsed = value.get("lapsed", False)
    if not isinstance(lapsed, bool):
        errors["lapsed"] = ["The lapsed must be true or false."]
    key = value.get("accept_api_key")
    if key is not None and not (isinstance(key, str) and 0 < len(key) <= MAX_KEY_LENGTH
                                and key.isascii() and key.isprintable()):
        errors["accept_api_key"] = ["The accept_api_key must be a printable string or null."]
    limit = _rate_limit(value.get("rate_limit"), errors)
    if errors:
        raise SwitchError(errors)
    return Switches(lapsed is True, key, limit)


def switches_from_env(env: Mapping[str, str]) -> Switches:
    """The same switches from SANDBOX_LAPSED, SANDBOX_ACCEPT_API_KEY,
    SANDBOX_RATE_LIMIT (a path prefix, "/" for all) and SANDBOX_RETRY_AFTER."""
    lapsed = env.get("SANDBOX_LAPSED", "").strip().lower()
    if lapsed not in TRUE_WORDS | FALSE_WORDS:
        raise SwitchError({"SANDBOX_LAPSED": ["must be true or false."]})
    value: dict[str, Any] = {"lapsed": lapsed in TRUE_WORDS}
    if env.get("SANDBOX_ACCEPT_API_KEY"):
        value["accept_api_key"] = env["SANDBOX_ACCEPT_API_KEY"]
    prefix, retry_after = env.get("SANDBOX_RATE_LIMIT"), env.get("SANDBOX_RETRY_AFTER")
    if retry_after and not prefix:
        raise SwitchError({"SANDBOX_RETRY_AFTER": ["needs SANDBOX_RATE_LIMIT (a path prefix, "
                                                   "/ for every path)."]})
    if prefix:
        value["rate_limit"] = {"path_prefix": prefix, "retry_after": retry_after or None}
    return parse_switches(value)


class SwitchBoard:
    """The one mutable holder of an app's switches."""

    def __init__(self, initial: Switches) -> None:
        self.current = initial

    async def endpoint(self, request: Request) -> Response:
        headers = request.headers
        if "x-forwarded-for" in headers or "forwarded" in headers:
            return not_found()
        if request.method == "POST":
            body = await json_object(request)
            if isinstance(body, JSONResponse):
                return body
            try:
                self.current = parse_switches(body)
            except SwitchError as exc:
                return invalid(exc.errors)
        elif request.method == "DELETE":
            self.current = Switches()
        return JSONResponse(self.current.public())


def _same(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


class Gate:
    """Before routing: the switches, then Reusely's key checks, as 401 or 429."""

    def __init__(self, app: ASGIApp, *, board: SwitchBoard, api_key: str, secret_key: str,
                 tenant_id: str | None) -> None:
        self.app = app
        self.board = board
        self.api_key = api_key
        self.secret_key = secret_key
        self.tenant_id = tenant_id

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] != STATE_PATH:
            refusal = self._refusal(scope)
            if refusal is not None:
                await refusal(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _refusal(self, scope: Scope) -> Response | None:
        switches = self.board.current
        if switches.lapsed or not self._keys_match(scope, switches):
            return unauthenticated()
        limit = switches.rate_limit
        if limit is not None and scope["path"].startswith(limit.path_prefix):
            headers = {} if limit.retry_after is None else {"Retry-After": limit.retry_after}
            return envelope(429, "Too Many Attempts.", headers=headers)
        return None

    def _keys_match(self, scope: Scope, switches: Switches) -> bool:
        headers = Headers(scope=scope)
        api_key = switches.accept_api_key or self.api_key
        if not _same(headers.get("x-api-key"), api_key):
            return False
        if self.tenant_id is not None and not _same(headers.get("x-tenant-id"), self.tenant_id):
            return False
        path: str = scope["path"]
        return not (path.startswith(ADMIN_PREFIX)
                    and not _same(headers.get("x-secret-key"), self.secret_key))
