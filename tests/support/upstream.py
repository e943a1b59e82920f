"""A real HTTP/1.1 upstream on loopback that records what it receives.

Written on raw asyncio streams (not a framework) so a test controls every
byte: it can stream slowly, reset the connection, or never answer. It runs
its own event loop in a thread, so the gateway under test talks to it over a
real socket exactly as it would talk to Reusely.

Behaviour by path, after an optional "/b" prefix (anything else answers 200
with a small JSON body naming the path it saw):
    /status/<n>        answers status n with a JSON body
    /slow              sends "first", waits until `release` is set, sends "last"
    /big/<bytes>       streams that many bytes (a repeating pattern); `big_cut` is set
                       when the gateway closes the connection before the last byte
    /reset             reads the request, then resets the connection
    /hang              reads the request and never answers
    /cookie            answers with Set-Cookie and credential-named headers
    /retry-after/<v>   answers 429 with `Retry-After: <v>` (percent-decoded; "none": without)
    /echo-key          answers with innocently named headers holding the x-api-key it
                       received (`x-debug-auth: key=<it>`, `x-echo: <it>`), and `x-upstream: kept`
    /delay/<ms>/<rest> waits that many milliseconds, then answers as <rest> would
    /json/<anything>   a JSON answer with a Content-Length: {"path", "n" (the requests this
                       path has received so far, this one included), "generation" (the
                       attribute, which a test may change)}; while `failing` is "503" it
                       answers 503, "reset" resets the connection, "hang" never answers
    /with/<name>/<value>/<anything>
                       the /json answer with one more header (both percent-decoded)

`count(prefix)` is the number of requests received whose path (after "/b")
starts with `prefix`.
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import threading
from dataclasses import dataclass, field
from urllib.parse import unquote


@dataclass
class Received:
    method: str
    target: bytes  # the raw request target (path and query) as received
    headers: list[tuple[str, str]]  # names lower-cased, in order
    body: bytes

    def header(self, name: str) -> str | None:
        values = [v for n, v in self.headers if n == name.lower()]
        return values[0] if values else None

    def names(self) -> set[str]:
        return {n for n, _ in self.headers}


PATTERN = bytes(range(256)) * 4096  # 1 MiB


@dataclass
class Upstream:
    host: str = "127.0.0.1"
    port: int = 0
    received: list[Received] = field(default_factory=list)
    connections: int = 0
    release: threading.Event = field(default_factory=threading.Event)
    first_sent: threading.Event = field(default_factory=threading.Event)
    last_sent: threading.Event = field(default_factory=threading.Event)
    big_cut: threading.Event = field(default_factory=threading.Event)
    failing: str | None = None  # /json: None, "503", "reset" or "hang"
    generation: int = 1  # /json: reported in the body

    def __post_init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._server: asyncio.base_events.Server | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def count(self, prefix: str) -> int:
        return sum(1 for r in list(self.received)
                   if r.target.decode("latin-1").split("?", 1)[0].removeprefix("/b")
                   .startswith(prefix))

    def start(self) -> Upstream:
        self._thread.start()
        self._ready.wait(5)
        return self

    def stop(self) -> None:
        self.release.set()
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._handle, self.host, self.port))
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while await self._one(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def _one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        line = await reader.readline()
        if not line:
            return False
        method, target, _ = line.decode("latin-1").split(" ", 2)
        headers: list[tuple[str, str]] = []
        while True:
            raw = await reader.readline()
            if raw in (b"\r\n", b"\n", b""):
                break
            name, _, value = raw.decode("latin-1").partition(":")
            headers.append((name.strip().lower(), value.strip()))
        hdr = dict(headers)
        body = b""
        if "content-length" in hdr:
            body = await reader.readexactly(int(hdr["content-length"]))
        elif hdr.get("transfer-encoding", "").lower() == "chunked":
            while True:
                size = int((await reader.readline()).strip(), 16)
                if size == 0:
                    await reader.readline()
                    break
                body += await reader.readexactly(size)
                await reader.readline()
        self.received.append(Received(method, target.encode("latin-1"), headers, body))
        path = target.split("?", 1)[0]
        return await self._respond(path.removeprefix("/b"), method, writer)

    async def _respond(self, path: str, method: str, writer: asyncio.StreamWriter) -> bool:
        if path.startswith("/delay/"):
            _, _, ms, rest = path.split("/", 3)
            await asyncio.sleep(int(ms) / 1000)
            path = "/" + rest
        if path.startswith(("/json/", "/with/")):
            return await self._json(path, method, writer)
        if path == "/reset":
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
            return False
        if path == "/hang":
            await asyncio.sleep(3600)
            return False
        if path == "/slow":
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n"
                         b"transfer-encoding: chunked\r\n\r\n5\r\nfirst\r\n")
            await writer.drain()
            self.first_sent.set()
            await asyncio.get_running_loop().run_in_executor(None, self.release.wait, 10)
            writer.write(b"4\r\nlast\r\n0\r\n\r\n")
            await writer.drain()
            self.last_sent.set()
            return True
        if path.startswith("/big/"):
            size = int(path.rsplit("/", 1)[1])
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\n"
                         b"content-length: %d\r\n\r\n" % size)
            left = size
            try:
                while left:
                    chunk = PATTERN[: min(left, len(PATTERN))]
                    writer.write(chunk)
                    await writer.drain()
                    left -= len(chunk)
            except ConnectionError:
                self.big_cut.set()
                raise
            return True
        status = 200
        extra = b""
        if path.startswith("/status/"):
            status = int(path.rsplit("/", 1)[1])
        if path.startswith("/retry-after/"):
            status = 429
            value = unquote(path.split("/")[2])
            extra = b"" if value == "none" else b"retry-after: %s\r\n" % value.encode()
        if path == "/cookie":
            extra = (b"set-cookie: session=abc; Path=/\r\nx-api-key: leaked-api\r\n"
                     b"x-secret-key: leaked-secret\r\nx-tenant-id: leaked-tenant\r\n"
                     b"x-marketplace-key: leaked-mkt\r\nconnection: x-hop\r\nx-hop: 1\r\n"
                     b"access-control-allow-origin: *\r\nx-upstream: kept\r\n")
        if path == "/echo-key":
            key = (self.received[-1].header("x-api-key") or "").encode("latin-1")
            extra = (b"x-debug-auth: key=" + key + b"\r\nx-echo: " + key
                     + b"\r\nx-upstream: kept\r\n")
        if status in (204, 304):  # no body, by definition
            writer.write(b"HTTP/1.1 %d X\r\n\r\n" % status)
            await writer.drain()
            return True
        body = json.dumps({"status_code": status, "path": path, "method": method}).encode()
        writer.write(b"HTTP/1.1 %d X\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
                     % (status, len(body)) + extra + b"\r\n" + (b"" if method == "HEAD" else body))
        await writer.drain()
        return True

    async def _json(self, path: str, method: str, writer: asyncio.StreamWriter) -> bool:
        failing = self.failing
        if failing == "reset":
            return await self._respond("/reset", method, writer)
        if failing == "hang":
            return await self._respond("/hang", method, writer)
        extra = b""
        if path.startswith("/with/"):
            _, _, name, value, _ = path.split("/", 4)
            extra = b"%s: %s\r\n" % (unquote(name).encode(), unquote(value).encode())
        status = 503 if failing == "503" else 200
        n = sum(1 for r in list(self.received)
                if r.target.decode("latin-1").split("?", 1)[0].endswith(path))
        body = json.dumps({"path": path, "n": n, "generation": self.generation}).encode()
        writer.write(b"HTTP/1.1 %d X\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
                     % (status, len(body)) + extra + b"\r\n" + (b"" if method == "HEAD" else body))
        await writer.drain()
        return True
