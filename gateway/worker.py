"""The gunicorn worker: uvicorn (uvloop + httptools) tuned for a proxy facing hostile callers.

Bounded request heads. Under gunicorn's uvicorn worker nothing bounds a request
head: gunicorn's `limit_request_*` settings apply to its own sync parser only,
and httptools keeps appending to a header value for as long as the caller sends
one. The protocol here counts the bytes of each head as they arrive and stops
feeding the parser once a head passes 16 KiB (request line, header fields and
the blank line that ends them) or its 101st header field: the caller gets 431
`request_header_fields_too_large` as JSON with `Connection: close`, the app
never sees the request, and what the caller sends after that is read and thrown
away (for at most `REFUSAL_LINGER` seconds, so that the 431 reaches a caller
still sending rather than being lost to a reset), so memory stays bounded
however long the caller keeps sending. A head pipelined behind another
request, starting inside the same read, is counted from the next read on, and
its parsed size (a lower bound of its bytes) is checked once it is complete;
the bytes held for it stay within one read (uvloop reads at most 250 KB).

Head deadline. A connection must complete a request head within
`HEAD_TIMEOUT` (10 s) of opening, or of the end of its previous response;
otherwise it is closed without an answer. The deadline is not moved by bytes
arriving, so a caller trickling one byte a second is closed at 10 s like a
silent one. It is closed silently rather than with a 408: a caller that sent
nothing has no request to answer, a client that opened a connection ahead of
need could read a stray 408 as the answer to the request it is about to send,
and a silent close is what the keep-alive timeout already does.

Keep-alive. gunicorn's `keepalive` (5 s, uvicorn's keep-alive timer) closes a
kept-alive connection that sends nothing at all for 5 s after a response; that
timer stops at the first byte. The head deadline runs alongside it from the
same moment and cannot be stopped by a byte: after a response, a silent
connection is closed at 5 s and one that started a head but did not finish it
at 10 s. `keepalive` above `HEAD_TIMEOUT` would have no effect, so the worker
caps it there.

Graceful shutdown (SIGTERM, and the old workers on a SIGHUP reload) differs from
uvicorn's. uvicorn stops accepting and then at once closes every connection
that has no request in progress. That includes a connection it accepted a
moment ago whose request it has not read yet, and a keep-alive connection on
which the caller is sending its next request: both callers get a reset, so a
reload loses requests. Here, once draining, every request that starts is
answered with `Connection: close`, and idle connections get a short grace to
start one before they are closed; in-flight requests then drain as before.

The uvicorn, uvicorn-worker and gunicorn internals this relies on are reached
only through `gateway.serverinternals`, which names the versions checked.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from http import HTTPStatus
from typing import Any

import httptools
from gunicorn.arbiter import Arbiter  # type: ignore[import-untyped]
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import Server
from uvicorn_worker import UvicornWorker

from gateway import serverinternals as internals
from gateway.accesslog import AccessLog
from gateway.errors import render

HEAD_LIMIT = 16 * 1024  # bytes of request line + header fields + the blank line
FIELD_LIMIT = 100  # header fields in one head
HEAD_TIMEOUT = 10.0  # seconds to complete a head, from opening or the previous response
REFUSAL_LINGER = 2.0  # seconds a refused caller's further bytes are read and dropped
IDLE_CONNECTION_GRACE = 1.0  # once draining, for an idle connection to start a request

REFUSAL_CODE = "request_header_fields_too_large"
REFUSAL_MESSAGE = (f"The request head is over {HEAD_LIMIT // 1024} KiB or has more than "
                   f"{FIELD_LIMIT} header fields.")
_STATUS_LINE = b"HTTP/1.1 431 " + HTTPStatus(431).phrase.encode() + b"\r\n"


class _HeadRefused(Exception):
    """Raised inside a parser callback to stop httptools on a refused head."""


class DrainingHttpProtocol(HttpToolsProtocol):
    """httptools' protocol with bounded heads, a head deadline, and draining."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._access_log = AccessLog()
        self._awaiting_head = True  # no complete head since the last message ended
        self._head_bytes = 0  # bytes of the current head counted so far
        self._head_begun = False  # the parser saw the current head's first byte
        self._head_exact = True  # the count began at a read boundary (not pipelined)
        self._ended_in_piece = False
        self._fields = 0
        self._refused = False
        self._head_since = 0.0
        self._head_timer: asyncio.TimerHandle | None = None
        self._linger_timer: asyncio.TimerHandle | None = None

    # -- connection events ----------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        if self._linger_timer is not None:
            self._linger_timer.cancel()
            self._linger_timer = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # the 431 is sent or due; the rest of the head is dropped unread
        internals.cancel_keep_alive_timer(self)
        rest: bytes | memoryview = data
        while rest and not self._stopped():
            if not self._awaiting_head or len(rest) <= HEAD_LIMIT - self._head_bytes:
                if self._awaiting_head:
                    self._head_bytes += len(rest)
                self._feed(rest)
                break
            # More than this head may still take: feed only up to the limit.
            room = HEAD_LIMIT - self._head_bytes
            view = memoryview(rest)
            self._head_bytes = HEAD_LIMIT
            self._feed(view[:room])
            if self._awaiting_head and not self._ended_in_piece and not self._stopped():
                self._refuse()  # a full head's worth of bytes and still no end
                return
            rest = view[room:]  # the head ended inside: the rest is body or the next head
        if internals.is_draining(self.server_state):
            internals.close_after_response(self)

    def _stopped(self) -> bool:
        return self._refused or self.transport.is_closing()

    def _feed(self, data: bytes | memoryview) -> None:
        """uvicorn's own parsing step, telling a refused head from a malformed one."""
        self._ended_in_piece = False
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            internals.handle_upgrade(self)
        except httptools.HttpParserError:
            if not self._refused:
                internals.refuse_malformed(self)

    # -- parser callbacks -----------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._fields = 0
        self._head_begun = True
        # A head that began in the piece that ended the previous message was only
        # partly counted; its parsed size is checked once it is complete.
        self._head_exact = not self._ended_in_piece

    def on_header(self, name: bytes, value: bytes) -> None:
        self._fields += 1
        if self._fields > FIELD_LIMIT:
            self._refuse()
            raise _HeadRefused
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        if not self._head_exact and self._parsed_head_size() > HEAD_LIMIT:
            self._refuse()
            raise _HeadRefused
        self._awaiting_head = False
        self._cancel_head_timer()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._awaiting_head = True
        self._head_bytes = 0
        self._head_begun = False
        self._ended_in_piece = True

    def on_response_complete(self) -> None:
        idle = not self.pipeline  # no complete request is waiting behind this one
        if self._refused and idle and not self.transport.is_closing():
            self._answer_refusal()  # the responses before the refused head are out
            return
        super().on_response_complete()
        if idle and not self._stopped():
            self._arm_head_timer()

    def _parsed_head_size(self) -> int:
        """A lower bound of the head's size from its parsed parts (bare LF line ends)."""
        line = len(self.parser.get_method()) + len(self.url) + len(b"  HTTP/1.1\n")
        return line + sum(len(n) + len(v) + 2 for n, v in self.headers) + 1

    # -- the head deadline ----------------------------------------------------

    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        self._head_since = self.loop.time()
        self._head_timer = self.loop.call_later(HEAD_TIMEOUT, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            self.transport.close()

    # -- the 431 --------------------------------------------------------------

    def _refuse(self) -> None:
        """Stop reading this head; answer now, or after the responses still owed before it."""
        if self._refused:
            return
        self._refused = True
        self._cancel_head_timer()
        if internals.is_idle(self) and not self.pipeline:
            self._answer_refusal()

    def _answer_refusal(self) -> None:
        request_id = os.urandom(16).hex()
        body = render(REFUSAL_CODE, REFUSAL_MESSAGE, request_id)
        head = [_STATUS_LINE]
        head += [name + b": " + value + b"\r\n" for name, value in
                 internals.default_headers(self)]
        head += [b"content-type: application/json\r\n",
                 b"content-length: %d\r\n" % len(body),
                 b"x-request-id: " + request_id.encode() + b"\r\n",
                 b"connection: close\r\n\r\n"]
        self.transport.write(b"".join(head) + body)
        self._log_refusal(request_id)
        internals.resume_reading(self)  # keep reading (and dropping) until the linger ends
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self._linger_timer = self.loop.call_later(REFUSAL_LINGER, self.transport.close)

    def _log_refusal(self, request_id: str) -> None:
        url = getattr(self, "url", b"") if self._head_begun else b""
        method = self.parser.get_method().decode("ascii", "replace") if url else ""
        since = self._head_since or self.loop.time()
        path = url.split(b"?", 1)[0].decode("ascii", "replace")
        seconds = self.loop.time() - since
        record = getattr(self.app, "record_server_answer", None)
        if record is not None:  # the gateway's metrics and access line, as for any answer
            record(request_id, method, path, 431, seconds)
            return
        self._access_log.record(request_id, "public", "unmatched", method, path, 431,
                                round(seconds * 1000, 3), None, False)


class DrainingServer(Server):
    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        internals.start_draining(self.server_state)
        for server in internals.listeners(self):
            server.close()  # stop accepting; the listening socket stays open in the others
        for connection in internals.connections(self.server_state):
            internals.close_after_response(connection)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + IDLE_CONNECTION_GRACE
        # Polled: a connection has no event to wait on for "a request started".
        while loop.time() < deadline and any(  # noqa: ASYNC110
                internals.is_idle(c) for c in internals.connections(self.server_state)):
            await asyncio.sleep(0.01)
        await super().shutdown(sockets)


class GatewayWorker(UvicornWorker):
    CONFIG_KWARGS: dict[str, Any] = {  # noqa: RUF012 - the base class's own pattern
        "loop": "auto",
        "http": DrainingHttpProtocol,
        "lifespan": "on",
        # X-Forwarded-For is judged by the gateway against limits.trusted_proxies;
        # uvicorn must not rewrite the peer address from it.
        "proxy_headers": False,
        # Reusely's Server header passes through; the gateway adds none of its own.
        "server_header": False,
    }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # SIGTERM: stop accepting, let in-flight requests finish for up to this long.
        self.config.timeout_graceful_shutdown = int(self.cfg.graceful_timeout)
        # A keep-alive wait past the head deadline would never be reached.
        self.config.timeout_keep_alive = min(self.config.timeout_keep_alive, HEAD_TIMEOUT)

    async def _serve(self) -> None:
        """uvicorn_worker's own `_serve`, with the draining server and the plain sockets."""
        self.config.app = self.wsgi
        server = DrainingServer(config=self.config)
        internals.install_sigquit_handler(self)
        await server.serve(sockets=internals.plain_sockets(self.sockets))
        if not server.started:
            sys.exit(Arbiter.WORKER_BOOT_ERROR)

