"""What a worker says as it starts, and the secret values its logs must hide.

The start-up lines report the same facts `check-config` prints, worked out
once in `load_settings`: the settings' warnings, the routes enabled, which
credentials are set (never their values: a fingerprint of each, the first 8
hex digits of its SHA-256, so an operator can tell which key is live).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from gateway import __version__
from gateway.credentials import CredentialSet, fingerprints, status_of
from gateway.settings import Settings

log = logging.getLogger("gateway")


def report(settings: Settings, credentials: CredentialSet) -> None:
    for warning in settings.warnings:
        log.warning("%s", warning)
    policy = settings.policy
    enabled = [r.name for r in policy.routes if r.name not in settings.disabled_routes]
    log.info("routes enabled: %s", ", ".join(enabled) or "none")
    log.info("gateway %s ready: %d routes, %d clients, credentials %s, upstream %s",
             __version__, len(policy.routes), len(policy.clients),
             ", ".join(f"{k} {v}" for k, v in status_of(settings.credentials).items()),
             settings.base_url_display)
    for name, missing in ((n, credentials.missing(n)) for n in enabled):
        if missing:  # set, yet unusable: a value no HTTP header can carry
            log.error("route %s is disabled: %s holds a line break or control character",
                      name, ", ".join(missing))
    held = fingerprints(settings.credentials)
    if held:
        log.info("credential fingerprints (first 8 hex digits of SHA-256): %s",
                 ", ".join(f"{k} {v}" for k, v in held.items()))


class LogSecrets:
    """Tells the logs every credential value held since start-up, and the limit key secret.

    Called at start and again whenever a credential file brings a new value.
    """

    def __init__(self, settings: Settings, credentials: CredentialSet,
                 hide_in_logs: Callable[[tuple[str, ...]], None] | None) -> None:
        self._settings, self._credentials, self._hide = settings, credentials, hide_in_logs

    def __call__(self) -> None:
        if self._hide is None:
            return
        settings = self._settings
        secrets = (*(s.reveal() for s in settings.credentials.values() if s is not None),
                   *(v.decode("latin-1") for v in self._credentials.seen))
        if settings.limit_key_secret is not None:
            secrets += (settings.limit_key_secret.reveal(),)
        self._hide(secrets)
