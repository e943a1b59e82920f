"""The metrics listener's bounds, with small limits so that each shows quickly."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client import CollectorRegistry

from gateway.metrics import Metrics
from gateway.metricsserver import MetricsListener, metrics_wsgi
from tests.support.gateway import free_port, raw_request
from tests.support.http import closed_by_peer

TIMEOUT = 0.5
CAP = 4


@pytest.fixture
def listener() -> Iterator[MetricsListener]:
    registry = CollectorRegistry()
    Metrics(registry, version="1.2.3")
    server = MetricsListener(("127.0.0.1", free_port()), metrics_wsgi(lambda: registry),
                             timeout=TIMEOUT, max_connections=CAP, scrape_threads=1)
    yield server
    server.shutdown()


def connect(listener: MetricsListener) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", listener.port), timeout=5)
    time.sleep(0.05)  # let the listener admit it, so that the order is known
    return sock


def test_a_scrape_is_answered_once_and_the_connection_closed(listener):
    status, reply = raw_request(listener.port, b"GET /metrics?x=1 HTTP/1.1\r\nHost: m\r\n\r\n")
    assert status == 200
    assert b'gateway_build_info{version="1.2.3"} 1.0' in reply
    assert b"Connection: close" in reply
    status, reply = raw_request(listener.port, b"HEAD /metrics HTTP/1.1\r\nHost: m\r\n\r\n")
    assert status == 200 and reply.endswith(b"\r\n\r\n")
    status, reply = raw_request(listener.port, b"GET /other HTTP/1.1\r\nHost: m\r\n\r\n")
    assert status == 404 and b"route_not_found" in reply


def test_at_the_cap_the_oldest_silent_connection_makes_way_for_a_new_one(listener):
    silent = [connect(listener) for _ in range(CAP)]
    newest = connect(listener)  # one over the cap: the oldest silent one is closed
    assert closed_by_peer(silent[0], 0.3)
    assert not any(closed_by_peer(s, 0.05) for s in silent[1:])
    newest.sendall(b"GET /metrics HTTP/1.1\r\nHost: m\r\n\r\n")
    newest.settimeout(5)
    assert newest.recv(65536).startswith(b"HTTP/1.1 200")
    for sock in [*silent, newest]:
        sock.close()


def test_silent_slow_and_oversized_heads_are_closed_unanswered(listener):
    silent = connect(listener)
    slow = connect(listener)
    started = time.monotonic()
    while time.monotonic() - started < TIMEOUT + 0.5 and not closed_by_peer(slow, 0.05):
        slow.sendall(b"G")  # a byte at a time does not extend the deadline
    assert time.monotonic() - started < TIMEOUT + 0.5
    assert closed_by_peer(silent, 0.3)
    big = connect(listener)
    big.sendall(b"GET /metrics HTTP/1.1\r\nX-Big: " + b"a" * 20000)
    assert closed_by_peer(big, 2)
    for sock in (silent, slow, big):
        sock.close()
    assert httpx.get(f"http://127.0.0.1:{listener.port}/metrics").status_code == 200


def test_shutdown_closes_open_connections_and_may_be_repeated(listener):
    port = listener.port
    with connect(listener) as idle:
        listener.shutdown()
        assert closed_by_peer(idle, 0.3)
    listener.shutdown()
    listener.server_close()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1)
