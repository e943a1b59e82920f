"""A caller that stops reading cannot hold a connection to Reusely open."""

from __future__ import annotations

import asyncio
import gc
import json
import socket
import time
import weakref

import httpx

from gateway.upstream import Upstream as ReuselyClient
from tests.support.gateway import ServedGateway, settings_for, wait_for
from tests.support.upstream import Upstream

POLICY = """
routes:
  - name: big
    path: /b/{rest:path}
    methods: [GET]
    credentials: [api_key]
    access: public
    timeout: {read: 1}
"""


def test_a_caller_that_never_reads_is_given_up_after_the_read_timeout(gateway_factory, upstream):
    gw = gateway_factory(POLICY)
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", gw.port))
        sock.sendall(b"GET /b/big/268435456 HTTP/1.1\r\nHost: gw\r\n\r\n")  # 256 MiB
        started = time.monotonic()
        # Never read: the kernel's buffers fill, the gateway's send to us stalls, and
        # after the route's read timeout it lets go of Reusely's connection.
        assert upstream.big_cut.wait(15), "the gateway kept reading from Reusely"
        assert time.monotonic() - started < 10


def test_a_stalled_caller_is_logged_as_what_it_is_and_counted_499(tmp_path):
    upstream = Upstream().start()
    policy = tmp_path / "gateway.yaml"
    policy.write_text(POLICY)
    served = ServedGateway(policy, upstream.url, workers=1).start()
    try:
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect(("127.0.0.1", served.port))
            sock.sendall(b"GET /b/big/268435456 HTTP/1.1\r\nHost: gw\r\n\r\n")
            assert upstream.big_cut.wait(15)
        wait_for(lambda: 'status="499"' in httpx.get(served.metrics_url).text,
                 "the cut-short answer counted as 499", timeout=5)
        lines = [json.loads(line) for line in served.output().splitlines()
                 if line.startswith("{")]
        assert not [x for x in lines if x["level"] == "error"], lines
        assert any("cut short" in x.get("message", "") for x in lines)
        assert not any("Traceback" in line for line in served.output().splitlines())
    finally:
        served.stop()
        upstream.stop()


def test_an_answer_cut_short_leaves_nothing_for_the_garbage_collector(upstream):
    """A stream stopped early frees what it buffered at once, not at the next full GC.

    A body generator left suspended holds its last chunk in a reference cycle with
    its answer; under a stream that is up to the transport's read buffer per answer,
    and RSS grows until the collector happens to run.
    """
    settings = settings_for(POLICY, upstream.url)
    route = settings.policy.routes[0]

    async def cut_short() -> None:
        client = ReuselyClient(settings)
        try:
            response = await client.send(route, "GET", "/big/33554432", [], None)
            body = response.body()
            assert len(await anext(body)) > 0
            freed = weakref.ref(body)
            await response.aclose()
            del response, body
            assert freed() is None, "the body's generator waits for the garbage collector"
        finally:
            await client.aclose()

    gc.disable()
    try:
        asyncio.run(cut_short())
    finally:
        gc.enable()
