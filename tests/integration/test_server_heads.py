"""Request heads under `reusely-gateway serve`: size and field limits, the head deadline.

Raw sockets against real gunicorn processes: a client library would refuse to
send what an attacker sends. One worker, so that the worker whose memory is
measured is the one reading the attacker's bytes.
"""

from __future__ import annotations

import contextlib
import json
import re
import select
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.gateway import ServedGateway, raw_request, wait_for
from tests.support.upstream import Upstream

POLICY = """
routes:
  - name: behaviour
    path: /b/{kind}
    methods: [GET]
    credentials: [api_key]
    access: public
  - name: posted
    path: /p/{kind}
    methods: [POST]
    credentials: [api_key]
    access: public
"""
LIMIT = 16 * 1024
MIB = 1024 * 1024


@pytest.fixture(scope="module")
def upstream_h() -> Iterator[Upstream]:
    server = Upstream().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def served(upstream_h: Upstream, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[ServedGateway]:
    policy = tmp_path_factory.mktemp("heads") / "policy.yaml"
    policy.write_text(POLICY)
    gw = ServedGateway(policy, upstream_h.url, workers=1).start()
    yield gw
    gw.stop()


def head_of(size: int, *, fields: int = 2, path: str = "/healthz") -> bytes:
    """A GET whose head (request line to the blank line) is exactly `size` bytes."""
    lines = [f"GET {path} HTTP/1.1".encode(), b"Host: gw"]
    lines += [b"X-F%d: v" % i for i in range(fields - 2)]  # + Host and X-Pad
    head = b"\r\n".join(lines) + b"\r\nX-Pad: "
    pad = size - len(head) - 4
    assert pad >= 0, "too many fields for this size"
    return head + b"p" * pad + b"\r\n\r\n"


def refusal(reply: bytes) -> dict[str, str]:
    head, _, body = reply.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == "HTTP/1.1 431 Request Header Fields Too Large", lines[0]
    headers = {k.lower(): v.strip() for k, v in (h.split(":", 1) for h in lines[1:])}
    assert headers["content-type"] == "application/json"
    assert headers["connection"] == "close"
    error = json.loads(body)["error"]
    assert error["code"] == "request_header_fields_too_large"
    assert re.fullmatch(r"[0-9a-f]{32}", error["request_id"])
    assert headers["x-request-id"] == error["request_id"]
    assert error["message"]
    return dict(error)


def worker_pid(gw: ServedGateway) -> int:
    return int(re.findall(r"Booting worker with pid: (\d+)", gw.output())[-1])


def memory_kib(pid: int) -> dict[str, int]:
    status = Path(f"/proc/{pid}/status").read_text()
    return {k: int(v.split()[0]) for k, v in
            (line.split(":", 1) for line in status.splitlines()) if k in ("VmRSS", "VmHWM")}


def healthz_ok(gw: ServedGateway) -> bool:
    return httpx.get(gw.url + "/healthz", timeout=1).status_code == 200


# -- size and field limits ------------------------------------------------------


def test_a_head_of_exactly_16_kib_passes_and_one_byte_more_gets_431_json(served):
    status, reply = raw_request(served.port, head_of(LIMIT))
    assert status == 200, reply[:200]
    status, reply = raw_request(served.port, head_of(LIMIT + 1))
    assert status == 431
    first = refusal(reply)
    status, reply = raw_request(served.port, head_of(17 * 1024))
    assert status == 431
    assert refusal(reply)["request_id"] != first["request_id"]  # a fresh id each time


def test_100_header_fields_pass_and_101_get_431(served):
    status, reply = raw_request(served.port, head_of(4096, fields=100))
    assert status == 200, reply[:200]
    status, reply = raw_request(served.port, head_of(4096, fields=101))
    assert status == 431
    refusal(reply)


def test_a_refused_head_never_reaches_the_app_or_reusely(served, upstream_h):
    before = len(upstream_h.received)
    status, _ = raw_request(served.port, head_of(20 * 1024, path="/b/ok"))
    assert status == 431
    status, _ = raw_request(served.port, head_of(2048, fields=150, path="/b/ok"))
    assert status == 431
    assert len(upstream_h.received) == before
    status, _ = raw_request(served.port, head_of(2048, path="/b/ok"))
    assert status == 200 and len(upstream_h.received) == before + 1


def test_a_refused_head_is_logged_once_as_431_without_its_headers(served):
    marker = "x" * 40
    _, reply = raw_request(served.port, head_of(LIMIT + 100, path=f"/{marker}?q=secret"))
    request_id = refusal(reply)["request_id"]
    [line] = wait_for(lambda: [json.loads(line) for line in served.output().splitlines()
                               if request_id in line], "the access line")
    assert line["status"] == 431 and line["route"] == "unmatched"
    assert line["path"] == f"/{marker}" and line["method"] == "GET"
    assert "ppppp" not in json.dumps(line)


def test_a_refused_head_after_a_kept_alive_request_gets_431_on_the_same_connection(served):
    with socket.create_connection(("127.0.0.1", served.port), timeout=5) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n")
        reply = b""
        while not reply.endswith(b'{"status":"ok"}\n'):
            reply += sock.recv(65536)
        assert reply.startswith(b"HTTP/1.1 200")
        sock.sendall(head_of(LIMIT + 1))
        reply = read_all(sock)
    refusal(reply)


def test_pipelined_requests_are_answered_and_a_pipelined_oversized_head_gets_431(served):
    small = b"GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n"
    with socket.create_connection(("127.0.0.1", served.port), timeout=5) as sock:
        sock.sendall(small + small + head_of(LIMIT + 1000))  # all in one read
        reply = read_all(sock)
    first, second, third = reply.split(b"HTTP/1.1 ")[1:]
    assert first.startswith(b"200") and second.startswith(b"200")
    refusal(b"HTTP/1.1 " + third)


def test_a_body_sent_with_its_head_does_not_count_towards_the_head(served, upstream_h):
    body = b'{"pad": "' + b"b" * (40 * 1024) + b'"}'
    head = (b"POST /p/x HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n" % len(body))
    pad = b"X-Pad: " + b"p" * (LIMIT - len(head) - len(b"X-Pad: \r\n\r\n")) + b"\r\n\r\n"
    assert len(head + pad) == LIMIT
    status, reply = raw_request(served.port, head + pad + body)  # one send, likely one read
    assert status == 200, reply[:300]
    assert upstream_h.received[-1].body == body


def test_a_small_head_pipelined_behind_a_body_is_not_counted_with_the_body(served):
    body = b'{"pad": "' + b"b" * (15 * 1024) + b'"}'
    post = (b"POST /p/x HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body)) + body
    with socket.create_connection(("127.0.0.1", served.port), timeout=5) as sock:
        sock.sendall(post + head_of(3000)[:-4] + b"\r\nConnection: close\r\n\r\n")
        reply = read_all(sock)
    answers = [part[:3] for part in reply.split(b"HTTP/1.1 ")[1:]]
    assert answers == [b"200", b"200"], reply[:500]


def test_a_64_mib_header_value_is_refused_early_and_the_worker_does_not_grow(served):
    pid = worker_pid(served)
    assert healthz_ok(served)
    before = memory_kib(pid)
    chunk = b"a" * 65536
    sent = 0
    with socket.create_connection(("127.0.0.1", served.port), timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: gw\r\nX-Big: ")
        sock.setblocking(False)
        deadline = time.monotonic() + 30
        while sent < 64 * MIB and time.monotonic() < deadline:
            readable, writable, _ = select.select([sock], [sock], [], 1)
            if readable:
                break  # the answer came while we were still sending
            if writable:
                with contextlib.suppress(BlockingIOError, InterruptedError):
                    sent += sock.send(chunk)
        during = memory_kib(pid)
        healthy = healthz_ok(served)
        sock.settimeout(5)
        reply = read_all(sock)
    after = memory_kib(pid)
    refusal(reply)
    assert sent < 32 * MIB, f"the caller sent {sent} bytes before the answer"
    assert healthy
    for label, reading in (("during", during), ("after", after)):
        grew = reading["VmRSS"] - before["VmRSS"]
        assert grew < 4 * 1024, f"RSS {label}: {before} -> {reading} ({sent} bytes sent)"
        assert reading["VmHWM"] - before["VmHWM"] < 4 * 1024, f"peak {label}: {reading}"


def read_all(sock: socket.socket) -> bytes:
    reply = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except (TimeoutError, ConnectionResetError):
            break
        if not chunk:
            break
        reply += chunk
    return reply


# -- the head deadline ---------------------------------------------------------


class Watch(threading.Thread):
    """One connection: sends `first`, then one byte a second if `trickle`; records its close."""

    def __init__(self, port: int, first: bytes = b"", *, trickle: bool = False) -> None:
        super().__init__(daemon=True)
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.opened = time.monotonic()
        self.first, self.trickle = first, trickle
        self.received = b""
        self.answered_at = 0.0  # when the first reply byte arrived
        self.closed_after: float | None = None  # seconds from opening (or from the answer)

    def run(self) -> None:
        sock = self.sock
        try:
            if self.first:
                sock.sendall(self.first)
            while True:
                if self.trickle:
                    readable, _, _ = select.select([sock], [], [], 1)
                    if not readable:
                        sock.sendall(b"X")  # one more byte of a header name, never done
                        continue
                chunk = sock.recv(65536)
                if not chunk:
                    break
                if not self.received:
                    self.answered_at = time.monotonic()
                self.received += chunk
        except OSError:
            pass
        since = self.answered_at or self.opened
        self.closed_after = time.monotonic() - since
        sock.close()


def test_idle_slow_and_kept_alive_connections_are_closed_while_healthz_answers(served):
    idle = [Watch(served.port) for _ in range(50)]
    loris = Watch(served.port, b"GET /healthz HTTP/1.1\r\nHost: gw\r\nX-Slow", trickle=True)
    kept = Watch(served.port, b"GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n")
    kept_loris = Watch(served.port, b"GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\nGET /", trickle=True)
    watches = [*idle, loris, kept, kept_loris]
    for w in watches:
        w.start()
    slowest_health = 0.0
    while any(w.is_alive() for w in watches) and time.monotonic() - idle[0].opened < 20:
        start = time.monotonic()
        assert healthz_ok(served)
        slowest_health = max(slowest_health, time.monotonic() - start)
        time.sleep(0.25)
    for w in watches:
        w.join(1)
    assert slowest_health < 1.0
    for w in idle:
        assert w.received == b""  # closed without an answer
        assert w.closed_after is not None and 9.5 < w.closed_after < 13, w.closed_after
    assert loris.received == b"" and loris.closed_after is not None
    assert 9.5 < loris.closed_after < 13, loris.closed_after
    # After a response, silence is closed by the 5 s keep-alive timeout and an
    # unfinished head by the 10 s head deadline, both counted from the response.
    assert kept.received.startswith(b"HTTP/1.1 200")
    assert kept.closed_after is not None and 4.5 < kept.closed_after < 8, kept.closed_after
    assert kept_loris.received.startswith(b"HTTP/1.1 200")
    assert kept_loris.received.count(b"HTTP/1.1") == 1
    assert kept_loris.closed_after is not None and 9.5 < kept_loris.closed_after < 13


def test_a_refused_head_is_counted_like_any_answer(served):
    series = 'gateway_requests_total{client="public",method="GET",route="unmatched",status="431"}'

    def counted() -> float:
        for line in httpx.get(served.metrics_url).text.splitlines():
            if line.startswith(series + " "):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    before = counted()
    for _ in range(2):
        status, _ = raw_request(served.port, head_of(LIMIT + 1))
        assert status == 431
    wait_for(lambda: counted() == before + 2, "two more 431s counted", timeout=5)
