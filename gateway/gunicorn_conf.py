"""gunicorn settings and hooks for `reusely-gateway serve`.

This is gunicorn's configuration file (`-c python:gateway.gunicorn_conf`),
read once by the gunicorn master. Per-run values (bind, workers, level) come
on gunicorn's command line from `serve`; the hooks below read the environment
`serve` prepared only when gunicorn calls them.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from gateway import __version__
from gateway.environment import DEFAULTS
from gateway.logsetup import logging_config

worker_class = "gateway.worker.GatewayWorker"
graceful_timeout = 30
timeout = 30
# Seconds a kept-alive connection may stay silent after a response. A head
# started but not finished is closed by the worker's own 10 s head deadline
# (gateway/worker.py), which also covers a fresh connection; keepalive above
# that deadline would have no effect.
keepalive = 5
accesslog = None  # the gateway writes one access line per request itself
control_socket_disable = True  # no ~/.gunicorn socket: HOME may be read-only
logconfig_dict = logging_config(os.environ.get("GATEWAY_LOG_LEVEL")
                                or DEFAULTS["GATEWAY_LOG_LEVEL"])

log = logging.getLogger("gateway")


def when_ready(server: Any) -> None:
    """Start the metrics listener in the master: it sums every worker's files."""
    from prometheus_client import CollectorRegistry, Gauge

    from gateway.environment import parse_bind
    from gateway.metrics import multiprocess_registry
    from gateway.metricsserver import start_metrics_server

    bind = parse_bind(os.environ.get("GATEWAY_METRICS_BIND") or DEFAULTS["GATEWAY_METRICS_BIND"],
                      "GATEWAY_METRICS_BIND")
    Gauge("gateway_build_info", "Always 1; the version label says which build runs.",
          ["version"], registry=CollectorRegistry(),
          multiprocess_mode="max").labels(version=__version__).set(1)
    server.metrics_server = start_metrics_server(bind, multiprocess_registry)
    log.info("metrics listening on %s:%d", *bind)


def on_reload(server: Any) -> None:
    """SIGHUP: validate the policy before new workers start; keep the old one if bad."""
    from gateway.environment import load_settings, policy_text
    from gateway.errors import ConfigError

    try:
        text, source = policy_text(os.environ)
        load_settings(os.environ, text=text, source=source)
    except ConfigError as exc:
        for problem in exc.problems:
            log.error("reload refused, keeping the running policy: %s", problem)
        return
    os.environ["GATEWAY_POLICY_TEXT"] = text
    os.environ["GATEWAY_POLICY_SOURCE"] = source
    log.info("reloading policy from %s", source)


def child_exit(server: Any, worker: Any) -> None:
    from gateway.metrics import mark_process_dead

    mark_process_dead(worker.pid)
