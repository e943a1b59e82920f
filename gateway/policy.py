"""YAML policy -> a validated `Policy`, every problem located, in one pass.

    routes[2].limits[0].rate: "5/hr" is not a rate like "5/hour"

The models in `config` do the validating; this module reads the YAML (a key
given twice is an error, not a silent override), turns pydantic's errors into
the gateway's sentences, in the order they appear in the file, and publishes
the models' JSON Schema for editors and CI.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import typing
from typing import Annotated, Any

import yaml
from pydantic import (
    BeforeValidator,
    ModelWrapValidatorHandler,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.dataclasses import dataclass
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails, InitErrorDetails, PydanticCustomError

from gateway import checks
from gateway.checks import Wording, kind, none_is_empty, problem, problems
from gateway.config import (
    _LIMITS,
    _UPSTREAM,
    MAX_BODY_BYTES,
    Client,
    Cors,
    Limits,
    Route,
    UpstreamPolicy,
)
from gateway.errors import ConfigError
from gateway.fields import CONFIG, Count

# -- the YAML layer ---------------------------------------------------------


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


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe loader that refuses a mapping with the same key twice."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node)


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _construct_mapping,
)


def parse_yaml(text: str, source: str) -> Any:
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([f"{where}: not valid YAML: {problem}"]) from exc


# -- validation -------------------------------------------------------------


def parse_policy(data: Any) -> Policy:
    """A validated Policy from parsed YAML, or ConfigError with every problem located."""
    if data is None:
        raise ConfigError(["(top level): the policy is empty; `routes` is required"])
    try:
        return _adapter().validate_python(data)
    except ValidationError as exc:
        errors = sorted(exc.errors(include_url=False), key=lambda e: _position(data, e["loc"]))
        raise ConfigError([f"{_where(e)}: {_sentence(e)}" for e in errors]) from None


def _where(error: ErrorDetails) -> str:
    loc = error["loc"]
    if error["type"] == "invalid_key":  # a key that is not a string: named as written
        return ".".join(x for x in (_dotted(loc[:-1]), str(loc[-1])) if x)
    return _dotted(loc) or "(top level)"


def _dotted(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}" if out else part
    return out


_SENTENCES = {
    "int_type": "must be an integer, not {kind}",
    "float_type": "must be a number, not {kind}",
    "bool_type": "must be true or false, not {kind}",
    "string_type": "must be a string, not {kind}",
    "model_type": "must be a mapping, not {kind}",
    "dataclass_type": "must be a mapping, not {kind}",
    "dataclass_args_type": "must be a mapping, not {kind}",
    "model_attributes_type": "must be a mapping, not {kind}",
    "dict_type": "must be a mapping, not {kind}",
    "tuple_type": "must be a list of {items}, not {kind}",
    "list_type": "must be a list of {items}, not {kind}",
    "greater_than": "must be greater than {gt}",
    "greater_than_equal": "must be at least {ge}",
    "less_than_equal": "must be at most {le}",
    "less_than": "must be less than {lt}",
}


def _sentence(error: ErrorDetails) -> str:
    """Our words for one pydantic error: a table for built-in types, our checks' own text."""
    kind_, loc, ctx = error["type"], error["loc"], error.get("ctx") or {}
    if kind_ == "policy":  # raised by a check in config: already a sentence
        return error["msg"]
    if kind_ in ("extra_forbidden", "unexpected_keyword_argument", "invalid_key"):
        known = list(_fields(_walk(loc[:-1])[0]))
        return "unknown key" + (f" (known keys: {', '.join(known)})" if known else "")
    wording = _wording(_walk(loc)[1])
    if kind_ in ("missing", "missing_argument", "missing_keyword_only_argument"):
        return wording.missing
    if kind_ == "literal_error":
        choices = re.findall(r"'([^']*)'", str(ctx.get("expected", "")))
        return f"{error['input']!r} is not one of {', '.join(choices)}"
    template = _SENTENCES.get(kind_)
    if template is None:  # a type the table does not know yet: pydantic's words, located
        return error["msg"]
    numbers = {k: int(v) if isinstance(v, float) and v.is_integer() else v
               for k, v in ctx.items()}  # "greater than 0", not "0.0"
    return template.format(kind=kind(error["input"]), items=wording.items, **numbers)


@functools.cache
def _adapter() -> TypeAdapter[Policy]:
    return TypeAdapter(Policy)


def _fields(tp: Any) -> dict[str, FieldInfo]:
    """The keys one of the policy's dataclasses takes; none for any other type."""
    found = getattr(tp, "__pydantic_fields__", None) if isinstance(tp, type) else None
    return {k: f for k, f in (found or {}).items() if f.init is not False}


def _unwrap(tp: Any) -> Any:
    """The type under Annotated[...] and `X | None`."""
    while True:
        if typing.get_origin(tp) is Annotated:
            tp = typing.get_args(tp)[0]
            continue
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if typing.get_origin(tp) in (typing.Union, type(int | None)) and len(args) == 1:
            tp = args[0]
            continue
        return tp


def _walk(loc: tuple[int | str, ...]) -> tuple[Any, FieldInfo | None]:
    """The type at `loc` in the policy's models, and the field that declares it."""
    tp: Any = Policy
    info: FieldInfo | None = None
    for part in loc:
        tp = _unwrap(tp)
        if isinstance(part, str) and _fields(tp):
            info = _fields(tp).get(part)
            if info is None:
                return None, None
            tp = info.annotation
        elif isinstance(part, int) and typing.get_args(tp):
            tp, info = typing.get_args(tp)[0], None
        else:
            return None, None
    return _unwrap(tp), info


def _wording(info: FieldInfo | None) -> Wording:
    found = [m for m in (info.metadata if info else ()) if isinstance(m, Wording)]
    return found[0] if found else Wording()


def _position(data: Any, loc: tuple[int | str, ...]) -> list[int]:
    """Where `loc` is in the document: the index of each key or item on the way."""
    out = []
    for part in loc:
        if isinstance(data, dict):
            keys = list(data)
            out.append(keys.index(part) if part in data else len(keys))
            data = data.get(part)
        elif isinstance(data, list) and isinstance(part, int) and part < len(data):
            out.append(part)
            data = data[part]
        else:
            out.append(0)
            data = None
    return out


# -- the JSON Schema --------------------------------------------------------


def json_schema() -> dict[str, Any]:
    """The policy file's JSON Schema (draft 2020-12), from the models."""
    schema = _adapter().json_schema(mode="validation")
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema,
            "title": "reusely-gateway policy"}
