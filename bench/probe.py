"""Asking a started server something over HTTP: is it up, does it answer right.

Every target is checked once before any load (status and body length per route,
the gateway's 401 without a token), so that a misconfigured proxy fails the run
instead of measuring how fast it returns errors. Standard library only.
"""

from __future__ import annotations

import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from procs import Proc, tail
from settings import (
    ADMIN_PATH,
    API_KEY,
    BENCH_TOKEN,
    BIG_BYTES,
    CATALOG_JSON,
    CATALOG_PATH,
    HOST,
    MAILIN_PATH,
    PORT,
    SECRET_KEY,
    log,
)

if TYPE_CHECKING:
    from targets import Target


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


def wait_port(port: int, proc: Proc | None, timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc is not None and (gone := proc.exited()):
            raise RuntimeError(gone)
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
        if gone := proc.exited():
            raise RuntimeError(gone)
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


def _status_only(name: str, port: int) -> None:
    expect(f"{name} catalog", http("GET", port, CATALOG_PATH), 200)


def _catalog(name: str, port: int) -> None:
    expect(f"{name} catalog", http("GET", port, CATALOG_PATH), 200, len(CATALOG_JSON))


def _every_route(name: str, port: int) -> None:
    bearer = {"Authorization": f"Bearer {BENCH_TOKEN}"}
    post = {"Content-Type": "application/json"}
    _catalog(name, port)
    expect(f"{name} admin", http("GET", port, ADMIN_PATH, bearer), 200)
    expect(f"{name} mail-in",
           http("POST", port, MAILIN_PATH, post, b'{"email":"sanity@example.com"}'), 201)
    expect(f"{name} big", http("GET", port, "/big"), 200, BIG_BYTES)


def _gateway(name: str, port: int) -> None:
    _every_route(name, port)
    expect(f"{name} admin without token", http("GET", port, ADMIN_PATH), 401)


def _cached(name: str, port: int) -> None:
    """A cache target: every route, and the catalog's second answer is a hit."""
    _gateway(name, port)
    for _ in range(2):
        with urllib.request.urlopen(f"http://{HOST}:{port}{CATALOG_PATH}", timeout=30) as resp:
            resp.read()
            state = resp.headers.get("x-cache-status")
    if state != "hit":
        raise RuntimeError(f"sanity check failed: {name} catalog twice: X-Cache-Status "
                           f"{state!r}, expected 'hit'")


# What a target is checked on before it is measured: Target.checks names one.
CHECKS: dict[str, Callable[[str, int], None]] = {
    "status": _status_only,  # an app answering a fixed body (variants.py's floor-server)
    "catalog": _catalog,  # the floors: only the catalog GET is measured on them
    "proxy": _every_route,
    "gateway": _gateway,
    "cached": _cached,
}


def sanity(proxies: Iterable[Target]) -> None:
    key = {"x-api-key": API_KEY, "x-secret-key": SECRET_KEY}
    expect("upstream without x-api-key", http("GET", PORT["upstream"], CATALOG_PATH), 401)
    expect("upstream catalog", http("GET", PORT["upstream"], CATALOG_PATH, key), 200,
           len(CATALOG_JSON))
    names = []
    for target in proxies:
        CHECKS[target.checks](target.name, target.port)
        names.append(target.name)
    log("sanity checks passed: " + ", ".join(names))
