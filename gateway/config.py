"""The settings' types: frozen dataclasses for the policy and the environment.

`policy` turns YAML into a validated `Policy`; `environment` reads the
environment and builds `Settings` around it. Settings are built once, by the
CLI (or by each worker from the environment the CLI set), and passed to
`create_app`.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from limits import RateLimitItem

CREDENTIAL_HEADERS: dict[str, str] = {
    "api_key": "x-api-key",
    "tenant_id": "x-tenant-id",
    "secret_key": "x-secret-key",
    "marketplace_key": "x-marketplace-key",
}
CREDENTIAL_ENV: dict[str, str] = {
    "api_key": "REUSELY_API_KEY",
    "tenant_id": "REUSELY_TENANT_ID",
    "secret_key": "REUSELY_SECRET_KEY",
    "marketplace_key": "REUSELY_MARKETPLACE_KEY",
}
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
LOG_LEVELS = ("debug", "info", "warning", "error")
NAME_RE = re.compile(r"^[a-z0-9-]+$")
FIELD_RE = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")
HEADER_RE = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")
HASH_RE = re.compile(r"^[0-9a-f]{64}$")
ORIGIN_RE = re.compile(r"^(https?)://(\*\.)?([a-z0-9-]+(\.[a-z0-9-]+)*|\[[0-9a-f:]+\])(:\d{1,5})?$")


class Secret:
    """A credential value that never shows itself in a repr, log or traceback."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__


@dataclass(frozen=True)
class Timeout:
    connect: float = 3.0
    read: float = 20.0
    write: float = 20.0
    pool: float = 3.0


@dataclass(frozen=True)
class LimitRule:
    per: str  # as written: ip, client, global, body:<field>, header:<name>
    kind: str  # ip | client | global | body | header
    field: str | None  # the body field (dotted path) or the lower-cased header name
    rate: str
    items: tuple[RateLimitItem, ...]
    shadow: bool = False


@dataclass(frozen=True)
class Route:
    name: str
    path: str
    methods: tuple[str, ...]
    credentials: tuple[str, ...]
    access: str  # public | internal
    timeout: Timeout
    max_body_bytes: int
    retries: int
    on_error: str  # allow | deny
    limits: tuple[LimitRule, ...] = ()
    cache_ttl: int | None = None
    idempotency: Any = None

    @property
    def body_fields(self) -> tuple[str, ...]:
        return tuple(rule.field for rule in self.limits if rule.kind == "body" and rule.field)


@dataclass(frozen=True)
class Client:
    name: str
    token_sha256: tuple[str, ...]
    routes: tuple[str, ...]  # route names, or ("*",)
    limits: tuple[LimitRule, ...] = ()

    def allows(self, route: str) -> bool:
        return "*" in self.routes or route in self.routes


@dataclass(frozen=True)
class Cors:
    allow_origins: tuple[str, ...] = ()
    max_age: int = 600


@dataclass(frozen=True)
class Upstream:
    timeout: Timeout = Timeout()
    max_connections: int = 100
    retries: int = 1


IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Limits:
    on_error: str = "allow"
    trusted_proxies: tuple[IPNetwork, ...] = ()
    timeout: float = 0.1  # seconds, for each Redis connect and each Redis read


@dataclass(frozen=True)
class Policy:
    routes: tuple[Route, ...]
    clients: tuple[Client, ...] = ()
    upstream: Upstream = Upstream()
    limits: Limits = Limits()
    cors: Cors = Cors()
    max_body_bytes: int = 1_048_576
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class Settings:
    policy: Policy
    policy_source: str  # the file path, or "built-in default policy"
    credentials: Mapping[str, Secret | None]
    credential_problems: Mapping[str, str] = field(default_factory=dict)
    base_url: str = "https://api.reusely.com"
    redis_url: str | None = None
    limit_key_secret: Secret | None = None
    bind: tuple[str, int] = ("127.0.0.1", 8080)
    metrics_bind: tuple[str, int] = ("127.0.0.1", 9464)
    workers: int = 1
    log_level: str = "info"
