"""What the benchmark starts and measures through: every target, how it is run, from which venv.

  upstream        nginx, the fast fake Reusely (core 1, with wrk); "direct" is wrk going
                  straight to it, for the added latency at light load
  nginx           nginx proxy_pass setting the three Reusely headers: the C reference
  peer            fastapi-proxy-lib (Starlette + httpx) under gunicorn, one uvicorn worker
  floor-aiohttp   a minimal proxy on the gateway's own stack (floor_aiohttp.py): the floor
  floor-granian   the same minimal proxy on granian + pyreqwest (floor_granian.py): the
                  outside reference
  gateway         reusely-gateway serve --workers 1, bench/policy.yaml, Redis limiter
  gateway-nolimits  the same with bench/policy-nolimits.yaml (mail-in without limits)
  gateway-cache   the gateway with bench/policy-cache.yaml: the catalog kept (Redis, and
                  each worker's own copy of a hot answer in memory)
  gateway-cache-redis  the same with the workers' copies off (cache_variant.py): every
                  hit read from Redis

Every proxy runs on core 0. A new target is a line in SERVERS (another Python
proxy in its own venv) or GATEWAYS (the gateway with another policy file), a
port in settings.PORT, and its name in the scenarios it takes part in.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from configs import nginx_proxy_conf, upstream_conf
from probe import wait_http, wait_port
from procs import Proc, Procs
from settings import (
    BENCH,
    CATALOG_PATH,
    FLOOR_AIOHTTP_VENV,
    FLOOR_GRANIAN_VENV,
    GATEWAY_BIN,
    GATEWAY_PYTHON,
    HOST,
    LOAD_CPU,
    PEER_VENV,
    PORT,
    PROXY_CPU,
    REDIS_URL,
    ROOT,
    upstream_env,
)


@dataclass
class Target:
    """A started target: where it listens, its process tree, what it is checked on."""

    name: str
    port: int
    proc: Proc | None = None
    checks: str = "proxy"  # a key of probe.CHECKS


# The packages whose versions the report lists for each Python stack.
SERVER_STACK = ("uvicorn", "uvicorn-worker", "gunicorn", "uvloop", "httptools")


@dataclass(frozen=True)
class ServerSpec:
    """A Python proxy other than the gateway, from its own bench-only venv."""

    venv: Path
    argv: Callable[[Path, int], list[str]]  # (venv, port) -> command line
    packages: tuple[str, ...]  # versions listed in RESULTS.md
    checks: str = "proxy"
    probe: str = CATALOG_PATH  # answered once the worker is up


def _gunicorn(app: str) -> Callable[[Path, int], list[str]]:
    """gunicorn with one uvicorn worker serving app, as the gateway's own server runs."""
    def argv(venv: Path, port: int) -> list[str]:
        return [str(venv / "bin" / "gunicorn"), app, "--workers", "1",
                "--worker-class", "uvicorn_worker.UvicornWorker", "--no-control-socket",
                "--bind", f"{HOST}:{port}", "--backlog", "4096"]
    return argv


def _granian(app: str) -> Callable[[Path, int], list[str]]:
    """granian, one worker with one runtime thread, RSGI, HTTP/1.1 only, on uvloop."""
    def argv(venv: Path, port: int) -> list[str]:
        return [str(venv / "bin" / "granian"), "--interface", "rsgi", "--factory",
                "--workers", "1", "--runtime-threads", "1", "--loop", "uvloop", "--http", "1",
                "--no-ws", "--host", HOST, "--port", str(port), "--backlog", "4096",
                "--log-level", "warning", app]
    return argv


SERVERS = {
    "peer": ServerSpec(
        PEER_VENV, _gunicorn("peer_app:app"),
        ("fastapi-proxy-lib", "fastapi", "starlette", "httpx", "httpcore", "anyio", "sniffio",
         *SERVER_STACK)),
    "floor-aiohttp": ServerSpec(
        FLOOR_AIOHTTP_VENV, _gunicorn("floor_aiohttp:app_from_env()"),
        (*SERVER_STACK, "aiohttp"), checks="catalog"),
    "floor-granian": ServerSpec(
        FLOOR_GRANIAN_VENV, _granian("floor_granian:app_from_env"),
        ("granian", "pyreqwest", "uvloop"), checks="catalog"),
}


