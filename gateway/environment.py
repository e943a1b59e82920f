"""The environment -> `Settings`: credentials (or their `_FILE`s), binds, Redis, workers.

Every problem is collected and reported together with the policy's.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

from gateway.config import CREDENTIAL_ENV, LOG_LEVELS, Secret, Settings
from gateway.errors import ConfigError
from gateway.policy import parse_policy, parse_yaml

DEFAULT_CONFIG_PATH = Path("config/gateway.yaml")


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


def policy_text(environ: Mapping[str, str], cwd: Path | None = None) -> tuple[str, str]:
    """(YAML text, where it came from) per GATEWAY_CONFIG, the default path, or built-in."""
    path = environ.get("GATEWAY_CONFIG")
    if not path:
        default = (cwd or Path.cwd()) / DEFAULT_CONFIG_PATH
        if not default.is_file():
            return default_policy_text(), "built-in default policy"
        path = str(default)
    try:
        return Path(path).read_text(encoding="utf-8"), path
    except OSError as exc:
        raise ConfigError([f"GATEWAY_CONFIG: cannot read {path}: {exc.strerror or exc}"]) from exc


def default_policy_text() -> str:
    from importlib.resources import files

    return (files("gateway") / "default_policy.yaml").read_text(encoding="utf-8")


def load_settings(environ: Mapping[str, str], *, text: str | None = None,
                  source: str | None = None) -> Settings:
    """Settings from the environment and the policy (read per GATEWAY_CONFIG unless given)."""
    if text is None:
        text, source = policy_text(environ)
    source = source or "policy"
    problems: list[str] = []
    try:
        policy = parse_policy(parse_yaml(text, source))
    except ConfigError as exc:
        problems.extend(exc.problems)
    credentials: dict[str, Secret | None] = {}
    credential_problems: dict[str, str] = {}
    for name, env in CREDENTIAL_ENV.items():
        value, problem = read_env_value(environ, env)
        credentials[name] = Secret(value) if value else None
        if problem:
            credential_problems[name] = problem
    secret, problem = read_env_value(environ, "GATEWAY_LIMIT_KEY_SECRET")
    if problem:
        problems.append(problem)
    base_url = environ.get("REUSELY_BASE_URL") or "https://api.reusely.com"
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query:
        problems.append(f"REUSELY_BASE_URL: {base_url!r} is not an http(s) origin")
    redis_url = environ.get("GATEWAY_REDIS_URL") or None
    if redis_url and urlsplit(redis_url).scheme not in (
            "redis", "rediss", "redis+sentinel", "redis+cluster"):
        problems.append("GATEWAY_REDIS_URL: the scheme must be redis://, rediss://, "
                        "redis+sentinel:// or redis+cluster://")
    binds = []
    for env, default in (("GATEWAY_BIND", "127.0.0.1:8080"),
                         ("GATEWAY_METRICS_BIND", "127.0.0.1:9464")):
        try:
            binds.append(parse_bind(environ.get(env) or default, env))
        except ConfigError as exc:
            problems.extend(exc.problems)
            binds.append(("127.0.0.1", 0))
    if binds[0][1] and binds[0][1] == binds[1][1]:
        problems.append("GATEWAY_METRICS_BIND: must be another port than GATEWAY_BIND")
    workers_raw = environ.get("GATEWAY_WORKERS") or ""
    workers = _workers(workers_raw, problems)
    log_level = (environ.get("GATEWAY_LOG_LEVEL") or "info").lower()
    if log_level not in LOG_LEVELS:
        problems.append(f"GATEWAY_LOG_LEVEL: {log_level!r} is not one of {', '.join(LOG_LEVELS)}")
    if problems:
        raise ConfigError(problems)
    return Settings(policy=policy, policy_source=source, credentials=credentials,
                    credential_problems=credential_problems, base_url=base_url.rstrip("/"),
                    redis_url=redis_url, limit_key_secret=Secret(secret) if secret else None,
                    bind=binds[0], metrics_bind=binds[1], workers=workers, log_level=log_level)


def _workers(raw: str, problems: list[str]) -> int:
    import os

    if not raw:
        return os.cpu_count() or 1
    if not raw.isdigit() or int(raw) < 1:
        problems.append(f"GATEWAY_WORKERS: {raw!r} must be a whole number of at least 1")
        return 1
    return int(raw)
