"""Run the real gateway for a test: in-process under uvicorn, or as `serve`."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from gateway.app import create_app
from gateway.environment import load_settings
from gateway.settings import Settings

KEYS = {
    "REUSELY_API_KEY": "test-api-key-5f1c",
    "REUSELY_TENANT_ID": "test-tenant-77ab",
    "REUSELY_SECRET_KEY": "test-secret-key-9e2d",
    "REUSELY_MARKETPLACE_KEY": "test-market-key-0c4a",
}
ROOT = Path(__file__).resolve().parents[2]
CLI = str(Path(sys.executable).with_name("reusely-gateway"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def clean_env(**extra: str) -> dict[str, str]:
    """This environment less the caller's REUSELY_/GATEWAY_/PROMETHEUS_ settings, plus `extra`."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("REUSELY_", "GATEWAY_", "PROMETHEUS_"))}
    return {**env, **extra}


def settings_for(policy: str, upstream_url: str, **env: str) -> Settings:
    environ = {**KEYS, "REUSELY_BASE_URL": upstream_url, **env}
    environ = {k: v for k, v in environ.items() if v}
    return load_settings(environ, text=policy, source="test policy")


class InProcessGateway:
    """`create_app(settings)` under a real uvicorn server on a loopback port."""

    def __init__(self, settings: Settings, **app_kwargs: Any) -> None:
        self.app = create_app(settings, **app_kwargs)
        self.port = free_port()
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, lifespan="on",
                                proxy_headers=False, server_header=False, log_level="warning",
                                log_config=None)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self._run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _run(self) -> None:
        asyncio.run(self.server.serve())

    def start(self) -> InProcessGateway:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the gateway did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


class ServedGateway:
    """`reusely-gateway serve` as a subprocess (gunicorn, real workers)."""

    def __init__(self, policy_path: Path, upstream_url: str, *, workers: int = 1,
                 env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.metrics_port = free_port()
        self.policy_path = policy_path
        self.env = {**os.environ, **KEYS, "REUSELY_BASE_URL": upstream_url,
                    "GATEWAY_LOG_LEVEL": "info", **(env or {})}
        self.env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        self.workers = workers
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = policy_path.with_suffix(f".{self.port}.log")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def start(self) -> ServedGateway:
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [CLI, "serve", "--config", str(self.policy_path),
             "--bind", f"127.0.0.1:{self.port}", "--metrics-bind",
             f"127.0.0.1:{self.metrics_port}", "--workers", str(self.workers)],
            env=self.env, stdout=self._log, stderr=subprocess.STDOUT, cwd=ROOT)
        self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"serve exited {self.proc.returncode}: {self.output()}")
            try:
                if httpx.get(self.url + "/readyz", timeout=1).status_code == 200:
                    httpx.get(self.metrics_url, timeout=1).raise_for_status()
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"serve did not get ready: {self.output()}")

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def output(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def wait_for(condition: Callable[[], Any], what: str = "a condition",
             timeout: float = 15) -> Any:
    """Poll until `condition()` is truthy and return it; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for: {what}")
        time.sleep(0.02)


def raw_request(port: int, data: bytes, timeout: float = 5) -> tuple[int, bytes]:
    """Send bytes exactly as given (no client normalisation); return (status, whole reply)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        reply = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            reply += chunk
            if b"\r\n\r\n" in reply:
                head, _, body = reply.partition(b"\r\n\r\n")
                length = [int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:")]
                if length and len(body) >= length[0]:
                    break
    status = int(reply.split(b" ", 2)[1]) if reply else 0
    return status, reply


def kill_tree(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()
