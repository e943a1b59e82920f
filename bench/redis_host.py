"""The Redis the gateways' limiter uses during a run (database 15, 127.0.0.1:6379).

A Redis already running is a shared service: it is pinned to the load core for
the run, so that it takes no CPU from the proxy under test, and its affinity is
restored at the end. Without one, the bench starts its own (no persistence) and
stops it. Only the bench's own limit keys are removed, before and after.
Standard library only; talks through redis-cli.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import time
from pathlib import Path

from procs import Procs
from settings import HOST, LOAD_CPU, REDIS_DB, log

# The rates only the bench policies use (policy.yaml): their keys are the bench's own.
BENCH_KEY_PATTERNS = ("LIMITS:*/1000000/1/hour", "LIMITS:*/100000000/1/hour")


def _cli(*args: str) -> str:
    return subprocess.run(["redis-cli", "-p", "6379", *args], capture_output=True,
                          text=True).stdout


def _server_pid() -> int | None:
    m = re.search(r"process_id:(\d+)", _cli("info", "server"))
    return int(m.group(1)) if m else None


class BenchRedis:
    def __init__(self, procs: Procs, tmp: Path, notes: list[str], db: str = REDIS_DB) -> None:
        self.procs = procs
        self.db = db  # bench/history.py uses its own (7), so it never meets a running make bench
        self.tmp = tmp
        self.notes = notes
        self.affinity: tuple[int, set[int]] | None = None
        self.used = False

    def prepare(self) -> None:
        self.used = True
        self._ensure()
        self.clean_bench_keys()

    def release(self) -> None:
        if self.used:
            self.clean_bench_keys()
        if self.affinity is not None:
            pid, cpus = self.affinity
            with contextlib.suppress(OSError):
                os.sched_setaffinity(pid, cpus)
            self.affinity = None

    def clean_bench_keys(self) -> None:
        """Drop the bench's own limit keys in its database (rates only bench policies use).

        Moving windows keep one entry per request for an hour: without this, each
        run's `ip` list grows on the last one's and the limiter gets slower."""
        keys = [k for pattern in BENCH_KEY_PATTERNS
                for k in _cli("-n", self.db, "--scan", "--pattern", pattern).splitlines()
                if k.strip()]
        for i in range(0, len(keys), 500):
            _cli("-n", self.db, "unlink", *keys[i:i + 500])

    def _ensure(self) -> None:
        if _cli("ping").strip() == "PONG":
            pid = _server_pid()
            if pid and os.sched_getaffinity(pid) == {int(LOAD_CPU)}:
                # Another run pinned it and restores it when it ends: leave it to that run.
                self.notes.append("Redis was already running, already pinned to core 1.")
            elif pid:
                self.affinity = (pid, os.sched_getaffinity(pid))
                os.sched_setaffinity(pid, {int(LOAD_CPU)})
                self.notes.append(
                    "Redis was already running; pinned to core 1 for the run, then restored.")
            return
        log("starting redis-server on 127.0.0.1:6379 (core 1)")
        subprocess.run(["taskset", "-c", LOAD_CPU, "redis-server", "--daemonize", "yes",
                        "--bind", HOST, "--port", "6379", "--save", "", "--appendonly", "no",
                        "--pidfile", str(self.tmp / "redis.pid")], check=True)
        for _ in range(50):
            if _cli("ping").strip() == "PONG":
                break
            time.sleep(0.1)
        pid = _server_pid()
        if pid:
            self.procs.extra_pids.append(pid)
        self.notes.append("Redis started by the bench on core 1, stopped at the end.")
