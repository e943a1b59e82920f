"""`reusely-gateway`: serve, check-config, schema, token new, sandbox, limits show|reset.

Settings are built here from argv and the environment. `serve` validates
them, prepares the environment the workers read (the validated policy text,
the metrics directory) and then becomes gunicorn, so that
PROMETHEUS_MULTIPROC_DIR is set before any Python of the server starts.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import tempfile
from collections.abc import Sequence
from urllib.parse import urlsplit

from gateway import __version__, cli_limits
from gateway.credentials import fingerprints, status_of
from gateway.environment import (
    STARTUP_LIMIT_KEY,
    format_bind,
    load_settings,
    parse_bind,
    policy_text,
    startup_limit_key,
)
from gateway.errors import ConfigError
from gateway.settings import Settings
from gateway.tokens import token_sha256


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reusely-gateway",
        description="A gateway that holds Reusely's credentials server-side.")
    parser.add_argument("--version", action="version", version=__version__)
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    serve = verbs.add_parser("serve", help="run the gateway under gunicorn")
    serve.add_argument("--config", help="policy file (default: $GATEWAY_CONFIG)")
    serve.add_argument("--bind", help="HOST:PORT of the proxy listener ($GATEWAY_BIND)")
    serve.add_argument("--metrics-bind", help="HOST:PORT of /metrics ($GATEWAY_METRICS_BIND)")
    serve.add_argument("--workers", help="worker processes ($GATEWAY_WORKERS)")
    check = verbs.add_parser("check-config", help="validate the policy and environment")
    check.add_argument("--config", help="policy file (default: $GATEWAY_CONFIG)")
    verbs.add_parser("schema", help="print the policy file's JSON Schema")
    token = verbs.add_parser("token", help="client tokens")
    token_verbs = token.add_subparsers(dest="token_verb", required=True, metavar="VERB")
    token_verbs.add_parser("new", help="print a new random token and its token_sha256 line")
    sandbox = verbs.add_parser("sandbox", help="run a local Reusely stand-in")
    sandbox.add_argument("--bind", default="127.0.0.1:8081", help="HOST:PORT (127.0.0.1:8081)")
    cli_limits.add_parser(verbs)
    return parser


def _environ(args: argparse.Namespace) -> dict[str, str]:
    env = dict(os.environ)
    for option, name in (("config", "GATEWAY_CONFIG"), ("bind", "GATEWAY_BIND"),
                         ("metrics_bind", "GATEWAY_METRICS_BIND"), ("workers", "GATEWAY_WORKERS")):
        value = getattr(args, option, None)
        if value:
            env[name] = value
    if env.get("GATEWAY_CONFIG"):
        env["GATEWAY_CONFIG"] = os.path.abspath(env["GATEWAY_CONFIG"])
    return env


def _load(env: dict[str, str], args: argparse.Namespace) -> tuple[Settings, str, str]:
    named_by = f"--config {args.config}" if getattr(args, "config", None) else "GATEWAY_CONFIG"
    text, source = policy_text(env, named_by=named_by)
    return load_settings(env, text=text, source=source), text, source


def serve(args: argparse.Namespace) -> int:
    env = _environ(args)
    settings, text, source = _load(env, args)
    from gateway.metrics import clear_multiprocess_dir

    env.pop("GATEWAY_POLICY_TEXT", None)
    env["GATEWAY_POLICY_TEXT"] = text
    env["GATEWAY_POLICY_SOURCE"] = source
    fixed = startup_limit_key(settings)  # every worker, now and later, hashes with this key
    if fixed:
        env[STARTUP_LIMIT_KEY] = fixed
    metrics_dir = env.get("PROMETHEUS_MULTIPROC_DIR") or tempfile.mkdtemp(prefix="gateway-metrics-")
    clear_multiprocess_dir(metrics_dir)
    env["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    env["GATEWAY_METRICS_BIND"] = format_bind(settings.metrics_bind)
    env["GATEWAY_LOG_LEVEL"] = settings.log_level
    argv = [sys.executable, "-m", "gunicorn", "--config", "python:gateway.gunicorn_conf",
            "--bind", format_bind(settings.bind), "--workers", str(settings.workers),
            "--log-level", settings.log_level, "gateway.factory:create_app_from_env()"]
    sys.stdout.flush()
    os.execve(sys.executable, argv, env)
    return 0  # not reached


def check_config(args: argparse.Namespace) -> int:
    settings, _, source = _load(_environ(args), args)
    policy = settings.policy
    print(f"policy: {source}")
    print(f"upstream: {settings.base_url_display}")
    status = status_of(settings.credentials)
    print("credentials: " + ", ".join(f"{k} {v}" for k, v in status.items()))
    for name, path in settings.credential_files.items():
        print(f"  {name} from file {path}")
    held = fingerprints(settings.credentials)  # the same line the running gateway logs
    if held:
        print("credential fingerprints (first 8 hex digits of SHA-256): "
              + ", ".join(f"{k} {v}" for k, v in held.items()))
    print(f"limit key: {settings.limit_key_source}")
    if settings.redis_url:
        parts = urlsplit(settings.redis_url)
        print(f"limits: counted in Redis ({parts.scheme}://{parts.hostname or ''}"
              f"{':' + str(parts.port) if parts.port else ''}), on_error {policy.limits.on_error}")
    else:
        print("limits: counted in process memory (per worker, per replica)")
    print(f"routes ({len(policy.routes)}):")
    for route in policy.routes:
        missing = settings.disabled_routes.get(route.name)
        limits = "; ".join(f"{r.per} {r.rate}" + (" (shadow)" if r.shadow else "")
                           for r in route.limits) or "none"
        state = f"DISABLED ({', '.join(missing)} missing)" if missing else "enabled"
        print(f"  {route.name}: {','.join(route.methods)} {route.path} [{route.access}] "
              f"credentials {', '.join(route.credentials) or 'none'}; limits {limits}; {state}")
    print(f"clients ({len(policy.clients)}):")
    for client in policy.clients:
        limits = "; ".join(f"{r.per} {r.rate}" for r in client.limits) or "none"
        print(f"  {client.name}: routes {', '.join(client.routes) or 'none'}; "
              f"{len(client.token_sha256)} token(s); limits {limits}")
    print(f"cors.allow_origins: {', '.join(policy.cors.allow_origins) or 'none'}")
    for warning in settings.warnings:
        print(f"warning: {warning}")
    print(f"ok: {len(policy.routes)} routes, {len(policy.clients)} clients, "
          f"{len(settings.warnings)} warning(s)")
    return 0


def schema(args: argparse.Namespace) -> int:
    from gateway.policy import json_schema

    print(json.dumps(json_schema(), indent=2))
    return 0


def token_new(args: argparse.Namespace) -> int:
    token = secrets.token_urlsafe(32)
    print(f"token: {token}")
    print(f'token_sha256: "{token_sha256(token)}"')
    print("# Give the token to the team once; put only the token_sha256 line in the policy.",
          file=sys.stderr)
    return 0


def sandbox(args: argparse.Namespace) -> int:
    import uvicorn

    from gateway.environment import read_env_value
    from gateway.logsetup import logging_config
    from gateway.sandbox import SwitchError, create_app, switches_from_env

    host, port = parse_bind(args.bind, "--bind")
    api_key = read_env_value(os.environ, "REUSELY_API_KEY")[0] or "sandbox-api-key"
    secret_key = read_env_value(os.environ, "REUSELY_SECRET_KEY")[0] or "sandbox-secret-key"
    tenant_id = read_env_value(os.environ, "REUSELY_TENANT_ID")[0]
    try:
        switches = switches_from_env(os.environ)
    except SwitchError as exc:
        print(f"sandbox: {exc}", file=sys.stderr)
        return 2
    app = create_app(api_key=api_key, secret_key=secret_key, tenant_id=tenant_id,
                     switches=switches)
    print(f"sandbox: a Reusely stand-in on http://{host}:{port}", flush=True)
    hidden = (api_key, secret_key, switches.accept_api_key or api_key)
    uvicorn.run(app, host=host, port=port, log_config=logging_config("info", hidden),
                access_log=False)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.verb == "serve":
            return serve(args)
        if args.verb == "check-config":
            return check_config(args)
        if args.verb == "schema":
            return schema(args)
        if args.verb == "token":
            return token_new(args)
        if args.verb == "limits":
            return cli_limits.run(args, _load(_environ(args), args)[0])
        return sandbox(args)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - the CLI's last resort: no traceback
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
