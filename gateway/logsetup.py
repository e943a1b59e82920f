"""The logging setup: JSON lines on stdout, with redaction of every line.

Redaction is by construction first: the access line (`accesslog.py`) is
built from a fixed set of fields and never receives the body, the query
string, a header, a token or a credential. Then, as a second net, the
formatter masks email-like and phone-like text and the configured secret
values in every line it writes (`redact.py`), and writes an exception as its
type and message only, never a traceback.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from gateway.errors import ClientDisconnected, GatewayError
from gateway.redact import hide, mask, mask_path, secrets_to_hide


class JsonFormatter(logging.Formatter):
    """One JSON object per line; masks emails, phones and known secret values."""

    def __init__(self, secrets: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.secrets = secrets_to_hide(secrets)

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
            out["path"] = mask_path(self._hide(str(access.get("path", ""))))
        else:
            out["message"] = mask(self._hide(record.getMessage()))
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            out["error"] = mask(self._hide(f"{type(exc).__name__}: {exc}"))
        line = json.dumps(out, separators=(",", ":"), default=str)
        return self._hide(line)

    def _hide(self, text: str) -> str:
        """Secret values replaced; done before JSON escaping, which would disguise them."""
        return hide(text, self.secrets)


class CutShort(logging.Filter):
    """uvicorn's "Exception in ASGI application" for an answer the gateway cut short.

    Once an answer has started, the gateway ends a failed one by raising (the
    only way an ASGI application can make the server drop the connection): the
    caller stopped reading, or Reusely broke off mid-answer. That is no crash of
    the gateway, and any caller can cause the first: one line at info (the
    caller) or warning (Reusely), without a traceback, instead of an error.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, GatewayError):
            level = logging.INFO if isinstance(exc, ClientDisconnected) else logging.WARNING
            record.levelno, record.levelname = level, logging.getLevelName(level)
            record.msg, record.args, record.exc_info = (
                "an answer was cut short after it started: %s", (exc.code,), None)
        return True


def logging_config(level: str, secrets: tuple[str, ...] = ()) -> dict[str, Any]:
    """The one dictConfig: JSON lines on stdout for our loggers, gunicorn's and uvicorn's."""
    lvl = level.upper()
    handler = {"class": "logging.StreamHandler", "formatter": "json",
               "stream": "ext://sys.stdout"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter, "secrets": secrets}},
        "filters": {"cut_short": {"()": CutShort}},
        "handlers": {"stdout": handler},
        "root": {"level": lvl, "handlers": ["stdout"]},
        "loggers": {
            "gateway.access": {"level": "INFO", "handlers": ["stdout"], "propagate": False},
            "gunicorn.error": {"level": lvl, "handlers": ["stdout"], "propagate": False},
            "gunicorn.access": {"level": "CRITICAL", "handlers": [], "propagate": False},
            "uvicorn.error": {"level": lvl, "handlers": ["stdout"], "propagate": False,
                              "filters": ["cut_short"]},
            "uvicorn.access": {"level": "CRITICAL", "handlers": [], "propagate": False},
            "httpx": {"level": "WARNING"},
            "httpcore": {"level": "WARNING"},
            "watchfiles": {"level": "WARNING"},  # "1 change detected" on every credential swap
        },
    }


def hide_in_logs(secrets: tuple[str, ...]) -> None:
    """Tell every JSON formatter already installed the secret values it must never write."""
    kept = secrets_to_hide(secrets)
    loggers = [logging.getLogger(), *(logging.getLogger(n) for n in
               ("gateway.access", "gunicorn.error", "uvicorn.error"))]
    for logger in loggers:
        for handler in logger.handlers:
            if isinstance(handler.formatter, JsonFormatter):
                handler.formatter.secrets = kept
