"""The cold burst: many callers asking for one answer nobody holds yet, at the same moment.

Each request has its own connection, opened before any is sent, so the
requests reach the gateway together; the upstream logs requests under
settings.BURST_PATH only, and the lines carrying this burst's tag are the
requests that reached it. Standard library only.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from settings import BURST_PATH, HOST


async def _connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.wait_for(asyncio.open_connection(HOST, port), 10)


async def _ask(conn: tuple[asyncio.StreamReader, asyncio.StreamWriter], request: bytes) -> int:
    reader, writer = conn
    try:
        writer.write(request)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 30)  # Connection: close
        return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else 0
    except (OSError, TimeoutError, ValueError, IndexError):
        return 0
    finally:
        writer.close()


async def _burst(port: int, target: str, size: int) -> tuple[list[int], float]:
    opened = await asyncio.gather(*(_connect(port) for _ in range(size)),
                                  return_exceptions=True)
    conns = [c for c in opened if not isinstance(c, BaseException)]
    if len(conns) < size:  # close what did open, then say why
        for _, writer in conns:
            writer.close()
        raise next(c for c in opened if isinstance(c, BaseException))
    request = f"GET {target} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n".encode()
    started = time.monotonic()
    statuses = await asyncio.gather(*(_ask(c, request) for c in conns))
    return list(statuses), time.monotonic() - started


def burst(port: int, tag: str, size: int, log_file: Path) -> dict[str, Any]:
    """One burst of `size` GETs of a target of its own; what came back, what reached upstream."""
    target = f"{BURST_PATH}?burst={tag}"
    statuses, seconds = asyncio.run(_burst(port, target, size))
    reached, deadline = -1, time.monotonic() + 5
    while time.monotonic() < deadline:  # the upstream logs a request after answering it
        time.sleep(0.2)
        text = log_file.read_text() if log_file.exists() else ""
        now = sum(1 for line in text.splitlines() if f"burst={tag} " in line)
        if now == reached:
            break
        reached = now
    return {"sent": size, "ok": statuses.count(200), "reached": reached,
            "seconds": round(seconds, 3)}
