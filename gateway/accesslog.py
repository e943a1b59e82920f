"""The access line: one per request, from a fixed set of fields, written without `logging`.

The line never receives the body, the query string, a header, a token or a
credential; its path is masked (emails, phones) and secret values hidden,
exactly as the JSON formatter (`logsetup.py`, `redact.py`) treats every other
line -- byte for byte the line that formatter would write, which a test pins.

Going through the `logging` module cost 35-40 us of CPU per request (a
LogRecord, the formatter's dict and `json.dumps`, a lock and a write per
line). Here the line is built directly from its fixed fields, and the lines
of one event-loop turn go out in one write to the same stream the
`gateway.access` logger's handler writes to. The secret values hidden are the
formatter's own, read at each write, so values added later (a rotated
credential) are hidden here too. Without a JSON handler (an application
embedded in a test server), lines go through the logger as before.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import IO, Any

from gateway.logsetup import JsonFormatter
from gateway.redact import hide, mask_path

ACCESS_FIELDS = ("request_id", "client", "route", "method", "path", "status", "duration_ms",
                 "upstream_status", "limited")


def _stream_of(logger: logging.Logger) -> tuple[IO[str], JsonFormatter] | None:
    for handler in logger.handlers:
        stream = getattr(handler, "stream", None)
        if isinstance(handler.formatter, JsonFormatter) and stream is not None:
            return stream, handler.formatter
    return None


class AccessLog:
    def __init__(self, logger: logging.Logger | None = None) -> None:
        self._logger = logger or logging.getLogger("gateway.access")
        self._target = _stream_of(self._logger)
        self._pending: list[str] = []
        self._second = -1
        self._stamp = ""
        # Rendered values (route, client, method, path: few distinct ones) while the
        # secret values stay the same object; bounded, so unique paths cost no memory.
        self._rendered: dict[tuple[str, bool], str] = {}
        self._rendered_for: tuple[str, ...] | None = None

    def record(self, request_id: str, client: str, route: str, method: str, path: str,
               status: int, duration_ms: float, upstream_status: int | None,
               limited: bool) -> None:
        if not self._logger.isEnabledFor(logging.INFO):
            return
        if self._target is None:
            fields = dict(zip(ACCESS_FIELDS, (request_id, client, route, method, path, status,
                                               duration_ms, upstream_status, limited),
                              strict=True))
            self._logger.info("request", extra={"access": fields})
            return
        secrets = self._target[1].secrets
        if secrets is not self._rendered_for:
            self._rendered.clear()
            self._rendered_for = secrets
        now = time.time()
        line = (f'{{"time":{self._time(now)},"level":"info","logger":"gateway.access",'
                f'"request_id":{_text(request_id, secrets)},"client":{self._text(client)},'
                f'"route":{self._text(route)},"method":{self._text(method)},'
                f'"path":{self._text(path, masked=True)},"status":{status},'
                f'"duration_ms":{duration_ms!r},'
                f'"upstream_status":{"null" if upstream_status is None else upstream_status},'
                f'"limited":{"true" if limited else "false"}}}')
        if secrets:
            line = hide(line, secrets)
        if not self._pending:
            try:
                asyncio.get_running_loop().call_soon(self.flush)
            except RuntimeError:  # no loop: write at once
                self._pending.append(line)
                self.flush()
                return
        self._pending.append(line)

    def _text(self, value: str, *, masked: bool = False) -> str:
        """A JSON string of `value`, secrets hidden (and masked, for the path)."""
        found = self._rendered.get((value, masked))
        if found is None:
            secrets = self._rendered_for or ()
            found = json.dumps(mask_path(hide(value, secrets)) if masked
                               else hide(value, secrets))
            if len(self._rendered) >= 4096:
                self._rendered.clear()
            self._rendered[(value, masked)] = found
        return found

    def _time(self, now: float) -> str:
        second = int(now)
        if second != self._second:
            self._second = second
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f'"{self._stamp}.{int((now - second) * 1000):03d}Z"'

    def flush(self) -> None:
        """Write what this loop turn logged, in one write."""
        if not self._pending or self._target is None:
            return
        text = "\n".join(self._pending) + "\n"
        self._pending.clear()
        stream = self._target[0]
        try:
            stream.write(text)
            stream.flush()
        except (OSError, ValueError):
            pass  # stdout closed or full: a log line must never fail a request


def _text(value: str, secrets: Any) -> str:
    return json.dumps(hide(value, secrets) if secrets else value)
