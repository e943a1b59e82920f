"""Rotating Reusely's key under load, through `reusely-gateway serve` with real workers.

The credentials are a Kubernetes-style Secret volume swapped the kubelet's
way while callers keep sending requests; the upstream plays Reusely refusing
the old key from the moment of the swap. Every worker must send the new key
within 10 seconds, with no failed request, no restart and no SIGHUP. Workers
that gunicorn starts later keep the limit key worked out at start-up.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.support.gateway import CLI, ROOT, ServedGateway, wait_for
from tests.support.keyed import KeyedUpstream, SecretVolume, children, connection_owner, fp
from tests.support.metrics import series_sum

POLICY = """
routes:
  - name: reads
    path: /b/{rest:path}
    methods: [GET]
    credentials: [api_key, tenant_id]
    access: public
  - name: writes
    path: /b/{rest:path}
    methods: [POST]
    credentials: [api_key]
    access: public
    limits:
      - {per: "body:email", rate: "2/hour"}
"""
OLD, NEW = "rotated-api-key-old-8a7b6c5d", "rotated-api-key-new-1f2e3d4c"
TENANT = "tenant-9999ffff"
SWITCH = 10.0  # seconds: every worker sends the new key within this of the swap
CALLERS = 4  # threads sending requests, each on a new connection every time


class Load:
    """Callers sending GETs until stopped; each answer's status kept."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.results: list[int] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(CALLERS)]

    def _run(self) -> None:
        # No keep-alive: each request opens a connection, so both workers get callers.
        limits = httpx.Limits(max_keepalive_connections=0)
        with httpx.Client(timeout=10, limits=limits) as client:
            while not self._stop.is_set():
                try:
                    self.results.append(client.get(self.url).status_code)
                except httpx.HTTPError:
                    self.results.append(0)

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(15)


@pytest.fixture
def volume(tmp_path: Path) -> SecretVolume:
    return SecretVolume(tmp_path / "reusely", {"api-key": OLD, "tenant-id": TENANT})


def serve(tmp_path: Path, keyed: KeyedUpstream, volume: SecretVolume, *, workers: int,
          **env: str) -> ServedGateway:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    gw = ServedGateway(policy, keyed.url, workers=workers, env={
        "REUSELY_API_KEY_FILE": volume.path("api-key"),
        "REUSELY_TENANT_ID_FILE": volume.path("tenant-id"), **env})
    gw.start()
    assert gw.proc is not None
    keyed.owners = connection_owner(gw.proc.pid)
    return gw


def log_lines(gw: ServedGateway) -> list[dict[str, object]]:
    return [json.loads(line) for line in gw.output().splitlines() if line.startswith("{")]


def metric(gw: ServedGateway, series: str) -> float:
    return series_sum(httpx.get(gw.metrics_url).text, series)


