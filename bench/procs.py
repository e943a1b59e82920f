"""Process trees the benchmark starts: pinned to a core, watched, measured, stopped.

Every process is started under `taskset` in its own session and remembered with
its descendants (a gunicorn or granian master forks its worker), so that all of
them are stopped by PID at the end, also on failure or Ctrl-C, and nothing
else on this shared machine is touched. RSS is read from /proc. Standard
library only.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path


def descendants(pid: int) -> list[int]:
    """All live descendants of pid (from /proc), children first."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                stat = fh.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out: list[int] = []
    todo = list(children.get(pid, []))
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def tail(path: Path, n: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    logfile: Path
    cpu: str
    known: set[int] = field(default_factory=set)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def exited(self) -> str | None:
        """None while running; else what to say about it, with its log's tail."""
        if self.popen.poll() is None:
            return None
        return f"{self.name} exited ({self.popen.returncode}); log:\n{tail(self.logfile)}"

    def remember_children(self) -> None:
        self.known.update(descendants(self.pid))

    def leaf_pids(self) -> list[int]:
        """Processes of this tree without children (the gunicorn worker)."""
        tree = [self.pid, *descendants(self.pid)]
        return [p for p in tree if not descendants(p)]

    def worker(self) -> tuple[int, int]:
        """(pid, RSS in KiB) of the tree's largest leaf: the worker serving requests."""
        pid = max(self.leaf_pids(), key=rss_kib)
        return pid, rss_kib(pid)

    def check_pinned(self) -> None:
        """Every process of the tree runs on this one's core only, or the numbers lie."""
        want = {int(self.cpu)}
        for pid in [self.pid, *descendants(self.pid)]:
            got = os.sched_getaffinity(pid)
            if got != want:
                raise RuntimeError(f"{self.name} pid {pid} affinity {got}, want {want}")


class Procs:
    """Every process the benchmark starts; stopped by PID, newest first."""

    def __init__(self) -> None:
        self.procs: list[Proc] = []
        self.extra_pids: list[int] = []  # e.g. a redis-server we had to start

    def start(self, name: str, argv: list[str], *, cpu: str, env: dict[str, str] | None = None,
              logdir: Path, cwd: Path | None = None) -> Proc:
        logfile = logdir / f"{name}.log"
        full_env = dict(os.environ)
        if env:
            full_env.update(env)
        with open(logfile, "wb") as fh:
            popen = subprocess.Popen(
                ["taskset", "-c", cpu, *argv], stdout=fh, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, env=full_env, cwd=cwd, start_new_session=True,
            )
        proc = Proc(name, popen, logfile, cpu)
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            self._stop(proc)
        self.procs.clear()
        for pid in self.extra_pids:
            _signal(pid, signal.SIGTERM)
            _wait_gone([pid], 10)
            _signal(pid, signal.SIGKILL)
        self.extra_pids.clear()

    @staticmethod
    def _stop(proc: Proc) -> None:
        if proc.popen.poll() is None:
            proc.remember_children()
        pids = [proc.pid, *sorted(proc.known)]
        _signal(proc.pid, signal.SIGTERM)
        try:
            proc.popen.wait(timeout=15)
        except subprocess.TimeoutExpired:
            _signal(proc.pid, signal.SIGKILL)
            proc.popen.wait(timeout=5)
        left = [p for p in pids[1:] if alive(p)]
        if left and not _wait_gone(left, 5):
            for p in left:
                _signal(p, signal.SIGKILL)
            _wait_gone(left, 5)


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def _wait_gone(pids: list[int], timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if not any(alive(p) for p in pids):
            return True
        time.sleep(0.05)
    return not any(alive(p) for p in pids)


class RssSampler:
    """Samples workers' RSS every 50 ms in a thread; keeps the peak per name."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.peak = {name: 0 for name in pids}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            for name, pid in self.pids.items():
                with contextlib.suppress(OSError):
                    self.peak[name] = max(self.peak[name], rss_kib(pid))

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
