"""Credential files watched: a rewritten `<NAME>_FILE` reaches this worker within seconds.

Kubernetes mounts a Secret as a directory of symlinks, `api-key -> ..data/api-key`
and `..data -> ..2025_05_01_10_00_00.123456789`. The kubelet updates it by
writing a new timestamped directory, pointing a temporary symlink at it,
renaming that over `..data` (one atomic rename) and deleting the old
directory. A watch on the file itself follows the old inode and dies with the
old directory (kubernetes#111947, ingress-nginx#6172). So:

- the watch is on each file's directory as named (neither the file nor its
  resolved target), not recursive: the rename of `..data`, a file rewritten in
  place, or one replaced by a rename all show up there;
- after every event each file is looked at again by the path it was given, so
  the kernel resolves the symlinks afresh and reads what `..data` points at now;
- a poll every `POLL_SECONDS` looks at each file's identity too (its resolved
  path, inode, size, modification and change times), so a change the watch
  cannot see is still found within seconds: a file that is a symlink into
  another directory, a filesystem without inotify, a watch that failed. A poll
  that finds every identity unchanged reads no file and counts nothing.

The watching is watchfiles (Rust `notify`: inotify on Linux), run in one thread
of its own per worker, which also reads the files: no file is read on the
event loop. Only that thread and `renew` (through `asyncio.to_thread`) look at
the files, one at a time under a lock; requests read the credentials'
immutable table (`credentials.CredentialSet`), which a change replaces whole.

A file re-read after its identity changed counts in
`gateway_credential_reloads_total`: `ok` when it gave a usable value (a new one,
or the one already held, as when a Secret swap changed another key), `error`
when it was empty, unreadable, not UTF-8, or held a character a header cannot
carry. On an error the last good value stays, and an error naming the file
(never the value) is logged once per change. A new value is first added to
what the logs and the response filter hide, then used, then logged by its
fingerprint. A value is never removed: an emptied or deleted file keeps the
last one, so a route, once enabled, stays enabled; a route disabled for a
missing value is enabled when its file gets one.

`GATEWAY_LIMIT_KEY_SECRET_FILE` is looked at only to warn, once per change,
that the new key is not used: the limit key is fixed at start-up, because a
new HMAC key starts every count again, on each replica at another moment.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping

import watchfiles

from gateway.config import Route
from gateway.credentials import CredentialSet, Pairs, fingerprint, header_value
from gateway.headers import CREDENTIAL_NAMES
from gateway.metrics import Metrics
from gateway.settings import CREDENTIAL_ENV, Secret

log = logging.getLogger("gateway.credentials")

POLL_SECONDS = 2.0  # the fallback poll; also how often the watch thread wakes with no event
WATCH_STEP_MS = 100  # watchfiles yields once no new event came for this long
WATCH_DEBOUNCE_MS = 1000  # ... or this long after the first event of a burst
RETRY_WATCH_SECONDS = 60.0  # after the watch itself failed, poll this long, then watch again
MAX_FILE_BYTES = 64 * 1024  # a credential is short; a larger file is an error, not read whole
LIMIT_KEY = "limit_key_secret"
ENV_NAMES = {**CREDENTIAL_ENV, LIMIT_KEY: "GATEWAY_LIMIT_KEY_SECRET"}

Identity = tuple[object, ...]


def identity(path: str) -> Identity:
    """What tells one version of the file from the next, without reading it."""
    try:
        st = os.stat(path)
    except OSError as exc:
        return ("unreadable", exc.errno)
    return (os.path.realpath(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns,
            st.st_ctime_ns)


def read_value(path: str, env: str) -> tuple[str | None, str | None]:
    """(value, None), or (None, why it cannot be used): the why names the file, never a value."""
    where = f"{env}_FILE {path}"
    try:
        with open(path, "rb") as file:
            raw = file.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        return None, f"cannot read {where}: {exc.strerror or type(exc).__name__}"
    if len(raw) > MAX_FILE_BYTES:
        return None, f"{where} is larger than {MAX_FILE_BYTES // 1024} KiB"
    try:
        value = raw.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError:
        return None, f"{where} is not UTF-8 text"
    if not value:
        return None, f"{where} is empty"
    if header_value(value) is None:
        return None, (f"{where} holds a character an HTTP header cannot carry "
                      "(a line break or control character inside the value)")
    return value, None


class CredentialWatcher:
    """Keeps a `CredentialSet` in step with its files; `renew` after Reusely's 401."""

    def __init__(self, credentials: CredentialSet, files: Mapping[str, str], metrics: Metrics,
                 *, poll: float = POLL_SECONDS,
                 on_new_value: Callable[[], None] | None = None) -> None:
        """`files`: credential name (or `limit_key_secret`) -> its `_FILE` path.

        `on_new_value` runs after a new value joined `credentials.seen` and
        before it is used or logged (the logs hide it from then on).
        """
        self._credentials = credentials
        self._files = dict(files)
        self._metrics = metrics
        self._poll = poll
        self._on_new_value = on_new_value
        self._lock = threading.Lock()
        self._identities: dict[str, Identity] = {}
        self._limit_key_print: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if any(name != LIMIT_KEY for name in self._files):
            for result in ("ok", "error"):  # both series exist from the start, at 0
                metrics.credential_reloads.labels(result)

    def watches(self, route: Route) -> bool:
        """Whether any of the route's credentials comes from a file."""
        return any(c in self._files for c in route.credentials)

    # -- the thread ---------------------------------------------------------------

    def start(self) -> None:
        """Begin watching (no thread when no value comes from a file)."""
        if not self._files or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="credential-watch", daemon=True)
        self._thread.start()

    async def aclose(self) -> None:
        self._stop.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 5)

    def _run(self) -> None:
        self.check(first=True)
        problem = ""
        while not self._stop.is_set():
            directories = self._directories()
            try:
                if not directories:
                    raise FileNotFoundError("no directory of a credential file exists")
                for _changes in watchfiles.watch(
                        *directories, watch_filter=None, debounce=WATCH_DEBOUNCE_MS,
                        step=WATCH_STEP_MS, rust_timeout=int(self._poll * 1000),
                        yield_on_timeout=True, stop_event=self._stop, raise_interrupt=False,
                        recursive=False, debug=False):
                    self.check()  # an event, or a timeout: the poll
            except (OSError, RuntimeError) as exc:  # watchfiles' own errors are RuntimeErrors
                if str(exc) != problem:  # said once, not at every retry
                    problem = str(exc)
                    log.warning("cannot watch the credential files' directories (%s); looking "
                                "at the files every %g s instead", problem, self._poll)
                self._poll_for(RETRY_WATCH_SECONDS)

    def _poll_for(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not self._stop.wait(self._poll):
            self.check()

    def _directories(self) -> list[str]:
        found = dict.fromkeys(os.path.dirname(os.path.abspath(p)) for p in self._files.values())
        return [d for d in found if os.path.isdir(d)]

    # -- looking at the files -----------------------------------------------------

    def check(self, *, first: bool = False) -> None:
        """Re-read each file whose identity changed since it was last looked at.

        Blocking: runs in the watch thread, or in a worker thread for `renew`.
        The first look (when the thread starts) counts and logs only a value
        that differs from the one read at start-up.
        """
        with self._lock:
            for name, path in self._files.items():
                now = identity(path)
                if not first and self._identities.get(name) == now:
                    continue
                self._identities[name] = now
                if name == LIMIT_KEY:
                    self._look_at_limit_key(path, first=first)
                else:
                    self._reread(name, path, first=first)

    def _reread(self, name: str, path: str, *, first: bool) -> None:
        value, problem = read_value(path, ENV_NAMES[name])
        if value is None:
            if not first:  # at start-up the problem was reported already
                self._metrics.credential_reloads.labels("error").inc()
                log.error("credential %s: %s; keeping the last good value", name, problem)
            return
        held = self._credentials.value(name)
        if held is not None and held.reveal() == value:
            if not first:
                self._metrics.credential_reloads.labels("ok").inc()
                log.debug("credential %s re-read from %s: unchanged", name, path)
            return
        encoded = header_value(value)
        assert encoded is not None  # read_value checked it
        self._credentials.seen.add(encoded)
        if self._on_new_value is not None:
            self._on_new_value()
        enabled = self._credentials.replace(name, Secret(value))
        self._metrics.credential_reloads.labels("ok").inc()
        was = f" (was {fingerprint(held.reveal())})" if held is not None else ""
        log.info("credential %s reloaded from %s: fingerprint %s%s", name, path,
                 fingerprint(value), was)
        for route in enabled:
            log.info("route %s enabled: its credentials are all set now", route)

    def _look_at_limit_key(self, path: str, *, first: bool) -> None:
        value, _ = read_value(path, ENV_NAMES[LIMIT_KEY])
        seen = fingerprint(value) if value is not None else None
        if first:
            self._limit_key_print = seen
        elif seen != self._limit_key_print:
            self._limit_key_print = seen
            log.warning("GATEWAY_LIMIT_KEY_SECRET_FILE %s changed: the limit key stays the one "
                        "read at start-up until the gateway restarts (a new key starts every "
                        "count again)", path)

    # -- after Reusely's 401 ----------------------------------------------------

    async def renew(self, route: Route, sent: Pairs) -> Pairs | None:
        """The request's headers with the route's current credentials, if those sent are stale.

        The route's files are looked at first (in a worker thread), so a file
        changed a moment ago counts even before the watch thread saw it. None
        when the credentials sent are still the current ones, or none of the
        route's credentials comes from a file.
        """
        if not self.watches(route):
            return None
        await asyncio.to_thread(self.check)
        current = self._credentials.headers_for(route.name)
        if current is None:
            return None
        ours = sorted(p for p in sent if p[0] in CREDENTIAL_NAMES)
        if ours == sorted(current):
            return None
        return [*(p for p in sent if p[0] not in CREDENTIAL_NAMES), *current]
