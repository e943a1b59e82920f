"""The metrics listener in the gunicorn master under idle and slow connections.

Idle or trickling connections to the metrics port must not cost the master a
thread each, must be closed after a few seconds, and must not keep a real
scrape out.
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gateway.metricsserver import LISTENER_CONNECTIONS, LISTENER_TIMEOUT, SCRAPE_THREADS
from tests.support.gateway import ServedGateway
from tests.support.http import closed_by_peer
from tests.support.upstream import Upstream

POLICY = """
routes:
  - name: behaviour
    path: /b/{kind}
    methods: [GET]
    credentials: [api_key]
    access: public
"""


@pytest.fixture
def served(tmp_path: Path) -> Iterator[ServedGateway]:
    upstream = Upstream().start()
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    gw = ServedGateway(policy, upstream.url, workers=1).start()
    yield gw
    gw.stop()
    upstream.stop()


def proc_status(pid: int, field: str) -> int:
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(rf"^{field}:\s+(\d+)", text, re.M).group(1))  # type: ignore[union-attr]


def open_fds(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


def test_idle_and_slow_connections_cost_no_thread_are_closed_and_leave_scrapes_working(served):
    assert served.proc is not None
    master = served.proc.pid
    assert httpx.get(served.metrics_url, timeout=5).status_code == 200  # warm: pool thread up
    threads_before = proc_status(master, "Threads")
    fds_before = open_fds(master)

    stop = threading.Event()
    slow = [socket.create_connection(("127.0.0.1", served.metrics_port)) for _ in range(5)]

    def trickle() -> None:
        sent = b"GET /metrics HTTP/1.1\r\nX-Slow: "
        for sock in slow:
            sock.sendall(sent)
        while not stop.wait(0.3):
            for sock in slow:
                with contextlib.suppress(OSError):
                    sock.sendall(b"x")

    trickler = threading.Thread(target=trickle, daemon=True)
    trickler.start()
    opened = time.monotonic()
    idle = [socket.create_connection(("127.0.0.1", served.metrics_port)) for _ in range(100)]
    try:
        time.sleep(0.5)
        threads_during = proc_status(master, "Threads")
        fds_during = open_fds(master)
        start = time.monotonic()
        r = httpx.get(served.metrics_url, timeout=5)
        scrape_seconds = time.monotonic() - start
        assert r.status_code == 200
        assert "gateway_build_info" in r.text
        assert scrape_seconds < 2.0
        assert threads_during <= threads_before + SCRAPE_THREADS + 1, (threads_before,
                                                                      threads_during)
        assert fds_during <= fds_before + LISTENER_CONNECTIONS + 5, (fds_before, fds_during)

        time.sleep(max(0.0, opened + LISTENER_TIMEOUT + 1.5 - time.monotonic()))
        still_open = [s for s in idle + slow if not closed_by_peer(s)]
        assert not still_open, f"{len(still_open)} connections still open"
        assert open_fds(master) <= fds_before + 2
        assert proc_status(master, "Threads") <= threads_before + SCRAPE_THREADS + 1
        assert httpx.get(served.metrics_url, timeout=5).status_code == 200
    finally:
        stop.set()
        trickler.join(5)
        for sock in idle + slow:
            sock.close()
    assert "Traceback" not in served.output()
