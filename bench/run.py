#!/usr/bin/env python3
"""Load benchmark for reusely-gateway, on loopback only.

One run starts, on 127.0.0.1:
  upstream   nginx, a fast fake Reusely (fixed ~600-byte JSON on the catalog
             path, 401 without x-api-key, 201 on the mail-in POST, 32 MiB on /big)
  nginx      nginx proxy_pass that sets the Reusely headers (the C reference)
  peer       fastapi-proxy-lib (Starlette + httpx) under gunicorn, one uvicorn worker
  gateway    reusely-gateway serve --workers 1, bench/policy.yaml, Redis limiter
  gateway-nolimits   the same with bench/policy-nolimits.yaml (mail-in without limits)

Proxies are pinned to core 0, wrk and the upstream to core 1. Every target is
warmed with the scenario's own load first, then the targets run interleaved
(A B C, A B C, A B C) and the median of the rounds is reported. Every process
started here is stopped by PID at the end. Standard library only.

Usage: python3 bench/run.py [--quick] [--targets nginx,peer,gateway] [--no-write]
(bench/run.sh installs nginx, wrk and the peer venv first, then calls this.)
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import hashlib
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
GATEWAY_BIN = ROOT / ".venv" / "bin" / "reusely-gateway"
PEER_VENV = BENCH / ".venv-peer"

PROXY_CPU = "0"  # nginx proxy, peer, gateway (gunicorn master and worker)
LOAD_CPU = "1"  # wrk and the upstream nginx

HOST = "127.0.0.1"
PORT = {
    "upstream": 18081,
    "nginx": 18082,
    "peer": 18083,
    "gateway": 18084,
    "gateway-metrics": 18085,
    "gateway-nolimits": 18086,
    "gateway-nolimits-metrics": 18087,
}

API_KEY = "bench-api-key"
TENANT_ID = "bench-tenant"
SECRET_KEY = "bench-secret-key"
# The internal client's bearer token; policy*.yaml holds its sha256.
BENCH_TOKEN = "bench-internal-token-0123456789"
REDIS_URL = "redis://127.0.0.1:6379/15"
BIG_BYTES = 32 * 1024 * 1024

CATALOG_PATH = "/api/v2/public/catalog/categories?limit=20"
ADMIN_PATH = "/api/v2/admin/orders?page=1"
MAILIN_PATH = "/api/v3/public/offer/mail-in"

# A catalog answer in Reusely's envelope, padded to about 600 bytes.
CATALOG_JSON = json.dumps(
    {
        "status_code": 200,
        "message": "Successfully get categories",
        "result": {
            "data": [
                {"id": i, "name": n, "slug": n.lower(), "sort": i,
                 "image": f"https://cdn.example.com/categories/{i}.png"}
                for i, n in enumerate(["Smartphones", "Tablets", "Laptops", "Watches"], 1)
            ],
            "pagination": {"page": 1, "limit": 20, "total": 4, "last_page": 1},
        },
    },
    separators=(",", ":"),
)
CATALOG_JSON = CATALOG_JSON[:-2] + ',"note":"' + "x" * max(0, 600 - len(CATALOG_JSON) - 11) + '"}}'
ADMIN_JSON = '{"status_code":200,"message":"OK","result":{"data":[{"id":1,"status":"received"}]}}'
MAILIN_JSON = ('{"status_code":201,"message":"Offer created",'
               '"result":{"offer_id":"OF-BENCH-1","box_id":"BX-BENCH-1"}}')
UNAUTH_JSON = '{"status_code":401,"message":"Unauthenticated."}'


@dataclass
class Timing:
    warm: float = 3.0
    run: float = 5.0
    rounds: int = 3
    light_warm: float = 1.0
    light_run: float = 8.0
    # Light load: one connection, 20 ms think time: well under a quarter of the
    # slowest target's capacity, so the latency measured is service, not queueing.
    think_ms: int = 20
    conns: int = 32
    light_conns: int = 1
    stream_conns: int = 4


QUICK = Timing(warm=1.0, run=2.0, rounds=2, light_warm=0.5, light_run=2.0)


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ---------------------------------------------------------------- processes


def descendants(pid: int) -> list[int]:
    """All live descendants of pid (from /proc), children first."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                stat = fh.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out: list[int] = []
    todo = list(children.get(pid, []))
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    logfile: Path
    known: set[int] = field(default_factory=set)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def remember_children(self) -> None:
        self.known.update(descendants(self.pid))

    def leaf_pids(self) -> list[int]:
        """Processes of this tree without children (the gunicorn worker)."""
        tree = [self.pid, *descendants(self.pid)]
        return [p for p in tree if not descendants(p)]


