"""Run the repository's shell scripts (`make run`, `make demo`) as a person would.

Each script starts in a new session, so the test can do what a terminal does
on Ctrl-C: send SIGINT to the whole process group. Ports come from the
environment on free loopback ports; the venv is the one running the tests.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.support.gateway import ROOT, free_port

STRIPPED = ("REUSELY_", "GATEWAY_", "SANDBOX_", "PROMETHEUS_", "DEMO_")


def loopback_bind() -> str:
    return f"127.0.0.1:{free_port()}"


def script_env(**extra: str) -> dict[str, str]:
    """This environment without the caller's gateway settings, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(STRIPPED)}
    env["VENV"] = sys.prefix
    env.update(extra)
    return env


def group_members(pgid: int) -> list[int]:
    """Live processes in process group `pgid` (zombies included until reaped)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry.name))
    return members


def command_line(pid: int) -> str:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


class ScriptRun:
    """`bash scripts/NAME.sh` in its own session, its output in a file."""

    def __init__(self, name: str, env: dict[str, str], logs: Path) -> None:
        self.log = logs / f"{name}.out"
        self._file = self.log.open("wb")
        self.proc = subprocess.Popen(
            ["bash", str(ROOT / "scripts" / f"{name}.sh")], env=env, cwd=ROOT,
            stdout=self._file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for_output(self, marker: str, timeout: float = 90) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.output()
            if marker in text:
                return text
            if self.proc.poll() is not None:
                raise AssertionError(f"the script exited {self.proc.returncode}:\n{text}")
            time.sleep(0.1)
        raise AssertionError(f"no {marker!r} within {timeout} s:\n{self.output()}")

    def interrupt(self, timeout: float = 30) -> int:
        """Ctrl-C: SIGINT to the whole group; the script's exit status."""
        os.killpg(self.proc.pid, signal.SIGINT)
        return self.proc.wait(timeout)

    def members(self) -> list[int]:
        return group_members(self.proc.pid)

    def stop(self) -> None:
        """Whatever is left of the group is killed (the test failed half-way)."""
        if self.members():
            os.killpg(self.proc.pid, signal.SIGKILL)
        if self.proc.poll() is None:
            self.proc.wait(10)
        self._file.close()
