"""The gunicorn worker: uvicorn (uvloop + httptools when installed) tuned for a proxy.

Graceful shutdown (SIGTERM, and the old workers on a SIGHUP reload) differs from
uvicorn's. uvicorn stops accepting and then at once closes every connection
that has no request in progress. That includes a connection it accepted a
moment ago whose request it has not read yet, and a keep-alive connection on
which the caller is sending its next request: both callers get a reset, so a
reload loses requests. Here, once draining, every request that starts is
answered with `Connection: close`, and idle connections get a short grace to
start one before they are closed; in-flight requests then drain as before.
"""

from __future__ import annotations

import asyncio
import socket
import sys
from typing import Any

from gunicorn.arbiter import Arbiter  # type: ignore[import-untyped]
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import Server
from uvicorn_worker import UvicornWorker

# How long an idle connection may take to start a request once draining began.
IDLE_CONNECTION_GRACE = 1.0


def _idle(connection: Any) -> bool:
    cycle = getattr(connection, "cycle", None)
    return cycle is None or bool(cycle.response_complete)


def _close_after_response(connection: Any) -> None:
    if not _idle(connection):
        connection.cycle.keep_alive = False


class DrainingHttpProtocol(HttpToolsProtocol):
    """httptools' protocol; while draining, each request that starts closes its connection."""

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if getattr(self.server_state, "draining", False):
            _close_after_response(self)


class DrainingServer(Server):
    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.server_state.draining = True  # type: ignore[attr-defined]
        for server in self.servers:
            server.close()  # stop accepting; the listening socket stays open in the others
        for connection in self.server_state.connections:
            _close_after_response(connection)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + IDLE_CONNECTION_GRACE
        # Polled: a connection has no event to wait on for "a request started".
        while loop.time() < deadline and any(  # noqa: ASYNC110
                _idle(c) for c in self.server_state.connections):
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

    async def _serve(self) -> None:
        """uvicorn_worker's own `_serve`, with the draining server."""
        self.config.app = self.wsgi
        server = DrainingServer(config=self.config)
        self._install_sigquit_handler()
        await server.serve(sockets=self.sockets)
        if not server.started:
            sys.exit(Arbiter.WORKER_BOOT_ERROR)
