"""The gunicorn worker: uvicorn (uvloop + httptools when installed) tuned for a proxy."""

from __future__ import annotations

from typing import Any

from uvicorn_worker import UvicornWorker


class GatewayWorker(UvicornWorker):
    CONFIG_KWARGS: dict[str, Any] = {  # noqa: RUF012 - the base class's own pattern
        "loop": "auto",
        "http": "auto",
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
