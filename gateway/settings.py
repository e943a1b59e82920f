"""`Settings`: the policy, and what the environment adds to it, each fact worked out once.

`environment.load_settings` builds them from the environment variables and
the policy file; `check-config` prints them and every process starts from
them. Secret values travel as `Secret`, which never shows itself.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from gateway.policy import Policy

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
