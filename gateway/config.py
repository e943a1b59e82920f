"""The policy's parts, declared: its sections, limit rules, routes and clients.

The policy's shape is declared once, as frozen pydantic dataclasses: they
validate the YAML (`policy.parse_policy`, where the `Policy` model that holds
these parts lives), they are what the request path reads (plain attributes
and tuples, nothing checked again per request), and they publish the JSON
Schema (`reusely-gateway schema`; a field's docstring is its description
there). Each default is written once, on its field; a route's overrides
default to the policy-wide values, which `Policy` fills in.

Problems are said in the gateway's own words at their place in the file:
the checks in `checks` raise whole sentences, and `policy` translates
pydantic's own error types with a table. `settings.Settings` is what the
environment adds around a policy.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any, Literal

from limits import RateLimitItem, parse_many
from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    PlainValidator,
    Strict,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.dataclasses import dataclass

from gateway import checks
from gateway.checks import (
    BODYLESS_METHODS,
    CHANGING_METHODS,
    CREDENTIAL_HEADERS,
    METHODS,
    PER_RE,
    Found,
    IPNetwork,
    Wording,
    none_is_empty,
    problem,
    problems,
)
from gateway.fields import (
    CIDR,
    CONFIG,
    CONFIG_WITH_ITEMS,
    PER_MISSING,
    TOKEN_SCHEMA,
    Count,
    Flag,
    Name,
    OnError,
    Origin,
    Positive,
    Seconds,
    Section,
    Strings,
)

__all__ = [
    "CREDENTIAL_HEADERS", "METHODS", "Client", "ClientLimitRule", "Cors", "IPNetwork",
    "Idempotency", "LimitRule", "Limits", "Route", "Timeout", "UpstreamPolicy",
]


# -- the policy-wide sections --------------------------------------------------


@dataclass(frozen=True, kw_only=True, config=CONFIG)
class Timeout(Section):
    """Seconds allowed for each phase of a request to Reusely."""

    connect: Seconds = 3.0
    read: Seconds = 20.0
    write: Seconds = 20.0
    pool: Seconds = 3.0


@dataclass(frozen=True, kw_only=True, config=CONFIG)
class UpstreamPolicy(Section):
    """How the gateway talks to Reusely."""

    timeout: Timeout = Timeout()
    """Seconds for each phase; a route's `timeout` overrides any of them."""
    max_connections: Positive = 100
    """Connections kept open to Reusely by each worker."""
    retries: Count = 1
    """Extra attempts after a failed connect, for GET, HEAD and OPTIONS only."""


@dataclass(frozen=True, kw_only=True, config=CONFIG)
class Limits(Section):
    """Where and how rate limits are counted."""

    on_error: OnError = "allow"
    """What to do with a request when Redis cannot answer in time: forward it, or refuse it."""
    trusted_proxies: Annotated[tuple[CIDR, ...], BeforeValidator(none_is_empty)] = ()
    """CIDRs of proxies whose X-Forwarded-For is believed."""
    timeout: Annotated[Seconds, Field(le=1)] = 0.25
    """Seconds of the worker's own attention one Redis call may take before `on_error` applies."""


@dataclass(frozen=True, kw_only=True, config=CONFIG)
class Cors(Section):
    """Which browser origins may call public routes."""

    allow_origins: Annotated[tuple[Origin, ...], BeforeValidator(none_is_empty)] = ()
    """Exact origins, `https://*.example.com`, or `*` alone. None: browsers are refused."""
    max_age: Count = 600
    """Seconds a browser may keep a preflight's answer."""

    @field_validator("allow_origins")
    @classmethod
    def _star_alone(cls, origins: tuple[str, ...]) -> tuple[str, ...]:
        if "*" in origins and len(origins) > 1:
            raise problems([((i,), '"*" allows every origin and cannot be combined with others')
                            for i, o in enumerate(origins) if o == "*"], origins)
        return origins


# -- limits, routes, clients ---------------------------------------------------


