"""Credentials as Kubernetes writes them, and an upstream that plays Reusely checking a key.

`SecretVolume` lays out a directory the way the kubelet's atomic writer does
for a Secret volume: each key a symlink through `..data`, `..data` a symlink to
a timestamped directory holding the files, and an update written into a new
timestamped directory, pointed at by a temporary symlink renamed over `..data`
in one step, the old directory deleted after.

`KeyedUpstream` is the recording upstream (`tests/support/upstream.py`) with
Reusely's key check: while `accepted` is set, a request whose `x-api-key` is
not in it gets Reusely's 401. It notes, per request, when it arrived, the key
it carried, the answer, and which process of the gateway sent it (found from
the connection's port in /proc, so a test can tell gunicorn's workers apart).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote

from tests.support.http import sha
from tests.support.upstream import Upstream

UNAUTHENTICATED = json.dumps({"status_code": 401, "message": "Unauthenticated."}).encode()


def fp(value: str) -> str:
    """A credential's fingerprint as the gateway logs it: the first 8 hex digits of SHA-256."""
    return sha(value)[:8]


class SecretVolume:
    """A Secret volume's directory, updated the kubelet's way."""

    def __init__(self, root: Path, values: dict[str, str]) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self._generation = 0
        self.write(values)

    def path(self, key: str) -> str:
        return str(self.root / key)

    def write(self, values: dict[str, str]) -> float:
        """Publish a new version of every key; returns when `..data` was swapped (monotonic)."""
        self._generation += 1
        stamp = f"..{time.strftime('%Y_%m_%d_%H_%M_%S')}.{self._generation:09d}"
        fresh = self.root / stamp
        fresh.mkdir()
        for key, value in values.items():
            (fresh / key).write_text(value)
        data = self.root / "..data"
        old = os.readlink(data) if data.is_symlink() else None
        tmp = self.root / "..data_tmp"
        tmp.symlink_to(stamp)
        os.rename(tmp, data)  # the one atomic step
        swapped = time.monotonic()
        for key in values:  # a key new to the Secret gets its symlink (old ones stay)
            if not (self.root / key).is_symlink():
                (self.root / key).symlink_to(f"..data/{key}")
        if old:
            shutil.rmtree(self.root / old)
        return swapped


@dataclass
class Seen:
    at: float  # time.monotonic() when the request arrived
    port: int  # the gateway's side of the connection
    pid: int | None  # the gateway process that owns that connection
    method: str
    path: str
    key: str | None
    status: int


@dataclass
class KeyedUpstream(Upstream):
    accepted: set[str] | None = None  # None: every key is fine
    owners: Callable[[int], int | None] = field(default=lambda port: None)
    seen: list[Seen] = field(default_factory=list)
    hold: threading.Event = field(default_factory=threading.Event)
    _pids: dict[int, int | None] = field(default_factory=dict)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        port = writer.get_extra_info("peername")[1]
        self._pids[port] = self.owners(port)
        await super()._handle(reader, writer)

    async def _respond(self, path: str, method: str, writer: asyncio.StreamWriter) -> bool:
        request = self.received[-1]  # this request's: nothing awaited since it was added
        key = request.header("x-api-key")
        port = writer.get_extra_info("peername")[1]
        if path == "/hold":  # answers once the test sets `hold`, by the keys accepted then
            await asyncio.get_running_loop().run_in_executor(None, self.hold.wait, 10)
        refused = self.accepted is not None and key not in self.accepted
        self.seen.append(Seen(time.monotonic(), port, self._pids.get(port), method, path, key,
                              401 if refused else 200))
        if refused:
            writer.write(b"HTTP/1.1 401 Unauthorized\r\ncontent-type: application/json\r\n"
                         b"www-authenticate: key\r\ncontent-length: %d\r\n\r\n"
                         % len(UNAUTHENTICATED)
                         + (b"" if method == "HEAD" else UNAUTHENTICATED))
            await writer.drain()
            return True
        if path.startswith("/echo-value/"):  # a header holding any value the test names
            value = unquote(path.removeprefix("/echo-value/")).encode("latin-1")
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nx-echo: " + value
                         + b"\r\nx-upstream: kept\r\n\r\nok")
            await writer.drain()
            return True
        return await super()._respond(path, method, writer)


def connection_owner(parent: int) -> Callable[[int], int | None]:
    """A function finding which child process of `parent` holds the loopback TCP
    connection whose local port is `port` (read from /proc, Linux only)."""

    def owner(port: int) -> int | None:
        inodes = set()
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            with open(table) as lines:
                next(lines)
                for line in lines:
                    parts = line.split()
                    if int(parts[1].rsplit(":", 1)[1], 16) == port:
                        inodes.add(f"socket:[{parts[9]}]")
        for pid in children(parent):
            try:
                fds = os.listdir(f"/proc/{pid}/fd")
            except OSError:
                continue
            for fd in fds:
                try:
                    if os.readlink(f"/proc/{pid}/fd/{fd}") in inodes:
                        return pid
                except OSError:
                    continue
        return None

    return owner


def children(parent: int) -> list[int]:
    """The live child processes of `parent` (gunicorn's workers, for its master)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == parent:
            found.append(int(entry))
    return found