class Procs:
    """Every process the benchmark starts; stopped by PID, newest first."""

    def __init__(self) -> None:
        self.procs: list[Proc] = []
        self.extra_pids: list[int] = []  # e.g. a redis-server we had to start

    def start(self, name: str, argv: list[str], *, cpu: str, env: dict[str, str] | None = None,
              logdir: Path, cwd: Path | None = None) -> Proc:
        logfile = logdir / f"{name}.log"
        full_env = dict(os.environ)
        if env:
            full_env.update(env)
        with open(logfile, "wb") as fh:
            popen = subprocess.Popen(
                ["taskset", "-c", cpu, *argv], stdout=fh, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, env=full_env, cwd=cwd, start_new_session=True,
            )
        proc = Proc(name, popen, logfile)
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            self._stop(proc)
        self.procs.clear()
        for pid in self.extra_pids:
            _signal(pid, signal.SIGTERM)
            _wait_gone([pid], 10)
            _signal(pid, signal.SIGKILL)
        self.extra_pids.clear()

    @staticmethod
    def _stop(proc: Proc) -> None:
        if proc.popen.poll() is None:
            proc.remember_children()
        pids = [proc.pid, *sorted(proc.known)]
        _signal(proc.pid, signal.SIGTERM)
        try:
            proc.popen.wait(timeout=15)
        except subprocess.TimeoutExpired:
            _signal(proc.pid, signal.SIGKILL)
            proc.popen.wait(timeout=5)
        left = [p for p in pids[1:] if alive(p)]
        if left and not _wait_gone(left, 5):
            for p in left:
                _signal(p, signal.SIGKILL)
            _wait_gone(left, 5)


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def _wait_gone(pids: list[int], timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if not any(alive(p) for p in pids):
            return True
        time.sleep(0.05)
    return not any(alive(p) for p in pids)


def wait_port(port: int, proc: Proc | None, timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc is not None and proc.popen.poll() is not None:
            raise RuntimeError(f"{proc.name} exited ({proc.popen.returncode}); log:\n"
                               + tail(proc.logfile))
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"port {port} did not open in {timeout:.0f}s"
                       + (f"; log:\n{tail(proc.logfile)}" if proc else ""))


def wait_http(port: int, proc: Proc, path: str, timeout: float = 60.0) -> None:
    """Until the app answers on path (gunicorn binds before its worker boots)."""
    end = time.monotonic() + timeout
    last = ""
    while time.monotonic() < end:
        if proc.popen.poll() is not None:
            raise RuntimeError(f"{proc.name} exited ({proc.popen.returncode}); log:\n"
                               + tail(proc.logfile))
        try:
            status, _ = http("GET", port, path)
            if status < 500:
                return
            last = f"status {status}"
        except OSError as exc:
            last = str(exc)
        time.sleep(0.2)
    raise RuntimeError(f"{proc.name} did not answer {path} in {timeout:.0f}s ({last}); log:\n"
                       + tail(proc.logfile))


def tail(path: Path, n: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


# ------------------------------------------------------------------ configs


def nginx_common(tmp: Path, name: str) -> str:
    return f"""
worker_processes 1;
daemon off;
pid {tmp}/{name}.pid;
error_log {tmp}/{name}-error.log warn;
events {{ worker_connections 4096; multi_accept on; }}
"""


def upstream_conf(tmp: Path) -> str:
    def guarded(body: str, secret: bool = False) -> str:
        check = f"if ($http_x_api_key = \"\") {{ return 401 '{UNAUTH_JSON}'; }}"
        if secret:
            check += f"\n      if ($http_x_secret_key = \"\") {{ return 401 '{UNAUTH_JSON}'; }}"
        return f"{check}\n      {body}"

    return nginx_common(tmp, "upstream") + f"""
http {{
  access_log off;
  keepalive_requests 1000000;
  keepalive_timeout 300s;
  client_body_temp_path {tmp}/upstream-body;
  sendfile on;
  tcp_nopush on;
  server {{
    listen {HOST}:{PORT['upstream']} backlog=4096;
    default_type application/json;
    location /api/v2/public/catalog/ {{
      {guarded(f"return 200 '{CATALOG_JSON}';")}
    }}
    location /api/v2/admin/ {{
      {guarded(f"return 200 '{ADMIN_JSON}';", secret=True)}
    }}
    location = /api/v3/public/offer/mail-in {{
      {guarded(f"return 201 '{MAILIN_JSON}';")}
    }}
    location = /big {{
      default_type application/octet-stream;
      {guarded(f"alias {tmp}/www/big.bin;")}
    }}
    location / {{ return 404 '{{"status_code":404,"message":"Not found"}}'; }}
  }}
}}
"""


def nginx_proxy_conf(tmp: Path) -> str:
    return nginx_common(tmp, "nginx") + f"""
http {{
  access_log off;
  keepalive_requests 1000000;
  keepalive_timeout 300s;
  client_body_temp_path {tmp}/nginx-body;
  proxy_temp_path {tmp}/nginx-proxy;
  upstream reusely {{
    server {HOST}:{PORT['upstream']};
    keepalive 32;
    keepalive_requests 1000000;
  }}
  server {{
    listen {HOST}:{PORT['nginx']} backlog=4096;
    location / {{
      proxy_pass http://reusely;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host {HOST}:{PORT['upstream']};
      proxy_set_header Authorization "";
      proxy_set_header x-api-key "{API_KEY}";
      proxy_set_header x-tenant-id "{TENANT_ID}";
      proxy_set_header x-secret-key "{SECRET_KEY}";
      proxy_max_temp_file_size 0;
    }}
  }}
}}
"""


# --------------------------------------------------------------------- wrk


@dataclass
class WrkResult:
    requests: int
    seconds: float
    bytes: int
    errors: int
    p50_ms: float
    p90_ms: float
    p99_ms: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def mib_s(self) -> float:
        return self.bytes / self.seconds / (1024 * 1024) if self.seconds else 0.0


@dataclass
class Load:
    """One wrk invocation shape: path, headers, script pieces, concurrency."""

    path: str
    headers: dict[str, str] = field(default_factory=dict)
    lua: tuple[str, ...] = ()
    conns: int = 32
    timeout_s: int = 10


def run_wrk(port: int, load: Load, seconds: float, tmp: Path, *, think_ms: int | None = None,
            tag: str = "r") -> WrkResult:
    pieces = [(BENCH / "wrk" / name).read_text() for name in load.lua]
    if think_ms is not None:
        pieces.append((BENCH / "wrk" / "think.lua").read_text()
                      .replace("think_ms = 5", f"think_ms = {think_ms}"))
    pieces.append((BENCH / "wrk" / "report.lua").read_text())
    script = tmp / f"wrk-{hashlib.sha1(''.join(pieces).encode()).hexdigest()[:10]}.lua"
    script.write_text("\n".join(pieces))
    argv = ["taskset", "-c", LOAD_CPU, "wrk", "-t1", f"-c{load.conns}",
            f"-d{max(1, round(seconds))}s", f"--timeout={load.timeout_s}s", "-s", str(script)]
    for k, v in load.headers.items():
        argv += ["-H", f"{k}: {v}"]
    argv += [f"http://{HOST}:{port}{load.path}", "--", tag]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    for line in out.stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            d = json.loads(line[len("BENCH_JSON "):])
            errors = sum(d[k] for k in d if k.startswith("err_"))
            return WrkResult(d["requests"], d["duration_us"] / 1e6, d["bytes"], errors,
                             d["p50_us"] / 1000, d["p90_us"] / 1000, d["p99_us"] / 1000)
    raise RuntimeError(f"wrk gave no result: {out.stdout}\n{out.stderr}")


def median_result(results: list[WrkResult]) -> dict[str, float]:
    return {
        "rps": statistics.median(r.rps for r in results),
        "mib_s": statistics.median(r.mib_s for r in results),
        "p50_ms": statistics.median(r.p50_ms for r in results),
        "p99_ms": statistics.median(r.p99_ms for r in results),
        "errors": sum(r.errors for r in results),
        "requests": sum(r.requests for r in results),
        "rounds": [round(r.rps, 1) for r in results],
    }


# ----------------------------------------------------------------- targets


class RssSampler:
    """Samples workers' RSS every 50 ms in a thread; keeps the peak per name."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.peak = {name: 0 for name in pids}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            for name, pid in self.pids.items():
                with contextlib.suppress(OSError):
                    self.peak[name] = max(self.peak[name], rss_kib(pid))

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@dataclass
class GatewaySpec:
    """How to run one gateway target: the policy, and for experiments the venv and app."""

    policy: Path
    python: Path | None = None  # None: `.venv/bin/reusely-gateway serve`
    app: str = "gateway.app:create_app_from_env()"


GATEWAYS = {
    "gateway": GatewaySpec(BENCH / "policy.yaml"),
    "gateway-nolimits": GatewaySpec(BENCH / "policy-nolimits.yaml"),
}


@dataclass
class Target:
    name: str
    port: int
    proc: Proc | None = None


def http(method: str, port: int, path: str, headers: dict[str, str] | None = None,
         body: bytes | None = None) -> tuple[int, int]:
    """One request; returns (status, body length). Reads the body in chunks."""
    req = urllib.request.Request(f"http://{HOST}:{port}{path}", data=body, method=method,
                                 headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            n = 0
            while chunk := resp.read(1 << 20):
                n += len(chunk)
            return resp.status, n
    except urllib.error.HTTPError as exc:
        return exc.code, len(exc.read())


def expect(what: str, got: tuple[int, int], status: int, length: int | None = None) -> None:
    ok = got[0] == status and (length is None or got[1] == length)
    if not ok:
        raise RuntimeError(f"sanity check failed: {what}: got status {got[0]}, {got[1]} bytes; "
                           f"expected {status}" + (f", {length} bytes" if length else ""))


def versions(targets: list[str]) -> dict[str, str]:
    def cmd(argv: list[str]) -> str:
        try:
            r = subprocess.run(argv, capture_output=True, text=True, timeout=20)
            return (r.stdout + r.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return "?"

    def pkgs(python: Path, names: list[str]) -> str:
        code = ("import importlib.metadata as m,sys\n"
                "for n in sys.argv[1:]:\n"
                "  try: print(n, m.version(n))\n"
                "  except Exception: print(n, '-')")
        r = subprocess.run([str(python), "-c", code, *names], capture_output=True, text=True)
        return ", ".join(line for line in r.stdout.splitlines())

    v = {
        "nginx": cmd(["nginx", "-v"]).replace("nginx version: ", ""),
        "wrk": cmd(["wrk", "--version"]).split(" Copyright")[0],
        "redis": cmd(["redis-server", "--version"]),
        "python": platform.python_version(),
        "peer": pkgs(PEER_VENV / "bin" / "python",
                     ["fastapi-proxy-lib", "fastapi", "starlette", "httpx", "httpcore", "anyio",
                      "sniffio", "uvicorn", "uvicorn-worker", "gunicorn", "uvloop", "httptools"]),
    }
    if any(t.startswith("gateway") for t in targets):
        v["gateway"] = pkgs(ROOT / ".venv" / "bin" / "python",
                            ["reusely-gateway", "starlette", "httpx", "httpcore", "anyio",
                             "sniffio", "uvicorn", "uvicorn-worker", "gunicorn", "uvloop",
                             "httptools", "limits", "redis"])
        rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True)
        v["gateway commit"] = rev.stdout.strip() or "(no commit yet)"
    return v


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


# --------------------------------------------------------------------- run


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.t = QUICK if args.quick else Timing()
        self.targets_wanted = args.targets.split(",")
        self.procs = Procs()
        self.tmp = Path(tempfile.mkdtemp(prefix="reusely-bench-"))
        self.tmp.chmod(0o755)  # nginx workers run as nobody
        self.targets: dict[str, Target] = {}
        self.gateways: dict[str, GatewaySpec] = dict(GATEWAYS)
        self.results: dict = {"scenarios": {}, "light": {}, "rss": {}, "notes": []}
        self.started = time.monotonic()
        self.redis_affinity: tuple[int, set[int]] | None = None

    # -- start everything
    def start(self) -> None:
        (self.tmp / "www").mkdir()
        (self.tmp / "www").chmod(0o755)
        big = self.tmp / "www" / "big.bin"
        with open(big, "wb") as fh:
            block = os.urandom(1 << 20)
            for _ in range(BIG_BYTES >> 20):
                fh.write(block)
        big.chmod(0o644)
        for name, conf, cpu in (("upstream", upstream_conf(self.tmp), LOAD_CPU),
                                ("nginx", nginx_proxy_conf(self.tmp), PROXY_CPU)):
            if name != "upstream" and name not in self.targets_wanted:
                continue
            path = self.tmp / f"{name}.conf"
            path.write_text(conf)
            proc = self.procs.start(name, ["nginx", "-c", str(path), "-p", str(self.tmp),
                                           "-e", str(self.tmp / f"{name}-error.log")],
                                    cpu=cpu, logdir=self.tmp)
            wait_port(PORT[name], proc)
            proc.remember_children()
            self.targets[name] = Target(name, PORT[name], proc)
        self.targets["direct"] = Target("direct", PORT["upstream"], None)

        creds = {"REUSELY_API_KEY": API_KEY, "REUSELY_TENANT_ID": TENANT_ID,
                 "REUSELY_SECRET_KEY": SECRET_KEY,
                 "REUSELY_BASE_URL": f"http://{HOST}:{PORT['upstream']}"}
        if "peer" in self.targets_wanted:
            proc = self.procs.start(
                "peer",
                [str(PEER_VENV / "bin" / "gunicorn"), "peer_app:app", "--workers", "1",
                 "--worker-class", "uvicorn_worker.UvicornWorker", "--no-control-socket",
                 "--bind", f"{HOST}:{PORT['peer']}", "--backlog", "4096"],
                cpu=PROXY_CPU, env=creds, logdir=self.tmp, cwd=BENCH)
            wait_port(PORT["peer"], proc)
            wait_http(PORT["peer"], proc, CATALOG_PATH)
            self.targets["peer"] = Target("peer", PORT["peer"], proc)

        wanted_gateways = [n for n in self.gateways if n in self.targets_wanted]
        if wanted_gateways:
            self.ensure_redis()
            self.clean_bench_keys()
        for name in wanted_gateways:
            proc = self.start_gateway(name, self.gateways[name], creds)
            self.targets[name] = Target(name, PORT[name], proc)
        time.sleep(1.0)
        for t in self.targets.values():
            if t.proc:
                t.proc.remember_children()
        self.check_affinity()
        self.sanity()

    def start_gateway(self, name: str, spec: GatewaySpec, creds: dict[str, str]) -> Proc:
        env = dict(creds, GATEWAY_REDIS_URL=REDIS_URL, GATEWAY_LOG_LEVEL="info",
                   PROMETHEUS_MULTIPROC_DIR=str(self.tmp / f"{name}-prom"))
        (self.tmp / f"{name}-prom").mkdir()
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
        proc = self.procs.start(name, argv, cpu=PROXY_CPU, env=env, logdir=self.tmp,
                                cwd=self.tmp)
        wait_port(PORT[name], proc, timeout=60)
        wait_http(PORT[name], proc, "/healthz")
        return proc

    def clean_bench_keys(self) -> None:
        """Drop the bench's own limit keys in db 15 (rates only bench policies use).

        Moving windows keep one entry per request for an hour: without this, each
        run's `ip` list grows on the last one's and the limiter gets slower."""
        found = subprocess.run(["redis-cli", "-n", "15", "--scan", "--pattern",
                                "LIMITS:*/1000000/1/hour"], capture_output=True, text=True)
        more = subprocess.run(["redis-cli", "-n", "15", "--scan", "--pattern",
                               "LIMITS:*/100000000/1/hour"], capture_output=True, text=True)
        keys = [k for k in (found.stdout + more.stdout).splitlines() if k.strip()]
        for i in range(0, len(keys), 500):
            subprocess.run(["redis-cli", "-n", "15", "unlink", *keys[i:i + 500]],
                           capture_output=True)

    def ensure_redis(self) -> None:
        r = subprocess.run(["redis-cli", "-p", "6379", "ping"], capture_output=True, text=True)
        if r.stdout.strip() == "PONG":
            # Already running (a shared service): pin it to the load core for the run,
            # so it does not take CPU from the proxy under test, and restore it after.
            info = subprocess.run(["redis-cli", "-p", "6379", "info", "server"],
                                  capture_output=True, text=True).stdout
            m = re.search(r"process_id:(\d+)", info)
            if m:
                pid = int(m.group(1))
                self.redis_affinity = (pid, os.sched_getaffinity(pid))
                os.sched_setaffinity(pid, {int(LOAD_CPU)})
                self.results["notes"].append(
                    "Redis was already running; pinned to core 1 for the run, then restored.")
            return
        log("starting redis-server on 127.0.0.1:6379 (core 1)")
        subprocess.run(["taskset", "-c", LOAD_CPU, "redis-server", "--daemonize", "yes",
                        "--bind", HOST, "--port", "6379", "--save", "", "--appendonly", "no",
                        "--pidfile", str(self.tmp / "redis.pid")], check=True)
        for _ in range(50):
            r = subprocess.run(["redis-cli", "-p", "6379", "ping"], capture_output=True, text=True)
            if r.stdout.strip() == "PONG":
                break
            time.sleep(0.1)
        info = subprocess.run(["redis-cli", "-p", "6379", "info", "server"],
                              capture_output=True, text=True).stdout
        m = re.search(r"process_id:(\d+)", info)
        if m:
            self.procs.extra_pids.append(int(m.group(1)))
        self.results["notes"].append("Redis started by the bench on core 1, stopped at the end.")

    def check_affinity(self) -> None:
        for t in self.targets.values():
            if not t.proc:
                continue
            for pid in [t.proc.pid, *descendants(t.proc.pid)]:
                aff = os.sched_getaffinity(pid)
                want = {int(t.proc.popen.args[2])}
                if aff != want:
                    raise RuntimeError(f"{t.name} pid {pid} affinity {aff}, want {want}")

    def sanity(self) -> None:
        proxies = [n for n in ("nginx", "peer", *self.gateways) if n in self.targets]
        key = {"x-api-key": API_KEY, "x-secret-key": SECRET_KEY}
        bearer = {"Authorization": f"Bearer {BENCH_TOKEN}"}
        post = {"Content-Type": "application/json"}
        mail = b'{"email":"sanity@example.com"}'
        expect("upstream without x-api-key", http("GET", PORT["upstream"], CATALOG_PATH), 401)
        expect("upstream catalog", http("GET", PORT["upstream"], CATALOG_PATH, key), 200,
               len(CATALOG_JSON))
        for name in proxies:
            port = PORT[name]
            if name.startswith("floor"):  # variants.py's reference apps: status only
                expect(f"{name} catalog", http("GET", port, CATALOG_PATH), 200)
                continue
            expect(f"{name} catalog", http("GET", port, CATALOG_PATH), 200, len(CATALOG_JSON))
            expect(f"{name} admin", http("GET", port, ADMIN_PATH, bearer), 200)
            expect(f"{name} mail-in", http("POST", port, MAILIN_PATH, post, mail), 201)
            expect(f"{name} big", http("GET", port, "/big"), 200, BIG_BYTES)
            if name.startswith("gateway"):
                expect(f"{name} admin without token", http("GET", port, ADMIN_PATH), 401)
        log("sanity checks passed: " + ", ".join(proxies))

    # -- scenarios
    def scenarios(self) -> list[tuple[str, Load, list[str]]]:
        """(name, load, targets) for the loaded runs."""
        t = self.t
        bearer = {"Authorization": f"Bearer {BENCH_TOKEN}"}
        proxies = [n for n in ("nginx", "peer", "gateway") if n in self.targets]
        mail_targets = [n for n in ("nginx", "peer", "gateway", "gateway-nolimits")
                        if n in self.targets]
        out = [
            ("catalog GET", Load(CATALOG_PATH, conns=t.conns), proxies),
            ("internal GET (bearer)", Load(ADMIN_PATH, bearer, conns=t.conns), proxies),
            ("mail-in POST", Load(MAILIN_PATH, lua=("mailin.lua",), conns=t.conns),
             mail_targets),
        ]
        if not self.args.skip_stream:
            out.append(("stream 32 MiB", Load("/big", conns=t.stream_conns, timeout_s=30),
                        proxies))
        return out

    def run_scenario(self, name: str, load: Load, targets: list[str]) -> None:
        t = self.t
        log(f"scenario {name}: warm-up {t.warm:.0f}s each: {', '.join(targets)}")
        for tgt in targets:
            run_wrk(PORT[tgt], load, t.warm, self.tmp, tag=f"w{tgt}{int(time.time())}")
        per: dict[str, list[WrkResult]] = {tgt: [] for tgt in targets}
        for rnd in range(t.rounds):
            for tgt in targets:
                res = run_wrk(PORT[tgt], load, t.run, self.tmp,
                              tag=f"r{rnd}{tgt}{int(time.time())}")
                per[tgt].append(res)
                log(f"  round {rnd + 1} {tgt:17s} {res.rps:9.0f} req/s  p50 {res.p50_ms:7.2f} ms"
                    f"  p99 {res.p99_ms:7.2f} ms  errors {res.errors}")
        self.results["scenarios"][name] = {tgt: median_result(r) for tgt, r in per.items()}

    def worker_rss(self, name: str) -> tuple[int, int]:
        target = self.targets[name]
        assert target.proc
        leaves = target.proc.leaf_pids()
        pid = max(leaves, key=rss_kib)
        return pid, rss_kib(pid)

    def measure(self) -> None:
        t = self.t
        key = {"x-api-key": API_KEY, "x-tenant-id": TENANT_ID, "x-secret-key": SECRET_KEY}
        rss_targets = [n for n in ("peer", "gateway") if n in self.targets]
        for tgt in rss_targets:
            pid, kib = self.worker_rss(tgt)
            self.results["rss"][tgt] = {"pid": pid, "start_kib": kib}
        for name, load, targets in self.scenarios():
            if not name.startswith("stream"):
                self.run_scenario(name, load, targets)
                continue
            for tgt in rss_targets:
                self.results["rss"][tgt]["before_stream_kib"] = self.worker_rss(tgt)[1]
            with RssSampler({tgt: self.worker_rss(tgt)[0] for tgt in rss_targets}) as peaks:
                self.run_scenario(name, load, targets)
            time.sleep(2.0)  # let the last responses finish and buffers go back
            for tgt in rss_targets:
                self.results["rss"][tgt]["peak_stream_kib"] = peaks.peak[tgt]
                self.results["rss"][tgt]["after_stream_kib"] = self.worker_rss(tgt)[1]

        # Light load: added latency against going direct to the upstream.
        proxies = [n for n in ("nginx", "peer", "gateway") if n in self.targets]
        light = Load(CATALOG_PATH, conns=t.light_conns)
        self.run_light_with_direct("catalog GET", light, ["direct", *proxies], key)
        mail = [n for n in ("gateway", "gateway-nolimits") if n in self.targets]
        if mail:
            self.run_light_with_direct(
                "mail-in POST", Load(MAILIN_PATH, lua=("mailin.lua",), conns=t.light_conns),
                ["direct", *mail], key)
        for tgt in rss_targets:
            self.results["rss"][tgt]["end_kib"] = self.worker_rss(tgt)[1]

    def run_light_with_direct(self, name: str, load: Load, targets: list[str],
                              key: dict[str, str]) -> None:
        # "direct" needs the Reusely headers itself; the proxies must not get them.
        t = self.t
        log(f"light load {name}: {t.light_conns} connections, {t.think_ms} ms think time: "
            + ", ".join(targets))
        loads = {tgt: (Load(load.path, dict(load.headers, **key), load.lua, load.conns)
                       if tgt == "direct" else load) for tgt in targets}
        for tgt in targets:
            run_wrk(PORT[self._port_name(tgt)], loads[tgt], t.light_warm, self.tmp,
                    think_ms=t.think_ms, tag=f"lw{tgt}{int(time.time())}")
        per: dict[str, list[WrkResult]] = {tgt: [] for tgt in targets}
        for rnd in range(t.rounds):
            for tgt in targets:
                res = run_wrk(PORT[self._port_name(tgt)], loads[tgt], t.light_run, self.tmp,
                              think_ms=t.think_ms, tag=f"l{rnd}{tgt}{int(time.time())}")
                per[tgt].append(res)
                log(f"  round {rnd + 1} {tgt:17s} p50 {res.p50_ms:6.3f} ms  p90 "
                    f"{res.p90_ms:6.3f} ms  p99 {res.p99_ms:6.3f} ms  ({res.requests} req, "
                    f"errors {res.errors})")
        self.results["light"][name] = {tgt: median_result(r) for tgt, r in per.items()}

    @staticmethod
    def _port_name(tgt: str) -> str:
        return "upstream" if tgt == "direct" else tgt

    def stop(self) -> None:
        if any(n in self.targets for n in self.gateways):
            self.clean_bench_keys()
        if self.redis_affinity is not None:
            pid, cpus = self.redis_affinity
            with contextlib.suppress(OSError):
                os.sched_setaffinity(pid, cpus)
            self.redis_affinity = None
        for name, target in self.targets.items():
            if target.proc and target.proc.popen.poll() is not None and name != "direct":
                self.results["notes"].append(
                    f"{name} had exited early ({target.proc.popen.returncode}).")
        self.procs.stop_all()
        if not self.args.keep_tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)


# ------------------------------------------------------------------ report


def fmt_ratio(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def report(b: Bench, elapsed: float) -> str:
    res = b.results
    lines: list[str] = []
    t = b.t
    lines.append("# Benchmark results\n")
    lines.append(f"- date: {datetime.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')}")
    lines.append(f"- CPU: {cpu_model()} ({os.cpu_count()} cores); proxies pinned to core "
                 f"{PROXY_CPU}, wrk and the upstream nginx to core {LOAD_CPU}")
    lines.append(f"- load: `wrk -t1 -c{t.conns}` ({t.stream_conns} connections for the stream), "
                 f"warm-up {t.warm:.0f} s per target, then {t.rounds} interleaved rounds of "
                 f"{t.run:.0f} s; medians of the rounds")
    lines.append(f"- light load: `wrk -t1 -c{t.light_conns}` with {t.think_ms} ms think time "
                 f"per connection, {t.rounds} interleaved rounds of {t.light_run:.0f} s")
    for k, v in res["versions"].items():
        lines.append(f"- {k}: {v}")
    for note in res["notes"]:
        lines.append(f"- note: {note}")
    lines.append(f"- run time: {elapsed:.0f} s")
    lines.append("- on a nested VM nginx's own req/s varies 14k-34k between runs and stalls of a "
                 "few ms reach p99: compare ratios within one run; why and what to change: "
                 "bench/PROFILE.md\n")

    lines.append("## Throughput and latency under load (ratios against nginx)\n")
    lines.append("| scenario | target | req/s | x nginx | p50 ms | x nginx | p99 ms | x nginx "
                 "| errors |")
    lines.append("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for scen, per in res["scenarios"].items():
        ref = per.get("nginx")
        for tgt, r in per.items():
            rate = r["rps"]
            rate_s = f"{rate:,.0f}"
            if scen.startswith("stream"):
                rate_s += f" ({r['mib_s']:,.0f} MiB/s)"
            lines.append(
                f"| {scen} | {tgt} | {rate_s} | "
                f"{fmt_ratio(rate / ref['rps'] if ref else None)} | {r['p50_ms']:.2f} | "
                f"{fmt_ratio(r['p50_ms'] / ref['p50_ms'] if ref else None)} | "
                f"{r['p99_ms']:.2f} | {fmt_ratio(r['p99_ms'] / ref['p99_ms'] if ref else None)} "
                f"| {r['errors']} |")
    lines.append("\nx nginx: req/s as a fraction of nginx's (higher is better); latency as a "
                 "multiple of nginx's (lower is better).\n")
    mail = res["scenarios"].get("mail-in POST", {})
    if "gateway" in mail and "gateway-nolimits" in mail:
        with_l, without = mail["gateway"], mail["gateway-nolimits"]
        lines.append(
            f"The Redis limit check (with the body read it needs), as a ratio against the "
            f"same route without limits: "
            f"{with_l['rps'] / without['rps']:.2f}x the req/s, "
            f"{with_l['p50_ms'] / without['p50_ms']:.2f}x the p50 under load; "
            f"{(1 / with_l['rps'] - 1 / without['rps']) * 1e6:,.0f} us of worker time "
            "per request.\n")

    lines.append("## Added latency at light load (against going direct to the upstream)\n")
    lines.append("| scenario | target | p50 ms | p99 ms | added p50 ms | added p99 ms | errors |")
    lines.append("|---|---|---:|---:|---:|---:|---:|")
    for scen, per in res["light"].items():
        d = per["direct"]
        for tgt, r in per.items():
            add50 = "-" if tgt == "direct" else f"{r['p50_ms'] - d['p50_ms']:+.3f}"
            add99 = "-" if tgt == "direct" else f"{r['p99_ms'] - d['p99_ms']:+.3f}"
            lines.append(f"| {scen} | {tgt} | {r['p50_ms']:.3f} | {r['p99_ms']:.3f} | {add50} | "
                         f"{add99} | {r['errors']} |")
    lines.append("")

    if res["rss"]:
        lines.append("## Worker memory (RSS)\n")
        lines.append("| target | at start | before stream | peak while streaming | after stream "
                     "(+2 s) | growth by stream | after the run |")
        lines.append("|---|---:|---:|---:|---:|---:|---:|")
        for tgt, r in res["rss"].items():
            def mb(k: str, r: dict[str, int] = r) -> str:
                return f"{r[k] / 1024:.1f} MiB" if k in r else "-"
            growth = (f"{(r['after_stream_kib'] - r['before_stream_kib']) / 1024:+.1f} MiB"
                      if "after_stream_kib" in r else "-")
            lines.append(f"| {tgt} | {mb('start_kib')} | {mb('before_stream_kib')} | "
                         f"{mb('peak_stream_kib')} | {mb('after_stream_kib')} | {growth} | "
                         f"{mb('end_kib')} |")
        lines.append("")

    lines.append("## Targets (gateway, one worker, one core)\n")
    lines.append("| target | measured | met |")
    lines.append("|---|---:|:---:|")
    for label, measured, ok in check_targets(res):
        lines.append(f"| {label} | {measured} | {'yes' if ok else 'NO'} |")
    lines.append("")
    return "\n".join(lines)


def check_targets(res: dict) -> list[tuple[str, str, bool]]:
    out: list[tuple[str, str, bool]] = []
    cat = res["scenarios"].get("catalog GET", {})
    if "gateway" in cat and "nginx" in cat:
        r = cat["gateway"]["rps"] / cat["nginx"]["rps"]
        out.append(("catalog GET throughput >= 0.10 x nginx", f"{r:.3f}", r >= 0.10))
    light = res["light"].get("catalog GET", {})
    if "gateway" in light:
        a50 = light["gateway"]["p50_ms"] - light["direct"]["p50_ms"]
        a99 = light["gateway"]["p99_ms"] - light["direct"]["p99_ms"]
        out.append(("added latency at light load, median <= 0.8 ms", f"{a50:.3f} ms", a50 <= 0.8))
        out.append(("added latency at light load, p99 <= 3 ms", f"{a99:.3f} ms", a99 <= 3.0))
    ml = res["light"].get("mail-in POST", {})
    if "gateway" in ml and "gateway-nolimits" in ml:
        d = ml["gateway"]["p50_ms"] - ml["gateway-nolimits"]["p50_ms"]
        out.append(("Redis limit check, median added over no limits <= 0.5 ms",
                    f"{d:.3f} ms", d <= 0.5))
    rss = res["rss"].get("gateway")
    if rss:
        end = rss["end_kib"] / 1024
        out.append(("worker RSS after the run <= 80 MB", f"{end:.1f} MiB", end * 1.048576 <= 80))
        if "after_stream_kib" in rss:
            g = (rss["after_stream_kib"] - rss["before_stream_kib"]) / 1024
            out.append(("RSS growth from streaming 32 MiB <= 5 MB (after, settled)",
                        f"{g:+.1f} MiB", g * 1.048576 <= 5))
            p = (rss["peak_stream_kib"] - rss["before_stream_kib"]) / 1024
            out.append(("RSS growth while streaming (peak, 4 streams at once) <= 5 MB",
                        f"{p:+.1f} MiB", p * 1.048576 <= 5))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="short runs, for debugging the harness")
    ap.add_argument("--targets", default="nginx,peer,gateway,gateway-nolimits",
                    help="comma-separated subset of nginx,peer,gateway,gateway-nolimits")
    ap.add_argument("--skip-stream", action="store_true")
    ap.add_argument("--no-write", action="store_true", help="do not write bench/RESULTS.md")
    ap.add_argument("--keep-tmp", action="store_true", help="keep the temp dir (configs, logs)")
    args = ap.parse_args()
    for tool in ("nginx", "wrk", "taskset"):
        if not shutil.which(tool):
            print(f"missing {tool}: run bench/run.sh (it installs nginx and wrk)", file=sys.stderr)
            return 2
    if os.cpu_count() and os.cpu_count() < 2:
        print("needs two cores", file=sys.stderr)
        return 2

    b = Bench(args)
    stopping = False

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        if not stopping:
            stopping = True
            raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    log(f"temp dir {b.tmp}")
    rc = 0
    try:
        b.start()
        b.results["versions"] = versions(list(b.targets))
        b.measure()
    except KeyboardInterrupt:
        log("interrupted; stopping everything")
        rc = 130
    except Exception as exc:  # noqa: BLE001 - the harness must always stop what it started
        log(f"failed: {exc}")
        for target in b.targets.values():
            if target.proc:
                log(f"--- {target.name} log tail ---\n{tail(target.proc.logfile, 15)}")
        rc = 1
    finally:
        b.stop()
        log("all started processes stopped")
    if rc:
        return rc
    elapsed = time.monotonic() - b.started
    text = report(b, elapsed)
    print("\n" + text)
    if not args.no_write:
        (BENCH / "RESULTS.md").write_text(text)
        (BENCH / "results.json").write_text(json.dumps(b.results, indent=2) + "\n")
        log("wrote bench/RESULTS.md and bench/results.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
