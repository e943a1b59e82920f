"""Processes for the browser tests: the sandbox, the gateway, two page servers, Chromium.

Everything listens on free loopback ports. The gateway is the real CLI
(`reusely-gateway serve`), with in-memory limits (no GATEWAY_REDIS_URL), run
on a copy of examples/widget/gateway.yaml whose allow-list names the test's
page origin instead of port 8090.
"""

from __future__ import annotations

import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml
from playwright.sync_api import Browser, sync_playwright

from tests.support.gateway import CLI, ROOT, clean_env, free_port

WIDGET = ROOT / "examples" / "widget"
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
START_TIMEOUT = 30.0


@dataclass(frozen=True)
class Credentials:
    api_key: str
    secret_key: str
    tenant_id: str

    def values(self) -> tuple[str, str, str]:
        return (self.api_key, self.secret_key, self.tenant_id)


@dataclass(frozen=True)
class Stack:
    credentials: Credentials
    sandbox: str
    gateway: str
    page: str  # origin on the gateway's allow-list
    foreign_page: str  # origin not on it
    metrics: str  # the gateway's /metrics


class Process:
    def __init__(self, name: str, argv: list[str], env: dict[str, str], logs: Path) -> None:
        self.name = name
        self.log = logs / f"{name}.log"
        self._file = self.log.open("wb")
        self.popen = subprocess.Popen(
            argv, env=env, cwd=logs, stdout=self._file, stderr=subprocess.STDOUT
        )

    def tail(self) -> str:
        text = self.log.read_text(errors="replace")
        return "\n".join(text.splitlines()[-40:])

    def wait_until(self, url: str, *, status: int, headers: dict[str, str] | None = None) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        last = "no answer"
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                pytest.fail(f"{self.name} exited with {self.popen.returncode}:\n{self.tail()}")
            try:
                response = httpx.get(url, headers=headers, timeout=2, trust_env=False)
            except httpx.TransportError as exc:
                last = repr(exc)
            else:
                if response.status_code == status:
                    return
                last = f"{response.status_code} {response.text[:200]}"
            time.sleep(0.2)
        pytest.fail(f"{self.name} not ready at {url} ({last}):\n{self.tail()}")

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=5)
        self._file.close()


SANDBOX_SCRIPT = """
import os, sys
import uvicorn
from gateway.sandbox import create_app
app = create_app(
    api_key=os.environ["REUSELY_API_KEY"],
    secret_key=os.environ["REUSELY_SECRET_KEY"],
    tenant_id=os.environ["REUSELY_TENANT_ID"],
)
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
"""


def write_policy(path: Path, allow_origins: list[str]) -> None:
    policy = yaml.safe_load((WIDGET / "gateway.yaml").read_text())
    policy["cors"]["allow_origins"] = allow_origins
    path.write_text(yaml.safe_dump(policy, sort_keys=False))


class Processes:
    """Starts the parts of a stack and stops them all, newest first."""

    def __init__(self, logs: Path, credentials: Credentials) -> None:
        self.logs = logs
        self.credentials = credentials
        self.started: list[Process] = []

    def keys(self) -> dict[str, str]:
        return {
            "REUSELY_API_KEY": self.credentials.api_key,
            "REUSELY_SECRET_KEY": self.credentials.secret_key,
            "REUSELY_TENANT_ID": self.credentials.tenant_id,
        }

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> Process:
        process = Process(name, argv, env, self.logs)
        self.started.append(process)
        return process

    def sandbox(self) -> str:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        argv = [sys.executable, "-c", SANDBOX_SCRIPT, str(port)]
        process = self.start("sandbox", argv, clean_env(**self.keys(), PYTHONPATH=str(ROOT)))
        process.wait_until(
            f"{url}/api/v2/public/catalog/categories",
            status=200,
            headers={
                "x-api-key": self.credentials.api_key,
                "x-tenant-id": self.credentials.tenant_id,
            },
        )
        return url

    def gateway(self, name: str, *, upstream: str, allow_origins: list[str]) -> tuple[str, str]:
        """The gateway's URL and its /metrics URL."""
        cli = Path(CLI)
        assert cli.exists(), f"{cli} is missing: install the package (pip install -e .)"
        port, metrics_port = free_port(), free_port()
        url = f"http://127.0.0.1:{port}"
        policy = self.logs / f"{name}.yaml"
        write_policy(policy, allow_origins)
        argv = [
            str(cli), "serve",
            "--config", str(policy),
            "--bind", f"127.0.0.1:{port}",
            "--metrics-bind", f"127.0.0.1:{metrics_port}",
            "--workers", "1",
        ]  # fmt: skip
        process = self.start(name, argv, clean_env(**self.keys(), REUSELY_BASE_URL=upstream))
        process.wait_until(f"{url}/healthz", status=200)
        return url, f"http://127.0.0.1:{metrics_port}/metrics"

    def page(self, name: str, *, port: int, gateway: str) -> str:
        url = f"http://127.0.0.1:{port}"
        argv = [
            sys.executable, str(WIDGET / "serve.py"),
            "--port", str(port), "--gateway", gateway, "--quiet",
        ]  # fmt: skip
        self.start(name, argv, clean_env()).wait_until(f"{url}/", status=200)
        return url

    def stop(self) -> None:
        for process in reversed(self.started):
            process.stop()


def new_credentials() -> Credentials:
    return Credentials(
        api_key="test-api-" + secrets.token_hex(12),
        secret_key="test-secret-" + secrets.token_hex(12),
        tenant_id="test-tenant-" + secrets.token_hex(6),
    )


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Sandbox, gateway, the page on an allowed origin and on a foreign one."""
    creds = new_credentials()
    processes = Processes(tmp_path_factory.mktemp("browser-stack"), creds)
    try:
        sandbox = processes.sandbox()
        page_port, foreign_port = free_port(), free_port()
        page_origin = f"http://127.0.0.1:{page_port}"
        gateway, metrics = processes.gateway("gateway", upstream=sandbox,
                                             allow_origins=[page_origin])
        page = processes.page("page", port=page_port, gateway=gateway)
        foreign = processes.page("foreign-page", port=foreign_port, gateway=gateway)
        yield Stack(creds, sandbox, gateway, page, foreign, metrics)
    finally:
        processes.stop()


@pytest.fixture
def broken_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A gateway whose upstream is a loopback port nobody listens on."""
    creds = new_credentials()
    processes = Processes(tmp_path_factory.mktemp("broken-stack"), creds)
    try:
        dead = f"http://127.0.0.1:{free_port()}"
        page_port = free_port()
        page_origin = f"http://127.0.0.1:{page_port}"
        gateway, metrics = processes.gateway("gateway", upstream=dead,
                                             allow_origins=[page_origin])
        page = processes.page("page", port=page_port, gateway=gateway)
        yield Stack(creds, dead, gateway, page, page, metrics)
    finally:
        processes.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    # Module scope: Playwright's sync API keeps an event loop running in this
    # thread until it stops, which would break asyncio.run() in later modules.
    assert CHROMIUM.exists(), (
        f"{CHROMIUM} is missing: apt-get update && apt-get install -y chromium"
    )
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
