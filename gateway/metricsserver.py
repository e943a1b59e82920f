"""The `/metrics` listener: in the gunicorn master, summing every worker's files.

It runs in the master rather than a worker: a scrape then never competes with
proxied requests and keeps answering while every worker is busy. It builds a
fresh `MultiProcessCollector` registry per scrape (PROMETHEUS_MULTIPROC_DIR,
set by `serve` before Python starts the workers), and it is bounded so that
whatever reaches its port cannot exhaust the master (see MetricsListener).
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

log = logging.getLogger("gateway")
# The listener's bounds (see MetricsListener).
LISTENER_TIMEOUT = 3.0  # seconds to send a complete request head, and to take the answer
LISTENER_CONNECTIONS = 64  # open at once; one more closes the oldest still silent
SCRAPE_THREADS = 2  # threads building answers
LISTENER_HEAD_LIMIT = 8192  # bytes of request head


def metrics_wsgi(registry: Callable[[], CollectorRegistry]) -> Callable[..., Iterable[bytes]]:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != "/metrics":
            body = json.dumps({"error": {"code": "route_not_found",
                                         "message": "Only /metrics is served here.",
                                         "request_id": ""}}).encode()
            start_response("404 Not Found", [("Content-Type", "application/json")])
            return [body]
        output = generate_latest(registry())
        start_response("200 OK", [("Content-Type", CONTENT_TYPE_LATEST),
                                  ("Content-Length", str(len(output)))])
        return [output]
    return app


class MetricsListener:
    """`/metrics` over HTTP/1.1 on one event-loop thread in the gunicorn master.

    Whatever reaches this port must not exhaust the master, which supervises
    every worker. A thread per connection would let idle connections pile up
    threads (100 idle connections were 100 threads, none ever closed).
    Here a connection costs no thread until its request head is complete:
    heads are read on the event loop, `timeout` seconds at most from the
    connection's opening (a trickle of bytes does not extend it), and only
    complete requests are answered on `scrape_threads` threads (further
    scrapes wait their turn). The answer must be taken within `timeout`
    too. At most `max_connections` are open: one more closes the oldest that
    has not yet sent a complete head (or, if all are being answered, itself),
    so a flood of silent connections cannot keep a real scrape out.
    One request per connection (`Connection: close`), as Prometheus expects.
    """

    def __init__(self, bind: tuple[str, int],
                 app: Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]], *,
                 timeout: float = LISTENER_TIMEOUT, max_connections: int = LISTENER_CONNECTIONS,
                 scrape_threads: int = SCRAPE_THREADS) -> None:
        self._app = app
        self._timeout = timeout
        self._max_connections = max_connections
        self._pool = ThreadPoolExecutor(scrape_threads, thread_name_prefix="metrics-scrape")
        self._open: dict[asyncio.StreamWriter, bool] = {}  # -> answering; oldest first
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop = asyncio.new_event_loop()
        host, port = bind
        # Bound here, in the caller's thread, so that a bad bind fails `serve` at once.
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._connection, host, port, limit=LISTENER_HEAD_LIMIT))
        self._thread = threading.Thread(target=self._loop.run_forever, name="metrics",
                                        daemon=True)
        self._thread.start()

    async def _connection(self, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        self._admit(writer)
        try:
            await self._answer(reader, writer)
        except (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            writer.transport.abort()  # silent, slow, too long or gone: closed, never answered
        finally:
            self._open.pop(writer, None)
            writer.close()

    def _admit(self, writer: asyncio.StreamWriter) -> None:
        if len(self._open) >= self._max_connections:
            oldest_silent = next((w for w, answering in self._open.items() if not answering),
                                 writer)
            self._open.pop(oldest_silent, None)  # at once: its handler ends a moment later
            oldest_silent.transport.abort()
            if oldest_silent is writer:
                return
        self._open[writer] = False

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), self._timeout)
        request_line = head.split(b"\r\n", 1)[0].split(b" ")
        if len(request_line) != 3 or not request_line[0].isalpha():
            writer.transport.abort()
            return
        self._open[writer] = True
        method = request_line[0].decode("ascii")
        path = request_line[1].split(b"?", 1)[0].decode("ascii", "replace")
        status, headers, body = await self._loop.run_in_executor(
            self._pool, self._call_app, method, path)
        lines = [f"HTTP/1.1 {status}", *(f"{k}: {v}" for k, v in headers
                                           if k.lower() != "content-length"),
                 f"Content-Length: {len(body)}", "Connection: close", "", ""]
        writer.transport.set_write_buffer_limits(high=0)  # drain() waits for every byte
        writer.write("\r\n".join(lines).encode("latin-1") + (b"" if method == "HEAD" else body))
        await asyncio.wait_for(writer.drain(), self._timeout)

    def _call_app(self, method: str, path: str) -> tuple[str, list[tuple[str, str]], bytes]:
        started: list[tuple[str, list[tuple[str, str]]]] = []

        def start_response(status: str, headers: list[tuple[str, str]],
                           exc_info: Any = None) -> None:
            started.append((status, headers))

        try:
            body = b"".join(self._app({"REQUEST_METHOD": method, "PATH_INFO": path},
                                      start_response))
        except Exception as exc:
            log.error("the metrics scrape failed", exc_info=exc)
            body = json.dumps({"error": {"code": "internal_error",
                                         "message": "The metrics could not be collected.",
                                         "request_id": ""}}).encode()
            return "500 Internal Server Error", [("Content-Type", "application/json")], body
        return started[0][0], started[0][1], body

    @property
    def port(self) -> int:
        return int(self._server.sockets[0].getsockname()[1])

    def shutdown(self) -> None:
        """Stop listening, close every connection, stop the thread (idempotent)."""
        if self._loop.is_closed():
            return
        asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()
        self._pool.shutdown(wait=False)

    server_close = shutdown  # the name socketserver's servers answer to

    async def _close(self) -> None:
        self._server.close()
        for writer in list(self._open):
            writer.transport.abort()  # each handler then ends on its own
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=2)


def start_metrics_server(bind: tuple[str, int],
                         registry: Callable[[], CollectorRegistry]) -> MetricsListener:
    return MetricsListener(bind, metrics_wsgi(registry))
