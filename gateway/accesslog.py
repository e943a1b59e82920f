"""The access line: one per request, from a fixed set of fields.

The line never receives the body, the query string, a header, a token or a
credential; its path is masked (emails, phones) and secret values hidden by
the JSON formatter (`logsetup.py`, `redact.py`) like every other line.
"""

from __future__ import annotations

import logging
from typing import Any

ACCESS_FIELDS = ("request_id", "client", "route", "method", "path", "status", "duration_ms",
                 "upstream_status", "limited")


class AccessLog:
    def __init__(self, logger: logging.Logger | None = None) -> None:
        self._logger = logger or logging.getLogger("gateway.access")

    def record(self, fields: dict[str, Any]) -> None:
        if self._logger.isEnabledFor(logging.INFO):
            self._logger.info("request", extra={"access": fields})
