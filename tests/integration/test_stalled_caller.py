"""A caller that stops reading cannot hold a connection to Reusely open."""

from __future__ import annotations

import socket
import time

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