@dataclass(frozen=True, kw_only=True, config=CONFIG_WITH_ITEMS)
class LimitRule:
    """One limit: requests counted per key, refused past `rate`."""

    per: Annotated[str, Strict(), AfterValidator(checks.per), PER_MISSING,
                   Field(json_schema_extra={"pattern": PER_RE.pattern})]
    """What is counted: ip, client, global, body:<json field> or header:<name>."""
    rate: Annotated[str, Strict(), AfterValidator(checks.rate),
                    Wording(missing='is required, like "5/hour" or "100/minute;1000/day"')]
    """The `limits` library's notation: "5/hour", "100/minute;1000/day"."""
    shadow: Flag = False
    """Count and log, never refuse."""

    # Worked out from `per` and `rate` once, at validation: plain attributes after that.
    kind: str = dataclasses.field(init=False, repr=False, compare=False)
    """ip | client | global | body | header"""
    field: str | None = dataclasses.field(init=False, repr=False, compare=False)
    """The body field (a dotted path) or the lower-cased header name."""
    items: tuple[RateLimitItem, ...] = dataclasses.field(init=False, repr=False, compare=False)

    @model_validator(mode="after")
    def _derive(self) -> LimitRule:
        kind, field = checks.per_kind(self.per)
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "field", field)
        object.__setattr__(self, "items", tuple(parse_many(self.rate)))
        return self


@dataclass(frozen=True, kw_only=True, config=CONFIG_WITH_ITEMS)
class ClientLimitRule(LimitRule):
    """A client's limit: it counts across routes, so it cannot count a body field."""

    per: Annotated[str, Strict(), AfterValidator(checks.per), PER_MISSING,
                   Field(json_schema_extra={"pattern": PER_RE.pattern, "not": {
                       "pattern": "^body:"}})]
    """What is counted: ip, client, global or header:<name>."""

    @field_validator("per")
    @classmethod
    def _no_body(cls, per: str) -> str:
        if per.startswith("body:"):
            raise problem("a client's limits count across routes; body keys belong on a route")
        return per


@dataclass(frozen=True, kw_only=True, config=CONFIG)
class Idempotency(Section):
    """Replay the first answer to a repeated `Idempotency-Key` instead of sending it again."""

    ttl: Positive = 86400
    """Seconds an answer is kept for its key."""
    required: Flag = False
    """Refuse a request without an `Idempotency-Key`."""


def _inherited(schema: dict[str, Any]) -> None:
    schema.pop("default", None)
    said = schema.get("description", "")
    schema["description"] = f"{said} Default: the policy-wide value.".strip()


_UPSTREAM = UpstreamPolicy()
_LIMITS = Limits()
MAX_BODY_BYTES = 1_048_576


