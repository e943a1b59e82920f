"""Logging a hostile path costs linear time: a real `serve` worker keeps answering."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.gateway import ServedGateway, raw_request, wait_for
from tests.support.upstream import Upstream

POLICY = """
routes:
  - name: catalog
    path: /api/v2/public/catalog/{rest:path}
    methods: [GET]
    credentials: [api_key]
    access: public
"""
KIB = 1024


@pytest.fixture
def served(tmp_path: Path, upstream: Upstream) -> Iterator[ServedGateway]:
    config = tmp_path / "gateway.yaml"
    config.write_text(POLICY)
    gateway = ServedGateway(config, upstream.url, workers=1).start()
    yield gateway
    gateway.stop()


def hostile_path(i: int) -> bytes:
    """14 KiB: an @ between long runs of letters, the worst the old email pattern met."""
    half = 7 * KIB
    return b"/" + b"a" * half + b"@" + b"b" * (half - 16) + b"%d" % i


def test_healthz_answers_within_a_second_after_four_14_kib_hostile_paths(served, upstream):
    attackers = []
    for i in range(4):
        sock = socket.create_connection(("127.0.0.1", served.port), timeout=30)
        sock.sendall(b"GET " + hostile_path(i) + b" HTTP/1.1\r\nHost: x\r\n"
                     b"Connection: close\r\n\r\n")
        attackers.append(sock)
    try:
        time.sleep(0.2)  # the four are in the worker's hands before the probe
        started = time.monotonic()
        status, _ = raw_request(served.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
                                             b"Connection: close\r\n\r\n", timeout=10)
        elapsed = time.monotonic() - started
        assert status == 200
        assert elapsed < 1.0, f"/healthz took {elapsed:.2f} s"
        for sock in attackers:
            reply = sock.recv(65536)
            assert reply.startswith(b"HTTP/1.1 404"), reply[:100]
    finally:
        for sock in attackers:
            sock.close()

    def access_lines() -> list[dict[str, object]]:
        lines = [json.loads(line) for line in served.output().splitlines()
                 if line.startswith("{")]
        return [line for line in lines if line.get("logger") == "gateway.access"
                and line.get("status") == 404]

    logged = wait_for(lambda: len(access_lines()) == 4 and access_lines(), "four access lines")
    assert sorted(str(line["path"]) for line in logged) == sorted(
        hostile_path(i).decode() for i in range(4))
    assert upstream.received == []
