"""JSON logs: one access line per request, and redaction of every line.

Redaction is by construction first: the access line is built from a fixed
set of fields and never receives the body, the query string, a header, a token
or a credential. Then, as a second net, the formatter masks email-like and
phone-like text and the configured secret values in every line it writes,
and writes an exception as its type and message only, never a traceback.
"""

from __future__ import annotations

import json
import logging
import re
import time
from typing import Any

_EMAIL = re.compile(r"[\w.!#$%&'*+=?^`{|}~-]+@[\w-]+(?:\.[\w-]+)+")
# Runs of 8 to 15 digits with phone punctuation, not touching letters, dots or
# colons (so addresses, ports and versions stay), and not an ISO date.
_PHONE = re.compile(r"(?<![\w.:])\+?\(?\d[\d\s()-]{6,}\d(?![\w.:])")
# The dotted North American style, 555.010.0000 or +1.555.010.0000: its last
# group of four digits sets it apart from an IPv4 address.
_DOTTED_PHONE = re.compile(r"(?<![\w.])(?:\+?\d{1,3}\.)?\d{3}\.\d{3}\.\d{4}(?![\w.])")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# Shorter values are not hidden: replacing a one-letter "key" would garble every
# line, and a real Reusely key is far longer.
MIN_SECRET_LENGTH = 6
ACCESS_FIELDS = ("request_id", "client", "route", "method", "path", "status", "duration_ms",
                 "upstream_status", "limited")


def mask(text: str) -> str:
    """Email-like and phone-like parts replaced by markers."""
    if "@" in text:
        text = _EMAIL.sub("[email]", text)
    return _PHONE.sub(_phone, _DOTTED_PHONE.sub("[phone]", text))


def _phone(match: re.Match[str]) -> str:
    found = match.group(0)
    digits = sum(c.isdigit() for c in found)
    return "[phone]" if 8 <= digits <= 15 and not _DATE.match(found) else found


class JsonFormatter(logging.Formatter):
    """One JSON object per line; masks emails, phones and known secret values."""

    def __init__(self, secrets: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.secrets = tuple(s for s in secrets if len(s) >= MIN_SECRET_LENGTH)

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        access = getattr(record, "access", None)
        if isinstance(access, dict):
            out.update({k: self._hide(v) if isinstance(v, str) else v
                        for k, v in access.items()})
            out["path"] = mask(self._hide(str(access.get("path", ""))))
        else:
            out["message"] = mask(self._hide(record.getMessage()))
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            out["error"] = mask(self._hide(f"{type(exc).__name__}: {exc}"))
        line = json.dumps(out, separators=(",", ":"), default=str)
        return self._hide(line)

    def _hide(self, text: str) -> str:
        """Secret values replaced; done before JSON escaping, which would disguise them."""
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, "[secret]")
        return text


class AccessLog:
    def __init__(self, logger: logging.Logger | None = None) -> None:
        self._logger = logger or logging.getLogger("gateway.access")

    def record(self, fields: dict[str, Any]) -> None:
        if self._logger.isEnabledFor(logging.INFO):
            self._logger.info("request", extra={"access": fields})


def logging_config(level: str, secrets: tuple[str, ...] = ()) -> dict[str, Any]:
    """The one dictConfig: JSON lines on stdout for our loggers, gunicorn's and uvicorn's."""
    lvl = level.upper()
    handler = {"class": "logging.StreamHandler", "formatter": "json",
               "stream": "ext://sys.stdout"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter, "secrets": secrets}},
        "handlers": {"stdout": handler},
        "root": {"level": lvl, "handlers": ["stdout"]},
        "loggers": {
            "gateway.access": {"level": "INFO", "handlers": ["stdout"], "propagate": False},
            "gunicorn.error": {"level": lvl, "handlers": ["stdout"], "propagate": False},
            "gunicorn.access": {"level": "CRITICAL", "handlers": [], "propagate": False},
            "uvicorn.error": {"level": lvl, "handlers": ["stdout"], "propagate": False},
            "uvicorn.access": {"level": "CRITICAL", "handlers": [], "propagate": False},
            "httpx": {"level": "WARNING"},
            "httpcore": {"level": "WARNING"},
        },
    }


def hide_in_logs(secrets: tuple[str, ...]) -> None:
    """Tell every JSON formatter already installed the secret values it must never write."""
    kept = tuple(s for s in secrets if len(s) >= MIN_SECRET_LENGTH)
    loggers = [logging.getLogger(), *(logging.getLogger(n) for n in
               ("gateway.access", "gunicorn.error", "uvicorn.error"))]
    for logger in loggers:
        for handler in logger.handlers:
            if isinstance(handler.formatter, JsonFormatter):
                handler.formatter.secrets = kept