@dataclass(frozen=True, kw_only=True, config=CONFIG)
class Route:
    """A path (Starlette syntax) and methods forwarded to Reusely with named credentials."""

    name: Name
    """[a-z0-9-]+, unique: the metrics label."""
    path: Annotated[str, Strict(), AfterValidator(checks.path), Field(json_schema_extra={
        "pattern": "^/"})]
    """Starlette path syntax, e.g. /api/v2/public/catalog/{rest:path}."""
    methods: Annotated[Strings, AfterValidator(checks.methods), Field(json_schema_extra={
        "items": {"enum": list(METHODS)}, "minItems": 1})] = ("GET",)
    """The methods forwarded; others get 405."""
    credentials: Annotated[Strings, AfterValidator(checks.credentials), Field(json_schema_extra={
        "items": {"enum": list(CREDENTIAL_HEADERS)}})] = ()
    """The Reusely values this route sends; it is disabled while one is missing."""
    access: Literal["public", "internal"] = "internal"
    """public: anyone from an allowed origin; internal: clients with a token."""
    cache_ttl: Positive | None = None
    """Seconds a GET answer is kept."""
    stale_if_error: Positive | None = None
    """Seconds past cache_ttl an expired answer may still be served when Reusely fails."""
    stale_while_revalidate: Positive | None = None
    """Seconds past cache_ttl an expired answer may be served while it is fetched again."""
    idempotency: Idempotency | None = None
    """Idempotency-Key handling, for POST, PUT, PATCH and DELETE routes."""
    limits: Annotated[tuple[LimitRule, ...], BeforeValidator(none_is_empty),
                      Wording(items="limits")] = ()
    """Limits on this route, all checked before a request is forwarded."""
    timeout: Annotated[Timeout, Field(json_schema_extra=_inherited)] = _UPSTREAM.timeout
    """Overrides any of upstream.timeout's phases; the rest inherit."""
    max_body_bytes: Annotated[Count, Field(json_schema_extra=_inherited)] = MAX_BODY_BYTES
    retries: Annotated[Count, Field(json_schema_extra=_inherited)] = _UPSTREAM.retries
    on_error: Annotated[OnError, Field(json_schema_extra=_inherited)] = _LIMITS.on_error
    body_fields: tuple[str, ...] = dataclasses.field(init=False, repr=False, compare=False)
    """The JSON fields its `body:` limits count: the body is read only for them."""

    @field_validator("name")
    @classmethod
    def _not_reserved(cls, name: str) -> str:
        if name == "unmatched":
            raise problem('"unmatched" is reserved for the metrics label of unmatched requests')
        return name

    @field_validator("cache_ttl")
    @classmethod
    def _cacheable(cls, ttl: int | None, info: ValidationInfo) -> int | None:
        if ttl is not None and set(info.data.get("methods", ())) - {"GET", "HEAD"}:
            raise problem("only GET routes can be cached")
        return ttl

    @field_validator("stale_if_error", "stale_while_revalidate")
    @classmethod
    def _cached(cls, seconds: int | None, info: ValidationInfo) -> int | None:
        if seconds is not None and info.data.get("cache_ttl", 0) is None:
            raise problem("needs cache_ttl on the same route: only a kept answer can be "
                          "served stale")
        return seconds

    @field_validator("idempotency")
    @classmethod
    def _changes(cls, idem: Idempotency | None, info: ValidationInfo) -> Idempotency | None:
        methods = info.data.get("methods")
        if idem is not None and methods is not None and not CHANGING_METHODS & set(methods):
            raise problem("needs a POST, PUT, PATCH or DELETE route: only a request that "
                          "changes something is made idempotent")
        return idem

    @field_validator("limits")
    @classmethod
    def _body_sent(cls, rules: tuple[LimitRule, ...],
                   info: ValidationInfo) -> tuple[LimitRule, ...]:
        methods = info.data.get("methods")
        if methods is None or not set(methods) <= BODYLESS_METHODS:
            return rules
        raise_if: Found = [((i, "per"), f"{r.per!r} counts a body field, but {', '.join(methods)} "
                     "requests carry no body: every request would be refused")
                    for i, r in enumerate(rules) if r.kind == "body"]
        if raise_if:
            raise problems(raise_if, rules)
        return rules

    @model_validator(mode="after")
    def _derive(self) -> Route:
        object.__setattr__(self, "body_fields", tuple(
            rule.field for rule in self.limits if rule.kind == "body" and rule.field))
        return self


@dataclass(frozen=True, kw_only=True, config=CONFIG)
class Client:
    """An internal team: a bearer token (by its SHA-256) and the routes it may call."""

    name: Name
    """[a-z0-9-]+: the metrics label."""
    token_sha256: Annotated[tuple[str, ...], PlainValidator(checks.token_hashes), Wording(
                                missing=checks.TOKEN_MISSING),
                            Field(json_schema_extra={"anyOf": [TOKEN_SCHEMA, {
                                "type": "array", "items": TOKEN_SCHEMA, "minItems": 1}]})]
    """The hex SHA-256 of the token, or a list of them while a token is rotated."""
    routes: Strings = ()
    """Route names, or ["*"] for every route."""
    limits: Annotated[tuple[ClientLimitRule, ...], BeforeValidator(none_is_empty),
                      Wording(items="limits")] = ()
    """Limits counted across every route this client calls."""

    @field_validator("name")
    @classmethod
    def _not_reserved(cls, name: str) -> str:
        if name == "public":
            raise problem('"public" is reserved for anonymous callers')
        return name

    def allows(self, route: str) -> bool:
        return "*" in self.routes or route in self.routes


