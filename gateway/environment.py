"""The environment -> `Settings`: credentials (or their `_FILE`s), binds, Redis, workers.

Every problem is collected and reported together with the policy's.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from gateway.errors import ConfigError
from gateway.policy import parse_policy, parse_yaml
from gateway.settings import CREDENTIAL_ENV, LOG_LEVELS, Secret, Settings

DEFAULT_CONFIG_PATH = Path("config/gateway.yaml")
DEFAULTS: Mapping[str, str] = {  # the environment's defaults; GATEWAY_WORKERS: the CPU count
    "REUSELY_BASE_URL": "https://api.reusely.com",
    "GATEWAY_BIND": "127.0.0.1:8080",
    "GATEWAY_METRICS_BIND": "127.0.0.1:9464",
    "GATEWAY_LOG_LEVEL": "info",
}


def read_env_value(environ: Mapping[str, str], name: str) -> tuple[str | None, str | None]:
    """The value of NAME, from NAME_FILE if set (it wins), else NAME.

    Returns (value, problem). An unreadable file is a problem, not a crash; an
    empty value counts as missing. Trailing newlines of a file are stripped.
    """
    file_name = environ.get(f"{name}_FILE")
    if file_name:
        try:
            value = Path(file_name).read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            return None, f"{name}_FILE: cannot read {file_name}: {exc.strerror or exc}"
        return (value or None), None
    return (environ.get(name) or None), None


def parse_bind(value: str, where: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError([f"{where}: {value!r} is not HOST:PORT like 127.0.0.1:8080"])
    return host, int(port)


def format_bind(bind: tuple[str, int]) -> str:
    host, port = bind
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def policy_text(environ: Mapping[str, str], cwd: Path | None = None, *,
                named_by: str = "GATEWAY_CONFIG") -> tuple[str, str]:
    """(YAML text, where it came from) per GATEWAY_CONFIG, the default path, or built-in.

    `named_by` is what a problem reading the file names as its cause (`--config F`).
    """
    path = environ.get("GATEWAY_CONFIG")
    if not path:
        default = (cwd or Path.cwd()) / DEFAULT_CONFIG_PATH
        if not default.is_file():
            return default_policy_text(), "built-in default policy"
        path = str(default)
    try:
        return Path(path).read_text(encoding="utf-8"), path
    except OSError as exc:
        raise ConfigError([f"{named_by}: cannot read {path}: {exc.strerror or exc}"]) from exc


def default_policy_text() -> str:
    from importlib.resources import files

    return (files("gateway") / "default_policy.yaml").read_text(encoding="utf-8")


def load_settings(environ: Mapping[str, str], *, text: str | None = None,
                  source: str | None = None) -> Settings:
    """Settings from the environment and the policy (read per GATEWAY_CONFIG unless given).

    Every fact the gateway and `check-config` report is worked out here, once:
    the limit key and where it came from, the disabled routes, the warnings.
    """
    if text is None:
        text, source = policy_text(environ)
    source = source or "policy"
    problems: list[str] = []
    try:
        policy = parse_policy(parse_yaml(text, source))
    except ConfigError as exc:
        problems.extend(exc.problems)
    fixed = _startup_limit_key(environ.get(STARTUP_LIMIT_KEY), problems)
    credentials: dict[str, Secret | None] = {}
    credential_problems: dict[str, str] = {}
    files: dict[str, str] = {}
    for name, env in (*CREDENTIAL_ENV.items(), ("limit_key_secret", "GATEWAY_LIMIT_KEY_SECRET")):
        if environ.get(f"{env}_FILE"):
            files[name] = environ[f"{env}_FILE"]
        value, problem = read_env_value(environ, env)
        if name == "limit_key_secret":
            secret = Secret(value) if value else None
            if problem and fixed is None:  # with the start-up key, the file is not needed
                problems.append(problem)
            continue
        credentials[name] = Secret(value) if value else None
        if problem:
            credential_problems[name] = problem
    base_url = (environ.get("REUSELY_BASE_URL") or DEFAULTS["REUSELY_BASE_URL"]).rstrip("/")
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query:
        problems.append(f"REUSELY_BASE_URL: {hide_password(base_url)!r} is not an http(s) origin")
    redis_url = environ.get("GATEWAY_REDIS_URL") or None
    if redis_url and urlsplit(redis_url).scheme not in (
            "redis", "rediss", "redis+sentinel", "redis+cluster"):
        problems.append("GATEWAY_REDIS_URL: the scheme must be redis://, rediss://, "
                        "redis+sentinel:// or redis+cluster://")
    binds = []
    for env in ("GATEWAY_BIND", "GATEWAY_METRICS_BIND"):
        try:
            binds.append(parse_bind(environ.get(env) or DEFAULTS[env], env))
        except ConfigError as exc:
            problems.extend(exc.problems)
            binds.append(("127.0.0.1", 0))
    if binds[0][1] and binds[0][1] == binds[1][1]:
        problems.append("GATEWAY_METRICS_BIND: must be another port than GATEWAY_BIND")
    workers = _workers(environ.get("GATEWAY_WORKERS") or "", problems)
    log_level = (environ.get("GATEWAY_LOG_LEVEL") or DEFAULTS["GATEWAY_LOG_LEVEL"]).lower()
    if log_level not in LOG_LEVELS:
        problems.append(f"GATEWAY_LOG_LEVEL: {log_level!r} is not one of {', '.join(LOG_LEVELS)}")
    if problems:
        raise ConfigError(problems)
    limit_key, limit_key_source = fixed or _limit_key(secret, credentials["api_key"])
    disabled = {route.name: missing for route in policy.routes
                if (missing := tuple(c for c in route.credentials if credentials[c] is None))}
    warnings = [
        *policy.warnings,
        *(f"route {name} is disabled: {', '.join(missing)} missing"
          for name, missing in disabled.items()),
        *(f"credential {name}: {problem}" for name, problem in credential_problems.items()),
    ]
    if not redis_url:
        warnings.append("GATEWAY_REDIS_URL is not set: rate limits are counted in this "
                        "process's memory, so each worker and replica counts on its own")
    if limit_key_source == RANDOM_LIMIT_KEY:
        warnings.append("neither GATEWAY_LIMIT_KEY_SECRET nor REUSELY_API_KEY is set: limit "
                        "keys use a random per-process secret, so workers and replicas do not "
                        "share counts")
    elif limit_key_source == DERIVED_LIMIT_KEY and "api_key" in files:
        warnings.append("credentials come from files and GATEWAY_LIMIT_KEY_SECRET is not set: "
                        "a rotated API key would change the limit keys")
    return Settings(
        policy=policy, policy_source=source, credentials=credentials,
        credential_problems=credential_problems, credential_files=files,
        disabled_routes=disabled, base_url=base_url, base_url_display=hide_password(base_url),
        redis_url=redis_url, limit_key_secret=secret, limit_key=limit_key,
        limit_key_source=limit_key_source, bind=binds[0], metrics_bind=binds[1],
        workers=workers, log_level=log_level, warnings=tuple(warnings))


SECRET_LIMIT_KEY = "GATEWAY_LIMIT_KEY_SECRET"
DERIVED_LIMIT_KEY = "derived from REUSELY_API_KEY"
RANDOM_LIMIT_KEY = "random per process"
# The limit key `serve` worked out at start-up, for its workers: `secret:<hex>` or
# `derived:<hex>`. Not a setting: `serve` sets it in the environment gunicorn and
# its workers inherit (readable only by the gateway's own user, like the
# credentials), so that every worker, including one gunicorn starts later or a
# SIGHUP replaces, hashes with the same key although the API key or the limit key
# file may have changed since. Without it each worker would derive its key from
# the file as it finds it, and a rotated API key would split the counts.
STARTUP_LIMIT_KEY = "GATEWAY_STARTUP_LIMIT_KEY"
_STARTUP_SOURCES = {"secret": SECRET_LIMIT_KEY, "derived": DERIVED_LIMIT_KEY}


def startup_limit_key(settings: Settings) -> str | None:
    """What `serve` passes its workers in STARTUP_LIMIT_KEY; None for a random key.

    A random key (neither a secret nor an API key set) stays random per process.
    """
    tag = next((t for t, source in _STARTUP_SOURCES.items()
                if source == settings.limit_key_source), None)
    return None if tag is None else f"{tag}:{settings.limit_key.hex()}"


def _startup_limit_key(raw: str | None, problems: list[str]) -> tuple[bytes, str] | None:
    if not raw:
        return None
    tag, _, key = raw.partition(":")
    try:
        value = bytes.fromhex(key)
    except ValueError:
        value = b""
    if tag not in _STARTUP_SOURCES or not value:
        problems.append(f"{STARTUP_LIMIT_KEY}: set by `reusely-gateway serve` for its workers "
                        "only; unset it")
        return None
    return value, _STARTUP_SOURCES[tag]


def _limit_key(secret: Secret | None, api_key: Secret | None) -> tuple[bytes, str]:
    """The HMAC key that hides emails, phones and IPs in Redis, and where it came from.

    Derived from the API key when no secret is set, so that replicas agree; the
    derivation must never change, or every count kept in Redis starts again.
    """
    if secret is not None:
        return secret.reveal().encode(), SECRET_LIMIT_KEY
    if api_key is not None:
        return hmac.new(b"reusely-gateway limit key v1", api_key.reveal().encode(),
                        hashlib.sha256).digest(), DERIVED_LIMIT_KEY
    return os.urandom(32), RANDOM_LIMIT_KEY


def hide_password(url: str) -> str:
    """`url` with any `user:password@` shown as `***@`, and any query (redis-py takes
    `?password=` too) as `?***`: what tools and logs may print."""
    parts = urlsplit(url)
    if "@" in parts.netloc:
        parts = parts._replace(netloc="***@" + parts.netloc.rpartition("@")[2])
    if parts.query or parts.fragment:
        parts = parts._replace(query="***" if parts.query else "", fragment="")
    return urlunsplit(parts)


def _workers(raw: str, problems: list[str]) -> int:
    if not raw:
        return os.cpu_count() or 1
    if not raw.isdigit() or int(raw) < 1:
        problems.append(f"GATEWAY_WORKERS: {raw!r} must be a whole number of at least 1")
        return 1
    return int(raw)
