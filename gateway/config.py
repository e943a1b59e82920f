"""The settings' types: the policy's models, and the `Settings` built around them.

The policy's shape is declared once, here, as frozen pydantic dataclasses:
they validate the YAML (`policy.parse_policy`), they are what the request
path reads (plain attributes and tuples, nothing checked again per request),
and they publish the JSON Schema (`reusely-gateway schema`; a field's
docstring is its description there). Each default is written once, on its
field; a route's overrides default to the policy-wide values, which `Policy`
fills in.

Problems are said in the gateway's own words at their place in the file:
the checks in `checks` raise whole sentences, and `policy` translates
pydantic's own error types with a table. `environment` reads the environment
and builds `Settings` around a policy.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from limits import RateLimitItem, parse_many
from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    PlainValidator,
    Strict,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.dataclasses import dataclass
from pydantic_core import InitErrorDetails, PydanticCustomError

from gateway import checks
from gateway.checks import (
    BODYLESS_METHODS,
    CHANGING_METHODS,
    CREDENTIAL_HEADERS,
    METHODS,
    NAME_RE,
    ORIGIN_RE,
    PER_RE,
    Found,
    IPNetwork,
    Wording,
    none_is_empty,
    problem,
    problems,
)

__all__ = [
    "CREDENTIAL_ENV", "CREDENTIAL_HEADERS", "LOG_LEVELS", "METHODS", "Client", "ClientLimitRule",
    "Cors", "IPNetwork", "Idempotency", "LimitRule", "Limits", "Policy", "Route", "Secret",
    "Settings", "Timeout", "UpstreamPolicy",
]

CREDENTIAL_ENV: dict[str, str] = {
    "api_key": "REUSELY_API_KEY",
    "tenant_id": "REUSELY_TENANT_ID",
    "secret_key": "REUSELY_SECRET_KEY",
    "marketplace_key": "REUSELY_MARKETPLACE_KEY",
}
LOG_LEVELS = ("debug", "info", "warning", "error")


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


# -- the policy's value types ------------------------------------------------

Count = Annotated[int, Strict(), Field(ge=0)]
Positive = Annotated[int, Strict(), Field(ge=1)]
Seconds = Annotated[float, Strict(), Field(gt=0)]
Flag = Annotated[bool, Strict()]
Name = Annotated[str, Strict(), AfterValidator(checks.name),
                 Field(json_schema_extra={"pattern": NAME_RE.pattern})]
Strings = Annotated[tuple[Annotated[str, Strict()], ...], BeforeValidator(none_is_empty)]
OnError = Literal["allow", "deny"]
Origin = Annotated[str, Strict(), AfterValidator(checks.origin), Field(json_schema_extra={
    "anyOf": [{"const": "*"}, {"pattern": ORIGIN_RE.pattern}]})]
CIDR = Annotated[IPNetwork, PlainValidator(checks.cidr, json_schema_input_type=str)]
PER_MISSING = Wording(missing="is required: ip, client, global, body:<json field> or header:<name>")
TOKEN_SCHEMA = {"type": "string", "pattern": r"^\s*[0-9a-fA-F]{64}\s*$"}


# Pydantic dataclasses rather than BaseModels: they are plain frozen dataclasses
# once built, so reading `route.limits` costs what a dataclass attribute costs
# (a BaseModel's __getattr__ hook makes every attribute read about 3x slower).
CONFIG = ConfigDict(extra="forbid", use_attribute_docstrings=True, hide_input_in_errors=True)
CONFIG_WITH_ITEMS = ConfigDict(**CONFIG, arbitrary_types_allowed=True)  # limits' RateLimitItem


@dataclass(frozen=True, kw_only=True, config=CONFIG)
class _Section:
    """A mapping that may be left empty in the YAML (`cors:` alone): its defaults apply."""

    @model_validator(mode="before")
    @classmethod
    def _empty(cls, data: Any) -> Any:
        return {} if data is None else data


# -- the policy-wide sections --------------------------------------------------


@dataclass(frozen=True, kw_only=True, config=CONFIG)
class Timeout(_Section):
    """Seconds allowed for each phase of a request to Reusely."""

    connect: Seconds = 3.0
    read: Seconds = 20.0
    write: Seconds = 20.0
    pool: Seconds = 3.0


@dataclass(frozen=True, kw_only=True, config=CONFIG)
class UpstreamPolicy(_Section):
    """How the gateway talks to Reusely."""

    timeout: Timeout = Timeout()
    """Seconds for each phase; a route's `timeout` overrides any of them."""
    max_connections: Positive = 100
    """Connections kept open to Reusely by each worker."""
    retries: Count = 1
    """Extra attempts after a failed connect, for GET, HEAD and OPTIONS only."""


