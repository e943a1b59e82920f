"""A redis-server (or Sentinel) of a test's own, on its own port, that it may stop."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import redis

from tests.support.gateway import free_port


def _wait_ping(port: int) -> None:
    client = redis.Redis(port=port, socket_timeout=1)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                assert time.monotonic() < deadline, f"redis on {port} did not start"
                time.sleep(0.02)
    finally:
        client.close()


class PrivateRedis:
    """A redis-server of this test's own, on its own port, that it may stop."""

    def __init__(self, *args: str) -> None:
        self.port = free_port()
        self.args = args  # extra redis-server arguments, e.g. "--maxmemory", "1mb"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> PrivateRedis:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--daemonize", "no", *self.args],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_ping(self.port)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None

    def pause(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGCONT)


class PrivateSentinel:
    """A Sentinel watching one PrivateRedis as master `mymaster`."""

    def __init__(self, master: PrivateRedis, workdir: Path) -> None:
        self.port = free_port()
        self.conf = workdir / f"sentinel-{self.port}.conf"
        self.conf.write_text(f"port {self.port}\nbind 127.0.0.1\n"
                             f"sentinel monitor mymaster 127.0.0.1 {master.port} 1\n")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> PrivateSentinel:
        self.proc = subprocess.Popen(["redis-server", str(self.conf), "--sentinel"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_ping(self.port)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None


def _cluster_port() -> int:
    """A free port whose cluster bus port (+10000) is a port too."""
    while True:
        port = free_port()
        if port < 55000:
            return port


class PrivateCluster:
    """Three cluster-enabled redis-servers joined into one Redis Cluster (no replicas)."""

    def __init__(self, workdir: Path) -> None:
        self.ports = [_cluster_port() for _ in range(3)]
        self.workdir = workdir
        self.procs: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in self.ports)

    def start(self) -> PrivateCluster:
        for port in self.ports:
            node = self.workdir / f"node-{port}"
            node.mkdir()
            self.procs.append(subprocess.Popen(
                ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--cluster-enabled", "yes", "--dir", str(node),
                 "--cluster-config-file", "nodes.conf"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            _wait_ping(port)
        subprocess.run(["redis-cli", "--cluster", "create",
                        *(f"127.0.0.1:{p}" for p in self.ports), "--cluster-yes"],
                       check=True, capture_output=True, timeout=30)
        client = redis.Redis(port=self.ports[0], socket_timeout=1)
        try:
            deadline = time.monotonic() + 20
            while client.execute_command("CLUSTER INFO").get("cluster_state") != "ok":
                assert time.monotonic() < deadline, "the cluster did not become ok"
                time.sleep(0.1)
        finally:
            client.close()
        return self

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(10)
        self.procs.clear()