@pytest.mark.parametrize("refused", [True, False], ids=["old-key-refused", "both-accepted"])
def test_a_secret_swap_under_load_reaches_every_worker_with_no_failed_request(
        tmp_path, keyed, volume, refused):
    """Refused: a request sent with the old key gets Reusely's 401 and is sent again
    (GET). Both accepted: the switch is the watch's alone."""
    gw = serve(tmp_path, keyed, volume, workers=2)
    try:
        assert gw.proc is not None
        workers = set(children(gw.proc.pid))
        assert len(workers) == 2
        with Load(gw.url + "/b/catalog") as load:
            wait_for(lambda: {s.pid for s in keyed.seen} >= workers, "both workers busy",
                     timeout=20)
            swapped = volume.write({"api-key": NEW, "tenant-id": TENANT})
            if refused:
                keyed.accepted = {NEW}  # Reusely refuses the old key from the same moment
            wait_for(lambda: {s.pid for s in keyed.seen if s.key == NEW} >= workers,
                     "every worker sending the new key", timeout=SWITCH + 5)
            settled = time.monotonic()
            wait_for(lambda: time.monotonic() > settled + 1, "a second more of load")
        seen = list(keyed.seen)
        assert load.results and set(load.results) == {200}, \
            sorted(set(load.results))  # no failed request, the swap included
        for pid in workers:
            mine = [s for s in seen if s.pid == pid]
            last_old = max(s.at for s in mine if s.key == OLD)
            first_new = min(s.at for s in mine if s.key == NEW)
            print(f"worker {pid}: old key last sent {last_old - swapped:+.3f} s, new key first "
                  f"sent {first_new - swapped:+.3f} s after the swap; "
                  f"{sum(s.at > swapped for s in mine)} requests after it")
            assert first_new - swapped <= SWITCH
            assert all(s.key == NEW for s in mine if s.at > swapped + SWITCH)
        # A request refused with the old key was sent again with the new one.
        sent_again = [s for s in seen if s.status == 401]
        print(f"{len(sent_again)} requests refused with the old key, each sent again")
        assert all(s.key == OLD for s in sent_again)

        # The response filter and the logs know the new value, and the old one.
        for value in (OLD, NEW):
            r = httpx.get(f"{gw.url}/b/echo-value/key%3D{value}")
            assert r.status_code == 200 and "x-echo" not in r.headers
        output = gw.output()
        assert OLD not in output and NEW not in output
        reloaded = [line["message"] for line in log_lines(gw)
                    if str(line.get("message", "")).startswith("credential api_key reloaded")]
        assert reloaded == [f"credential api_key reloaded from {volume.path('api-key')}: "
                            f"fingerprint {fp(NEW)} (was {fp(OLD)})"] * 2  # once per worker
        assert metric(gw, 'gateway_credential_reloads_total{result="ok"}') >= 2
        assert metric(gw, 'gateway_credential_reloads_total{result="error"}') == 0
        assert metric(gw, 'gateway_upstream_responses_total{route="reads",status="401"}') == \
            len(sent_again)
        started = (f"credential fingerprints (first 8 hex digits of SHA-256): "
                   f"api_key {fp(OLD)}, tenant_id {fp(TENANT)}")
        assert started in output

        # check-config shows the line the gateway logs, for the file as it is now.
        result = subprocess.run(
            [CLI, "check-config", "--config", str(gw.policy_path)], cwd=ROOT, text=True,
            capture_output=True, timeout=60, check=False,
            env={**gw.env, "GATEWAY_LOG_LEVEL": "info"})
        assert result.returncode == 0, result.stderr
        assert (f"\ncredential fingerprints (first 8 hex digits of SHA-256): "
                f"api_key {fp(NEW)}, tenant_id {fp(TENANT)}, ") in result.stdout
        assert NEW not in result.stdout + result.stderr
        assert "Traceback" not in output
    finally:
        gw.stop()


def booted(gw: ServedGateway) -> int:
    return gw.output().count("Application startup complete")


def test_workers_started_later_keep_the_limit_key_of_start_up(tmp_path, keyed, volume,
                                                              redis_url):
    """No limit key secret: the key derived from the API key at start-up stays, so a
    rotated key splits no count between workers, however they are restarted."""
    gw = serve(tmp_path, keyed, volume, workers=1, GATEWAY_REDIS_URL=redis_url)
    try:
        assert gw.proc is not None
        shopper = {"email": "ada@example.com"}
        for _ in range(2):
            assert httpx.post(gw.url + "/b/offer", json=shopper).status_code == 200
        volume.write({"api-key": NEW, "tenant-id": TENANT})
        wait_for(lambda: httpx.get(gw.url + "/b/x").status_code == 200
                 and keyed.seen[-1].key == NEW, "the new key in use", timeout=SWITCH)
        assert httpx.post(gw.url + "/b/offer", json=shopper).status_code == 429
        before = booted(gw)
        gw.signal(signal.SIGHUP)  # new workers, reading the rotated file at boot
        wait_for(lambda: booted(gw) > before, "the new worker", timeout=30)
        gw.wait_ready()
        assert httpx.post(gw.url + "/b/offer", json=shopper).status_code == 429
        [worker] = wait_for(lambda: (found := children(gw.proc.pid)) and len(found) == 1
                            and found, "one worker")
        before = booted(gw)
        os.kill(worker, signal.SIGKILL)  # gunicorn starts another
        wait_for(lambda: booted(gw) > before, "the replacement worker", timeout=30)
        gw.wait_ready()
        assert httpx.post(gw.url + "/b/offer", json=shopper).status_code == 429
        assert httpx.post(gw.url + "/b/offer", json={"email": "grace@example.com"}
                          ).status_code == 200
        assert keyed.seen[-1].key == NEW
    finally:
        gw.stop()
