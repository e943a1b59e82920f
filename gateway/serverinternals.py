"""Every uvicorn, uvicorn-worker and gunicorn internal the worker relies on, in one place.

The worker (`gateway.worker`) changes how uvicorn's httptools protocol reads
request heads and how its server shuts down. Neither library offers hooks for
that, so it reaches into private attributes. Each such reach is one function
here, so that an upgrade that renames one breaks here, loudly, in
tests/unit/test_serverinternals.py (which checks every name in `REQUIRED`),
and not as a silently unbounded head or a lost request during a reload.

Checked against: uvicorn 0.54.0, uvicorn-worker 0.4.0, gunicorn 27.0.1,
httptools 0.9.0 (pyproject.toml pins each to its major version).
"""

from __future__ import annotations

import socket
from collections.abc import Iterable
from typing import Any

CHECKED_AGAINST = {"uvicorn": "0.54.0", "uvicorn-worker": "0.4.0", "gunicorn": "27.0.1",
                   "httptools": "0.9.0"}

# (module, class, names) that must exist for the functions below and the worker's
# overrides to mean what they meant when checked. The test looks for the names on
# an instance (built as uvicorn builds one), so instance attributes count.
REQUIRED: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("uvicorn.protocols.http.httptools_impl", "HttpToolsProtocol", (
        # methods the worker overrides or calls
        "connection_made", "connection_lost", "data_received", "on_message_begin",
        "on_url", "on_header", "on_headers_complete", "on_message_complete",
        "on_response_complete", "shutdown", "send_400_response",
        "_unset_keepalive_if_required", "_should_upgrade", "handle_websocket_upgrade",
        "_unsupported_upgrade_warning",
        # state it reads
        "parser", "transport", "flow", "loop", "logger", "server_state", "pipeline",
        "cycle", "headers", "timeout_keep_alive", "timeout_keep_alive_task")),
    ("uvicorn.protocols.http.httptools_impl", "RequestResponseCycle", (
        "keep_alive", "response_complete")),
    ("uvicorn.server", "ServerState", ("connections", "default_headers")),
    ("uvicorn.server", "Server", ("shutdown", "serve", "server_state", "started",
                                  "servers")),  # `servers` is set by startup()
    ("uvicorn.config", "Config", ("timeout_keep_alive", "timeout_graceful_shutdown")),
    ("uvicorn_worker", "UvicornWorker", ("_serve", "run", "_install_sigquit_handler",
                                         "CONFIG_KWARGS")),
    ("gunicorn.sock", "BaseSocket", ("sock", "close")),
    ("httptools", "HttpRequestParser", ("feed_data", "get_method")),
)

# -- uvicorn's HttpToolsProtocol ------------------------------------------------

def cancel_keep_alive_timer(protocol: Any) -> None:
    """What uvicorn's `data_received` does first: any byte stops the keep-alive wait."""
    protocol._unset_keepalive_if_required()


def handle_upgrade(protocol: Any) -> None:
    """uvicorn's `data_received` on `HttpParserUpgrade`, unchanged."""
    if protocol._should_upgrade():
        protocol.handle_websocket_upgrade()
    else:
        protocol._unsupported_upgrade_warning()


def refuse_malformed(protocol: Any) -> None:
    """uvicorn's `data_received` on `HttpParserError`: a plain 400 and close."""
    message = "Invalid HTTP request received."
    protocol.logger.warning(message)
    protocol.send_400_response(message)


def is_idle(connection: Any) -> bool:
    """No request in progress: none read yet, or the last one answered in full."""
    cycle = getattr(connection, "cycle", None)
    return cycle is None or bool(cycle.response_complete)


def close_after_response(connection: Any) -> None:
    """The request in progress, if any, ends its connection once answered."""
    if not is_idle(connection):
        connection.cycle.keep_alive = False


def default_headers(protocol: Any) -> list[tuple[bytes, bytes]]:
    """The headers uvicorn adds to every response (its Date header)."""
    return list(protocol.server_state.default_headers)


def resume_reading(protocol: Any) -> None:
    protocol.flow.resume_reading()


# -- uvicorn's Server and ServerState -------------------------------------------

def start_draining(server_state: Any) -> None:
    server_state.draining = True  # our own mark on uvicorn's shared state object


def is_draining(server_state: Any) -> bool:
    return bool(getattr(server_state, "draining", False))


def connections(server_state: Any) -> list[Any]:
    return list(server_state.connections)


def listeners(server: Any) -> list[Any]:
    """The asyncio servers uvicorn created on the listening sockets."""
    return list(server.servers)


# -- uvicorn-worker and gunicorn -------------------------------------------------

def install_sigquit_handler(worker: Any) -> None:
    """uvicorn-worker's SIGQUIT handler, which its `_serve` installs."""
    worker._install_sigquit_handler()


def plain_sockets(sockets: Iterable[Any]) -> list[socket.socket]:
    """The `socket.socket` inside each of gunicorn's listener wrappers.

    uvloop closes the descriptor of a socket it served when the server closes.
    Given a `socket.socket` it then detaches the object; given anything else
    (gunicorn's `BaseSocket`) it calls `close()`, which fails with EBADF on the
    descriptor already closed, and gunicorn logs "Error while closing socket
    [Errno 9] Bad file descriptor" on every reload and shutdown.
    """
    return [getattr(s, "sock", s) for s in sockets]
