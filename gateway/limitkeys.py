"""What a limit counts: normalised values, hidden behind an HMAC, and the key names.

One place for the rules every counter shares -- the limiter, Reusely's
cooldowns, `/gateway/quota` and `reusely-gateway limits show|reset` -- so a
support agent's `--email` finds exactly the count the gateway keeps.

Normalising (every `body:` and `header:` value): NFKC, then Unicode format
characters (category Cf: zero-width space, BOM, ZWJ, soft hyphen...) removed,
then trimmed. An email is then lower-cased; a phone keeps only its decimal
digits, any script's counted as ASCII (`+1 555…`, `1 555…` and the same in
full-width or Arabic-Indic digits are one phone). A value empty after
normalising counts as absent: five shoppers sending `"phone": ""` must not
share one bucket. Which rule applies is read
from the field's last name part (`customer.email` is an email).

No Redis key or value holds a value in clear: each becomes
HMAC-SHA256(limit key, kind NUL value), 128 bits in hex.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import unicodedata

from gateway.config import LimitRule

_NAME_UNSAFE = re.compile(r"[^a-z0-9.-]+")


def _clean(value: str) -> str:
    value = unicodedata.normalize("NFKC", value)
    if not value.isascii():
        value = "".join(c for c in value if unicodedata.category(c) != "Cf")
    return value.strip()


def _digits(value: str) -> str:
    if value.isascii():
        return "".join(c for c in value if "0" <= c <= "9")
    return "".join(str(unicodedata.decimal(c)) for c in value if unicodedata.decimal(c, None)
                   is not None)


def field_kind(field: str) -> str:
    """`email`, `phone` or `other`, from the last part of a dotted field name."""
    leaf = field.rsplit(".", 1)[-1].lower()
    if "email" in leaf:
        return "email"
    if "phone" in leaf:
        return "phone"
    return "other"


def normalise(field: str, value: str) -> str | None:
    """The value a limit counts, or None when nothing is left of it (absent)."""
    kind = field_kind(field)
    cleaned = _clean(value)
    if kind == "email":
        cleaned = cleaned.lower()
    elif kind == "phone":
        cleaned = _digits(cleaned)
    return cleaned or None


class LimitKeys:
    """Key names for limit windows and cooldowns, values hidden by the limit key."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def hide(self, kind: str, value: str) -> str:
        return hmac.new(self._secret, f"{kind}\0{value}".encode(), hashlib.sha256
                        ).hexdigest()[:32]

    def identity(self, rule: LimitRule, *, client: str, ip_key: str,
                 values: dict[str, str]) -> str | None:
        """What one limit counts this request as, or None when its key is absent."""
        if rule.kind == "ip":
            return self.hide("ip", ip_key)
        if rule.kind == "client":
            return client
        if rule.kind == "global":
            return "all"
        assert rule.field is not None
        value = values.get(rule.per)
        return None if value is None else self.hide(rule.per, value)

    def cooldown(self, route: str, values: tuple[str | None, ...]) -> str:
        """The key of Reusely's 429 cooldown for this route and tuple of keyed values."""
        if not values:
            return f"rg/cooldown/{route}"
        joined = "\0".join("\1" if v is None else v for v in values)
        return f"rg/cooldown/{route}/{self.hide('cooldown', joined)}"


def policy_name(scope: str, rule: LimitRule, expiry: int, several: bool) -> str:
    """The limit's name in the IETF RateLimit headers: route (or client) and `per`."""
    base = _NAME_UNSAFE.sub("-", f"{scope.replace('client:', 'client.')}.{rule.per}")
    return f"{base}.{expiry}s" if several else base

