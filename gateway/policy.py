"""YAML policy -> a validated `Policy`, every problem located, in one pass.

    routes[2].limits[0].rate: "5/hr" is not a rate like "5/hour"

Unknown keys are errors, and so is a key given twice.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

import yaml
from limits import RateLimitItem, parse_many

from gateway.config import (
    CREDENTIAL_HEADERS,
    FIELD_RE,
    HASH_RE,
    HEADER_RE,
    METHODS,
    NAME_RE,
    ORIGIN_RE,
    Client,
    Cors,
    LimitRule,
    Limits,
    Policy,
    Route,
    Timeout,
    Upstream,
)
from gateway.errors import ConfigError

# -- the YAML layer ---------------------------------------------------------


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


class _Problems:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def add(self, where: str, message: str) -> None:
        self.lines.append(f"{where}: {message}")


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _mapping(value: Any, where: str, allowed: tuple[str, ...], p: _Problems) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        p.add(where or "(top level)", f"must be a mapping, not {_kind(value)}")
        return {}
    for key in value:
        if key not in allowed:
            hint = f" (known keys: {', '.join(allowed)})"
            p.add(_join(where, str(key)), f"unknown key{hint}")
    return {k: v for k, v in value.items() if k in allowed}


def _kind(value: Any) -> str:
    return {
        dict: "a mapping",
        list: "a list",
        str: "a string",
        bool: "a boolean",
        int: "a number",
        float: "a number",
        type(None): "empty",
    }.get(type(value), type(value).__name__)


def _number(value: Any, where: str, p: _Problems, *, integer: bool = False,
            minimum: float = 0, exclusive: bool = False) -> float | None:
    ok_type = isinstance(value, int) if integer else isinstance(value, int | float)
    if isinstance(value, bool) or not ok_type:
        p.add(where, f"must be {'an integer' if integer else 'a number'}, not {_kind(value)}")
        return None
    if value < minimum or (exclusive and value == minimum):
        p.add(where, f"must be {'greater than' if exclusive else 'at least'} {minimum}")
        return None
    return float(value) if not integer else value


def _int(value: Any, where: str, p: _Problems, *, minimum: int = 0) -> int | None:
    result = _number(value, where, p, integer=True, minimum=minimum)
    return None if result is None else int(result)


def _choice(value: Any, where: str, choices: tuple[str, ...], p: _Problems) -> str | None:
    if value not in choices:
        p.add(where, f"{value!r} is not one of {', '.join(choices)}")
        return None
    return str(value)


def _str_list(value: Any, where: str, p: _Problems) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        p.add(where, f"must be a list of strings, not {_kind(value)}")
        return []
    return list(value)


def _timeout(value: Any, where: str, base: Timeout, p: _Problems) -> Timeout:
    raw = _mapping(value, where, ("connect", "read", "write", "pool"), p)
    parts: dict[str, float] = {}
    for key, item in raw.items():
        number = _number(item, _join(where, key), p, minimum=0, exclusive=True)
        if number is not None:
            parts[key] = number
    return Timeout(
        connect=parts.get("connect", base.connect),
        read=parts.get("read", base.read),
        write=parts.get("write", base.write),
        pool=parts.get("pool", base.pool),
    )


def _limit_rules(
    value: Any, where: str, p: _Problems, *, for_client: bool
) -> tuple[LimitRule, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        p.add(where, f"must be a list of limits, not {_kind(value)}")
        return ()
    rules = []
    for i, item in enumerate(value):
        at = f"{where}[{i}]"
        raw = _mapping(item, at, ("per", "rate", "shadow"), p)
        rule = _limit_rule(raw, at, p, for_client=for_client)
        if rule is not None:
            rules.append(rule)
    return tuple(rules)


def _limit_rule(
    raw: dict[str, Any], at: str, p: _Problems, *, for_client: bool
) -> LimitRule | None:
    per, rate = raw.get("per"), raw.get("rate")
    ok = True
    kind, fld = "", None
    if not isinstance(per, str):
        p.add(f"{at}.per", "is required: ip, client, global, body:<json field> or header:<name>")
        ok = False
    else:
        kind, _, rest = per.partition(":")
        if kind in ("ip", "client", "global") and not rest:
            pass
        elif kind == "body" and FIELD_RE.match(rest):
            fld = rest
        elif kind == "header" and HEADER_RE.match(rest):
            fld = rest.lower()
        else:
            p.add(f"{at}.per", f"{per!r} is not one of ip, client, global, body:<json field>, "
                  "header:<name>")
            ok = False
        if for_client and kind == "body":
            p.add(f"{at}.per", "a client's limits count across routes; body keys belong on a route")
            ok = False
    items: tuple[RateLimitItem, ...] = ()
    if not isinstance(rate, str):
        p.add(f"{at}.rate", 'is required, like "5/hour" or "100/minute;1000/day"')
        ok = False
    else:
        try:
            items = tuple(parse_many(rate))
        except ValueError:
            p.add(f"{at}.rate", f'"{rate}" is not a rate like "5/hour"')
            ok = False
        else:
            if not items or any(item.amount < 1 for item in items):
                p.add(f"{at}.rate", f'"{rate}" must allow at least 1 request per window')
                ok = False
    shadow = raw.get("shadow", False)
    if not isinstance(shadow, bool):
        p.add(f"{at}.shadow", f"must be true or false, not {_kind(shadow)}")
        ok = False
    if not ok:
        return None
    assert isinstance(per, str) and isinstance(rate, str)
    return LimitRule(per=per, kind=kind, field=fld, rate=rate, items=items, shadow=shadow)


ROUTE_KEYS = ("name", "path", "methods", "credentials", "access", "cache_ttl", "limits",
              "timeout", "max_body_bytes", "retries", "on_error")


def _name(raw: dict[str, Any], at: str, reserved: str, why: str, p: _Problems) -> Any:
    name = raw.get("name")
    if not isinstance(name, str) or not NAME_RE.match(name):
        p.add(f"{at}.name", f"{name!r} must match [a-z0-9-]+")
    elif name == reserved:
        p.add(f"{at}.name", f'"{reserved}" is reserved for {why}')
    return name


def _route(item: Any, at: str, policy: Policy, p: _Problems) -> Route | None:
    from starlette.routing import compile_path  # Starlette's own path syntax

    raw = _mapping(item, at, ROUTE_KEYS, p)
    if not isinstance(item, dict):
        return None
    before = len(p.lines)
    name = _name(raw, at, "unmatched", "the metrics label of unmatched requests", p)
    path = raw.get("path")
    if not isinstance(path, str) or not path.startswith("/"):
        p.add(f"{at}.path", f"{path!r} must be a path starting with /")
    else:
        try:
            compile_path(path)
        except (ValueError, AssertionError) as exc:
            p.add(f"{at}.path", f"{path!r} is not a Starlette path: {exc}")
    methods = [m.upper() for m in _str_list(raw.get("methods", ["GET"]), f"{at}.methods", p)]
    for m in methods:
        if m not in METHODS:
            p.add(f"{at}.methods", f"{m!r} is not one of {', '.join(METHODS)}")
    if not methods and "methods" in raw:
        p.add(f"{at}.methods", "must list at least one method")
    creds = _str_list(raw.get("credentials", []), f"{at}.credentials", p)
    for c in creds:
        if c not in CREDENTIAL_HEADERS:
            p.add(f"{at}.credentials", f"{c!r} is not one of {', '.join(CREDENTIAL_HEADERS)}")
    access = _choice(raw.get("access", "internal"), f"{at}.access", ("public", "internal"), p)
    cache_ttl = raw.get("cache_ttl")
    if cache_ttl is not None:
        cache_ttl = _int(cache_ttl, f"{at}.cache_ttl", p, minimum=1)
        if set(methods) - {"GET", "HEAD"}:
            p.add(f"{at}.cache_ttl", "only GET routes can be cached")
    limits = _limit_rules(raw.get("limits"), f"{at}.limits", p, for_client=False)
    timeout = _timeout(raw.get("timeout"), f"{at}.timeout", policy.upstream.timeout, p)
    max_body = _int(raw.get("max_body_bytes", policy.max_body_bytes), f"{at}.max_body_bytes", p)
    retries = _int(raw.get("retries", policy.upstream.retries), f"{at}.retries", p)
    on_error = _choice(raw.get("on_error", policy.limits.on_error), f"{at}.on_error",
                       ("allow", "deny"), p)
    if len(p.lines) > before:
        return None
    assert isinstance(name, str) and isinstance(path, str) and access and on_error
    assert max_body is not None and retries is not None
    return Route(name=name, path=path, methods=tuple(dict.fromkeys(methods)),
                 credentials=tuple(dict.fromkeys(creds)), access=access, timeout=timeout,
                 max_body_bytes=max_body, retries=retries, on_error=on_error,
                 limits=limits, cache_ttl=cache_ttl)


def _client(item: Any, at: str, route_names: set[str], p: _Problems) -> Client | None:
    raw = _mapping(item, at, ("name", "token_sha256", "routes", "limits"), p)
    if not isinstance(item, dict):
        return None
    before = len(p.lines)
    name = _name(raw, at, "public", "anonymous callers", p)
    hashes = raw.get("token_sha256")
    hash_list = [hashes] if isinstance(hashes, str) else hashes
    if not isinstance(hash_list, list) or not hash_list:
        p.add(f"{at}.token_sha256", "is required: the hex SHA-256 of the token, or a list of them")
        hash_list = []
    normalised = []
    for i, h in enumerate(hash_list):
        where = f"{at}.token_sha256" + (f"[{i}]" if isinstance(hashes, list) else "")
        if not isinstance(h, str) or not HASH_RE.match(h.strip().lower()):
            p.add(where, "must be 64 hex digits (run `reusely-gateway token new`)")
        else:
            normalised.append(h.strip().lower())
    routes = _str_list(raw.get("routes", []), f"{at}.routes", p)
    for r in routes:
        if r != "*" and r not in route_names:
            p.add(f"{at}.routes", f"{r!r} is not a route name")
    limits = _limit_rules(raw.get("limits"), f"{at}.limits", p, for_client=True)
    if len(p.lines) > before:
        return None
    assert isinstance(name, str)
    return Client(name=name, token_sha256=tuple(normalised), routes=tuple(routes), limits=limits)


def _origins(value: Any, where: str, p: _Problems) -> tuple[str, ...]:
    origins = _str_list(value, where, p) if value is not None else []
    for i, origin in enumerate(origins):
        if origin == "*":
            if len(origins) > 1:
                p.add(f"{where}[{i}]", '"*" allows every origin and cannot be combined with others')
        elif not ORIGIN_RE.match(origin):
            p.add(f"{where}[{i}]", f"{origin!r} is not an origin like https://shop.example.com "
                  "or https://*.example.com (scheme, lower-case host, optional port, no path)")
    return tuple(origins)


def parse_policy(data: Any) -> Policy:
    """A validated Policy from parsed YAML, or ConfigError with every problem located."""
    p = _Problems()
    top = _mapping(data, "", ("upstream", "limits", "max_body_bytes", "cors", "routes",
                              "clients"), p)
    if data is None:
        p.add("(top level)", "the policy is empty; `routes` is required")
    up_raw = _mapping(top.get("upstream"), "upstream",
                      ("timeout", "max_connections", "retries"), p)
    upstream = Upstream(
        timeout=_timeout(up_raw.get("timeout"), "upstream.timeout", Timeout(), p),
        max_connections=_int(up_raw.get("max_connections", 100), "upstream.max_connections",
                             p, minimum=1) or 100,
        retries=_int(up_raw.get("retries", 1), "upstream.retries", p) or 0,
    )
    lim_raw = _mapping(top.get("limits"), "limits", ("on_error", "trusted_proxies", "timeout"), p)
    proxies = []
    for i, cidr in enumerate(_str_list(lim_raw.get("trusted_proxies", []),
                                       "limits.trusted_proxies", p)):
        try:
            proxies.append(ipaddress.ip_network(cidr, strict=False))
        except ValueError:
            p.add(f"limits.trusted_proxies[{i}]", f"{cidr!r} is not an IP address or CIDR")
    limits = Limits(
        on_error=_choice(lim_raw.get("on_error", "allow"), "limits.on_error",
                         ("allow", "deny"), p) or "allow",
        trusted_proxies=tuple(proxies),
        timeout=_number(lim_raw.get("timeout", 0.1), "limits.timeout", p, minimum=0,
                        exclusive=True) or 0.1,
    )
    cors_raw = _mapping(top.get("cors"), "cors", ("allow_origins", "max_age"), p)
    cors = Cors(allow_origins=_origins(cors_raw.get("allow_origins"), "cors.allow_origins", p),
                max_age=_int(cors_raw.get("max_age", 600), "cors.max_age", p) or 0)
    max_body = _int(top.get("max_body_bytes", 1_048_576), "max_body_bytes", p)
    base = Policy(routes=(), upstream=upstream, limits=limits, cors=cors,
                  max_body_bytes=1_048_576 if max_body is None else max_body)

    routes: list[Route] = []
    raw_routes = top.get("routes")
    if data is not None and "routes" not in top:
        p.add("routes", "is required: a list of routes")
    elif raw_routes is not None and not isinstance(raw_routes, list):
        p.add("routes", f"must be a list of routes, not {_kind(raw_routes)}")
    else:
        seen: dict[str, int] = {}
        for i, item in enumerate(raw_routes or []):
            name = item.get("name") if isinstance(item, dict) else None
            duplicate = False
            if isinstance(name, str):
                duplicate = name in seen
                if duplicate:
                    p.add(f"routes[{i}].name",
                          f"{name!r} is already the name of routes[{seen[name]}]")
                else:
                    seen[name] = i
            route = _route(item, f"routes[{i}]", base, p)
            if route is not None and not duplicate:
                routes.append(route)
    route_names = {r.name for r in routes} | _names(raw_routes)
    clients: list[Client] = []
    raw_clients = top.get("clients")
    if raw_clients is not None and not isinstance(raw_clients, list):
        p.add("clients", f"must be a list of clients, not {_kind(raw_clients)}")
    else:
        owners: dict[str, str] = {}
        names: set[str] = set()
        for i, item in enumerate(raw_clients or []):
            client = _client(item, f"clients[{i}]", route_names, p)
            if client is None:
                continue
            if client.name in names:
                p.add(f"clients[{i}].name", f"{client.name!r} is already a client name")
            for h in client.token_sha256:
                if h in owners and owners[h] != client.name:
                    p.add(f"clients[{i}].token_sha256",
                          f"this hash is also a token of client {owners[h]!r}")
                owners[h] = client.name
            names.add(client.name)
            clients.append(client)
    if p.lines:
        raise ConfigError(p.lines)
    policy = Policy(routes=tuple(routes), clients=tuple(clients), upstream=upstream,
                    limits=limits, cors=cors, max_body_bytes=base.max_body_bytes)
    return Policy(**{**policy.__dict__, "warnings": tuple(shadow_warnings(policy))})


def _names(raw_routes: Any) -> set[str]:
    if not isinstance(raw_routes, list):
        return set()
    return {r["name"] for r in raw_routes if isinstance(r, dict) and isinstance(r.get("name"), str)}


def shadow_warnings(policy: Policy) -> list[str]:
    """Routes that an earlier route shadows for every method they share."""
    from starlette.routing import compile_path

    compiled = [(r, compile_path(r.path)[0]) for r in policy.routes]
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
    return warnings
