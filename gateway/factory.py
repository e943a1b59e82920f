"""The gunicorn worker's application factory: `gateway.factory:create_app_from_env()`.

`serve` validates the policy in the master and passes its text to the workers
in GATEWAY_POLICY_TEXT (after a SIGHUP, the last good one), so a worker never
boots on a bad file; each worker builds its settings from that environment,
has the app tell the log formatters which secret values to hide (again after
a credential file changes), and builds the app
with the metrics of prometheus_client's multiprocess mode, written in batches.
"""

from __future__ import annotations

import logging
import os

from gateway.app import Gateway, create_app
from gateway.environment import load_settings
from gateway.errors import ConfigError
from gateway.logsetup import hide_in_logs
from gateway.metrics import FLUSH_SECONDS, multiprocess_registry

log = logging.getLogger("gateway")


def create_app_from_env() -> Gateway:
    """The app of one gunicorn worker, from the environment `serve` prepared."""
    environ = os.environ
    text = environ.get("GATEWAY_POLICY_TEXT")
    try:
        settings = load_settings(environ, text=text,
                                 source=environ.get("GATEWAY_POLICY_SOURCE"))
    except ConfigError as exc:
        for problem in exc.problems:
            log.error("configuration: %s", problem)
        raise SystemExit(2) from None
    multiprocess = bool(environ.get("PROMETHEUS_MULTIPROC_DIR"))
    try:
        return create_app(settings, registry=multiprocess_registry() if multiprocess else None,
                          metrics_flush_seconds=FLUSH_SECONDS if multiprocess else None,
                          hide_in_logs=hide_in_logs)
    except Exception as exc:  # noqa: BLE001 - reported without a traceback
        log.error("the gateway cannot start: %s: %s", type(exc).__name__, exc)
        raise SystemExit(3) from None
