"""The types the policy's fields are declared with: validated values, and a section's base.

Each type carries its own check (`checks`) and its JSON Schema hint, so a
field declared with it in `config` is validated, worded and published alike.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    Strict,
    model_validator,
)
from pydantic.dataclasses import dataclass

from gateway import checks
from gateway.checks import NAME_RE, ORIGIN_RE, IPNetwork, Wording, none_is_empty

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
class Section:
    """A mapping that may be left empty in the YAML (`cors:` alone): its defaults apply."""

    @model_validator(mode="before")
    @classmethod
    def _empty(cls, data: Any) -> Any:
        return {} if data is None else data
