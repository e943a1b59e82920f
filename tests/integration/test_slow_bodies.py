"""A caller trickling a request body cannot hold the gateway's resources at will."""

from __future__ import annotations

import socket
import threading
import time

import httpx

from tests.support.http import MAIL_IN

POLICY = f"""
upstream: {{max_connections: 2}}
routes:
  - name: catalog
    path: /b/catalog/{{rest:path}}
    methods: [GET]
    credentials: [api_key]
    access: public
    timeout: {{write: 1}}
  - name: upload
    path: /b/upload
    methods: [POST]
    credentials: [api_key]
    access: public
    timeout: {{write: 1}}
  - name: checkout-mail-in
    path: {MAIL_IN}
    methods: [POST]
    credentials: [api_key]
    access: public
    timeout: {{write: 1}}
    limits:
      - {{per: "body:email", rate: "5/hour"}}
"""


def trickle(port: int, head: bytes, stop: threading.Event) -> tuple[int, float]:
    """Send `head`, then one body byte a second; the status and when it came."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head)
        sock.settimeout(0.9)
        reply = b""
        while not stop.is_set() and time.monotonic() - started < 8:
            try:
                reply += sock.recv(4096)
                if reply:
                    break
            except TimeoutError:
                try:
                    sock.sendall(b"x")
                except OSError:
                    break
    status = int(reply.split(b" ", 2)[1]) if reply.startswith(b"HTTP/1.1") else 0
    return status, time.monotonic() - started


def test_a_trickled_body_gets_408_within_the_write_timeout(gateway_factory, upstream):
    gw = gateway_factory(POLICY)
    stop = threading.Event()
    for head in (b"POST /b/upload HTTP/1.1\r\nHost: g\r\nContent-Length: 1000\r\n\r\n",
                 b"POST " + MAIL_IN.encode() + b" HTTP/1.1\r\nHost: g\r\n"
                 b"Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n",
                 b"POST " + MAIL_IN.encode() + b" HTTP/1.1\r\nHost: g\r\n"
                 b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"):
        status, took = trickle(gw.port, head, stop)
        assert status == 408 and took < 4, (head[:40], status, took)


def test_slow_gets_with_bodies_do_not_take_the_pool_from_other_callers(gateway_factory,
                                                                       upstream):
    gw = gateway_factory(POLICY)  # two connections to Reusely per worker, no more
    stop = threading.Event()
    slow = [threading.Thread(target=trickle, daemon=True, args=(
        gw.port, b"GET /b/catalog/x HTTP/1.1\r\nHost: g\r\nContent-Length: 1000\r\n\r\n", stop))
        for _ in range(4)]
    for t in slow:
        t.start()
    time.sleep(0.5)
    try:
        for _ in range(5):  # served meanwhile: the slow ones hold no connection to Reusely
            r = httpx.get(gw.url + "/b/catalog/y", timeout=3)
            assert r.status_code == 200
    finally:
        stop.set()
        for t in slow:
            t.join(10)
    assert all(r.target != b"/b/catalog/x" for r in upstream.received)