@dataclass(frozen=True, kw_only=True, config=CONFIG)
class Limits(_Section):
    """Where and how rate limits are counted."""

    on_error: OnError = "allow"
    """What to do with a request when Redis cannot answer in time: forward it, or refuse it."""
    trusted_proxies: Annotated[tuple[CIDR, ...], BeforeValidator(none_is_empty)] = ()
    """CIDRs of proxies whose X-Forwarded-For is believed."""
    timeout: Annotated[Seconds, Field(le=1)] = 0.25
    """Seconds of the worker's own attention one Redis call may take before `on_error` applies."""


@dataclass(frozen=True, kw_only=True, config=CONFIG)
class Cors(_Section):
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
class Idempotency(_Section):
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


@dataclass(frozen=True, kw_only=True, config=CONFIG)
class Policy:
    """The reusely-gateway policy: what is forwarded to Reusely, for whom, how often."""

    upstream: UpstreamPolicy = _UPSTREAM
    limits: Limits = _LIMITS
    max_body_bytes: Count = MAX_BODY_BYTES
    """Largest request body forwarded, in bytes; a route may say otherwise."""
    cors: Cors = Cors()
    routes: Annotated[tuple[Route, ...], BeforeValidator(none_is_empty),
                      Wording(missing="is required: a list of routes", items="routes")]
    """Matched in file order: the first route whose path and method match wins."""
    clients: Annotated[tuple[Client, ...], BeforeValidator(none_is_empty),
                       Wording(items="clients")] = ()
    """Internal teams, each with a bearer token."""
    warnings: tuple[str, ...] = dataclasses.field(init=False, repr=False, compare=False)
    """Routes that an earlier route shadows for every method they share."""

    @field_validator("routes", mode="before")
    @classmethod
    def _inherit(cls, routes: Any, info: ValidationInfo) -> Any:
        """Fill each route's absent overrides with the policy-wide values."""
        if not isinstance(routes, list | tuple):
            return routes
        up: UpstreamPolicy = info.data.get("upstream", _UPSTREAM)
        limits: Limits = info.data.get("limits", _LIMITS)
        wide = {"max_body_bytes": info.data.get("max_body_bytes", MAX_BODY_BYTES),
                "retries": up.retries, "on_error": limits.on_error}
        filled = []
        for route in routes:
            if isinstance(route, dict):
                timeout = route.get("timeout")
                if timeout is None:
                    timeout = up.timeout
                elif isinstance(timeout, dict):
                    timeout = {**dataclasses.asdict(up.timeout), **timeout}
                route = {**wide, **route, "timeout": timeout}
            filled.append(route)
        return filled

    @model_validator(mode="wrap")
    @classmethod
    def _relations(cls, data: Any, handler: ModelWrapValidatorHandler[Policy]) -> Policy:
        """Checks between sections, on the raw data: reported whatever else is wrong."""
        found = checks.relations(data) if isinstance(data, dict) else []
        try:
            policy = handler(data)
        except ValidationError as exc:
            if not found:
                raise
            raise ValidationError.from_exception_data(exc.title, [
                *(InitErrorDetails(type=PydanticCustomError(e["type"], e["msg"], e.get("ctx")),
                                   loc=e["loc"], input=e["input"]) for e in exc.errors()),
                *(InitErrorDetails(type=problem(m), loc=loc, input=None) for loc, m in found),
            ]) from None
        if found:
            raise problems(found, data)
        return policy

    @model_validator(mode="after")
    def _warn(self) -> Policy:
        object.__setattr__(self, "warnings", checks.shadow_warnings(self.routes))
        return self


# -- the settings --------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Settings:
    """Everything a gateway process needs, each fact worked out once by `load_settings`."""

    policy: Policy
    policy_source: str  # the file path, or "built-in default policy"
    credentials: Mapping[str, Secret | None]
    credential_problems: Mapping[str, str]  # credential name -> why its file was not read
    credential_files: Mapping[str, str]  # "api_key", ..., "limit_key_secret" -> its _FILE path
    disabled_routes: Mapping[str, tuple[str, ...]]  # route -> the credentials it lacks
    base_url: str
    base_url_display: str  # base_url with any user:password@ shown as ***@
    redis_url: str | None
    limit_key_secret: Secret | None  # GATEWAY_LIMIT_KEY_SECRET, as given
    limit_key: bytes = dataclasses.field(repr=False)  # the HMAC key hiding limited values
    limit_key_source: str  # GATEWAY_LIMIT_KEY_SECRET | derived from REUSELY_API_KEY | random ...
    bind: tuple[str, int]
    metrics_bind: tuple[str, int]
    workers: int
    log_level: str
    warnings: tuple[str, ...]  # every warning, once: start-up logs them, check-config prints them