@dataclass
class GatewaySpec:
    """How to run one gateway target: the policy, and for experiments the venv and app."""

    policy: Path
    python: Path | None = None  # None: `.venv/bin/reusely-gateway serve`
    app: str = "gateway.factory:create_app_from_env()"
    checks: str = "gateway"


GATEWAYS = {
    "gateway": GatewaySpec(BENCH / "policy.yaml"),
    "gateway-nolimits": GatewaySpec(BENCH / "policy-nolimits.yaml"),
    "gateway-cache": GatewaySpec(BENCH / "policy-cache.yaml", checks="cached"),
    "gateway-cache-redis": GatewaySpec(BENCH / "policy-cache.yaml", python=GATEWAY_PYTHON,
                                       app="cache_variant:redis_hits_app()", checks="cached"),
}
GATEWAY_PACKAGES = ("reusely-gateway", "starlette", "httpx", "httpcore", "anyio", "sniffio",
                    *SERVER_STACK, "aiohttp", "limits", "redis")
GATEWAY_VENV = GATEWAY_PYTHON.parent.parent


def start_nginx(procs: Procs, tmp: Path, name: str) -> Target:
    """The upstream (on the load core) or the nginx proxy (on the proxy core)."""
    conf, cpu = ((upstream_conf(tmp), LOAD_CPU) if name == "upstream"
                 else (nginx_proxy_conf(tmp), PROXY_CPU))
    path = tmp / f"{name}.conf"
    path.write_text(conf)
    proc = procs.start(name, ["nginx", "-c", str(path), "-p", str(tmp),
                              "-e", str(tmp / f"{name}-error.log")], cpu=cpu, logdir=tmp)
    wait_port(PORT[name], proc)
    proc.remember_children()
    return Target(name, PORT[name], proc)


def start_server(procs: Procs, tmp: Path, name: str, spec: ServerSpec) -> Target:
    proc = procs.start(name, spec.argv(spec.venv, PORT[name]), cpu=PROXY_CPU,
                       env=upstream_env(), logdir=tmp, cwd=BENCH)
    wait_port(PORT[name], proc)
    wait_http(PORT[name], proc, spec.probe)
    return Target(name, PORT[name], proc, spec.checks)


def start_gateway(procs: Procs, tmp: Path, name: str, spec: GatewaySpec) -> Target:
    env = dict(upstream_env(), GATEWAY_REDIS_URL=REDIS_URL, GATEWAY_LOG_LEVEL="info",
               PROMETHEUS_MULTIPROC_DIR=str(tmp / f"{name}-prom"))
    (tmp / f"{name}-prom").mkdir()
    bind, metrics = f"{HOST}:{PORT[name]}", f"{HOST}:{PORT[name + '-metrics']}"
    if spec.python is None:  # the product as shipped: reusely-gateway serve
        argv = [str(GATEWAY_BIN), "serve", "--config", str(spec.policy), "--bind", bind,
                "--metrics-bind", metrics, "--workers", "1"]
    else:  # an experiment: what `serve` does, with another app factory or venv
        env.update(GATEWAY_POLICY_TEXT=spec.policy.read_text(),
                   GATEWAY_POLICY_SOURCE=str(spec.policy), GATEWAY_CONFIG=str(spec.policy),
                   GATEWAY_BIND=bind, GATEWAY_METRICS_BIND=metrics,
                   PYTHONPATH=f"{ROOT}:{BENCH}")
        argv = [str(spec.python), "-m", "gunicorn", "--config", "python:gateway.gunicorn_conf",
                "--bind", bind, "--workers", "1", "--log-level", "info", spec.app]
    proc = procs.start(name, argv, cpu=PROXY_CPU, env=env, logdir=tmp, cwd=tmp)
    wait_port(PORT[name], proc, timeout=60)
    wait_http(PORT[name], proc, "/healthz")
    return Target(name, PORT[name], proc, spec.checks)
