"""What a policy value may be, and the sentence that says so when it is not.

The policy's models (`config`) call these checks from their fields. Each
raises a complete sentence in the gateway's words, which `policy` prints
after the value's place in the file:

    routes[2].limits[0].rate: "5/hr" is not a rate like "5/hour"

`relations` and `shadow_warnings` look across sections: the first on the raw
data, so that a route name given twice is reported even when the routes
have other problems too.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from limits import parse_many
from pydantic import ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

if TYPE_CHECKING:
    from gateway.config import Route

CREDENTIAL_HEADERS: dict[str, str] = {
    "api_key": "x-api-key",
    "tenant_id": "x-tenant-id",
    "secret_key": "x-secret-key",
    "marketplace_key": "x-marketplace-key",
}
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
BODYLESS_METHODS = frozenset(("GET", "HEAD", "OPTIONS", "DELETE"))
CHANGING_METHODS = frozenset(("POST", "PUT", "PATCH", "DELETE"))
NAME_RE = re.compile(r"^[a-z0-9-]+$")
FIELD_RE = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")
HEADER_RE = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")
HASH_RE = re.compile(r"^[0-9a-f]{64}$")
ORIGIN_RE = re.compile(r"^(https?)://(\*\.)?([a-z0-9-]+(\.[a-z0-9-]+)*|\[[0-9a-f:]+\])(:\d{1,5})?$")
PER_RE = re.compile(r"^(ip|client|global|body:[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*"
                    r"|header:[A-Za-z0-9!#$%&'*+.^_`|~-]+)$")  # FIELD_RE and HEADER_RE inside

TOKEN_MISSING = "is required: the hex SHA-256 of the token, or a list of them"

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Found = list[tuple[tuple[str | int, ...], str]]  # (place relative to the value, sentence)


@dataclass(frozen=True)
class Wording:
    """Field metadata: the words for a field's problems where the table's would be vaguer."""

    missing: str = "is required"  # when the key is absent
    items: str = "strings"  # "must be a list of <items>, not a number"


def kind(value: Any) -> str:
    """What a YAML value is, in the words of a sentence: "a string", "a list", "empty"."""
    return {
        dict: "a mapping",
        list: "a list",
        str: "a string",
        bool: "a boolean",
        int: "a number",
        float: "a number",
        type(None): "empty",
    }.get(type(value), type(value).__name__)


def problem(message: str) -> PydanticCustomError:
    """One problem at the value being checked; `message` is the whole sentence."""
    return PydanticCustomError("policy", message)


def problems(found: Found, value: Any) -> ValidationError:
    """Several problems at once, each at a place relative to the value being checked."""
    return ValidationError.from_exception_data("Policy", [
        InitErrorDetails(type=problem(message), loc=loc, input=value) for loc, message in found])


def none_is_empty(value: Any) -> Any:
    """`limits:` with nothing after it is an empty list, as if the key were absent."""
    return () if value is None else value


# -- single values ----------------------------------------------------------


def name(value: str) -> str:
    if not NAME_RE.match(value):
        raise problem(f"{value!r} must match [a-z0-9-]+")
    return value


def origin(value: str) -> str:
    if value != "*" and not ORIGIN_RE.match(value):
        raise problem(f"{value!r} is not an origin like https://shop.example.com or "
                      "https://*.example.com (scheme, lower-case host, optional port, no path)")
    return value


def cidr(value: Any) -> IPNetwork:
    if not isinstance(value, str):
        raise problem(f"must be a string, not {kind(value)}")
    try:
        return ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise problem(f"{value!r} is not an IP address or CIDR") from None


def per_kind(per: str) -> tuple[str, str | None]:
    """("body", "email") for "body:email"; ("", None) when `per` is not a limit key."""
    what, _, rest = per.partition(":")
    if what in ("ip", "client", "global") and not rest:
        return what, None
    if what == "body" and FIELD_RE.match(rest):
        return what, rest
    if what == "header" and HEADER_RE.match(rest):
        return what, rest.lower()
    return "", None


def per(value: str) -> str:
    if not per_kind(value)[0]:
        raise problem(f"{value!r} is not one of ip, client, global, body:<json field>, "
                      "header:<name>")
    return value


def rate(value: str) -> str:
    try:
        items = parse_many(value)
    except ValueError:
        raise problem(f'"{value}" is not a rate like "5/hour"') from None
    if not items or any(item.amount < 1 for item in items):
        raise problem(f'"{value}" must allow at least 1 request per window')
    return value


def path(value: str) -> str:
    from starlette.routing import compile_path  # Starlette's own path syntax

    if not value.startswith("/"):
        raise problem(f"{value!r} must be a path starting with /")
    try:
        compile_path(value)
    except (ValueError, AssertionError) as exc:
        raise problem(f"{value!r} is not a Starlette path: {exc}") from None
    return value


def methods(value: tuple[str, ...]) -> tuple[str, ...]:
    """Upper-cased, each once; every unknown one reported at the list."""
    upper = tuple(dict.fromkeys(m.upper() for m in value))
    found: Found = [((), f"{m!r} is not one of {', '.join(METHODS)}")
                    for m in upper if m not in METHODS]
    if found:
        raise problems(found, value)
    if not upper:
        raise problem("must list at least one method")
    return upper


def credentials(value: tuple[str, ...]) -> tuple[str, ...]:
    found: Found = [((), f"{c!r} is not one of {', '.join(CREDENTIAL_HEADERS)}")
                    for c in value if c not in CREDENTIAL_HEADERS]
    if found:
        raise problems(found, value)
    return tuple(dict.fromkeys(value))


def token_hashes(value: Any) -> tuple[str, ...]:
    """One hex SHA-256 or a list of them; trimmed and lower-cased."""
    listed = isinstance(value, list | tuple)
    hashes = list(value) if listed else [value] if isinstance(value, str) else []
    if not hashes:
        raise problem(TOKEN_MISSING)
    found: Found = [((i,) if listed else (), "must be 64 hex digits (run `reusely-gateway "
                     "token new`)") for i, h in enumerate(hashes)
                    if not isinstance(h, str) or not HASH_RE.match(h.strip().lower())]
    if found:
        raise problems(found, value)
    return tuple(h.strip().lower() for h in hashes)


# -- across sections --------------------------------------------------------


def _same_windows(limits: Any, where: tuple[str | int, ...]) -> Found:
    """Two limits of one route (or client) counting the same window: they would share
    one Redis list, and every request would be counted in it twice."""
    found: Found = []
    windows: dict[tuple[str, int, int], int] = {}
    for j, limit in enumerate(limits if isinstance(limits, list) else ()):
        per, rate = (limit.get("per"), limit.get("rate")) if isinstance(limit, dict) else (0, 0)
        if not isinstance(per, str) or not isinstance(rate, str):
            continue
        try:
            items = parse_many(rate)
        except ValueError:
            continue
        for item in items:
            window = (per, item.amount, item.get_expiry())
            if window in windows and windows[window] != j:
                found.append(((*where, j), f"counts the same window as limits[{windows[window]}]"
                              f" ({per} {item.amount} per {item.get_expiry()} s): give each "
                              "window once"))
                break
            windows.setdefault(window, j)
    return found


def relations(data: dict[str, Any]) -> Found:
    """Route names given twice, clients naming unknown routes, names and tokens shared.

    Works on the raw data: each check needs only the values it compares to be
    well-formed, not the whole section.
    """
    found: Found = []
    routes = data.get("routes")
    for section in ("routes", "clients"):
        entries = data.get(section)
        for i, entry in enumerate(entries if isinstance(entries, list) else ()):
            if isinstance(entry, dict):
                found += _same_windows(entry.get("limits"), (section, i, "limits"))
    seen: dict[str, int] = {}
    for i, route in enumerate(routes if isinstance(routes, list) else ()):
        given = route.get("name") if isinstance(route, dict) else None
        if isinstance(given, str):
            if given in seen:
                found.append((("routes", i, "name"),
                              f"{given!r} is already the name of routes[{seen[given]}]"))
            else:
                seen[given] = i
    clients = data.get("clients")
    names: set[str] = set()
    owners: dict[str, str] = {}
    for i, client in enumerate(clients if isinstance(clients, list) else ()):
        if not isinstance(client, dict):
            continue
        given = client.get("name")
        if isinstance(given, str):
            if given in names:
                found.append((("clients", i, "name"), f"{given!r} is already a client name"))
            names.add(given)
        listed = client.get("routes")
        for r in listed if isinstance(listed, list) else ():
            if isinstance(r, str) and r != "*" and r not in seen:
                found.append((("clients", i, "routes"), f"{r!r} is not a route name"))
        hashes = client.get("token_sha256")
        for h in hashes if isinstance(hashes, list) else [hashes]:
            h = h.strip().lower() if isinstance(h, str) else ""
            if (HASH_RE.match(h) and isinstance(given, str)
                    and owners.setdefault(h, given) != given):
                found.append((("clients", i, "token_sha256"),
                              f"this hash is also a token of client {owners[h]!r}"))
    return found


def shadow_warnings(routes: Sequence[Route]) -> tuple[str, ...]:
    """Routes that an earlier route shadows for every method they share."""
    from starlette.routing import compile_path

    compiled = [(r, compile_path(r.path)[0]) for r in routes]
    warnings = []
    for j, (later, _) in enumerate(compiled):
        sample = re.sub(r"\{[^}]*\}", "x", later.path)
        for i, (earlier, regex) in enumerate(compiled[:j]):
            shared = set(earlier.methods) & set(later.methods)
            if shared and regex.match(sample):
                warnings.append(f"routes[{j}] ({later.name}): {', '.join(sorted(shared))} "
                                f"requests to {later.path} are taken by routes[{i}] "
                                f"({earlier.name}), which comes first")
                break
    return tuple(warnings)
