"""Credential files watched by a running gateway, and Reusely's 401 after a rotation.

In-process, over real sockets: the gateway under uvicorn, the recording
upstream playing Reusely's key check, credential files laid out as a
Kubernetes Secret volume and swapped the kubelet's way.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from tests.support.gateway import InProcessGateway, wait_for
from tests.support.http import error_of
from tests.support.keyed import KeyedUpstream, SecretVolume, fp
from tests.support.metrics import sample

POLICY = """
routes:
  - name: reads
    path: /b/{rest:path}
    methods: [GET, HEAD]
    credentials: [api_key, tenant_id]
    access: public
  - name: writes
    path: /b/{rest:path}
    methods: [POST]
    credentials: [api_key]
    access: public
    limits:
      - {per: "body:email", rate: "2/hour"}
  - name: market
    path: /m/{rest:path}
    methods: [GET]
    credentials: [marketplace_key]
    access: public
"""
OLD, NEW, NEWER = ("api-key-old-1111aaaa", "api-key-new-2222bbbb", "api-key-newer-3333cccc")
TENANT = "tenant-4444dddd"
SWITCH = 10  # seconds: a changed file reaches the gateway within this


@pytest.fixture
def volume(tmp_path: Path) -> SecretVolume:
    return SecretVolume(tmp_path / "reusely", {"api-key": OLD, "tenant-id": TENANT})


@pytest.fixture
def start(gateway_factory: Callable[..., InProcessGateway], keyed: KeyedUpstream,
          volume: SecretVolume) -> Callable[..., InProcessGateway]:
    def start(env: dict[str, str] | None = None, **app_kwargs: Any) -> InProcessGateway:
        files = {"REUSELY_API_KEY_FILE": volume.path("api-key"),
                 "REUSELY_TENANT_ID_FILE": volume.path("tenant-id"),
                 "REUSELY_MARKETPLACE_KEY_FILE": volume.path("marketplace-key")}
        return gateway_factory(POLICY, upstream_url=keyed.url, env={**files, **(env or {})},
                               **app_kwargs)
    return start


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG, logger="gateway")
    return caplog


def reloads(registry: CollectorRegistry, result: str) -> float:
    return sample(registry, "gateway_credential_reloads_total", result=result)


def keys_sent(keyed: KeyedUpstream) -> list[str | None]:
    return [s.key for s in keyed.seen]


def messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records]


def elsewhere(tmp_path: Path, value: str) -> tuple[str, Path]:
    """A credential path that is a symlink into another directory: changing the
    target in place raises no event in the watched directory."""
    (tmp_path / "named").mkdir()
    (tmp_path / "real").mkdir()
    target = tmp_path / "real" / "api-key"
    target.write_text(value + "\n")
    (tmp_path / "named" / "api-key").symlink_to(target)
    return str(tmp_path / "named" / "api-key"), target


# -- the watch ----------------------------------------------------------------------


def test_a_secret_volume_swap_reaches_the_gateway_with_no_restart(http, start, keyed, volume,
                                                                  logs):
    registry = CollectorRegistry()
    gw = start(registry=registry)
    assert http.get(gw.url + "/b/one").status_code == 200
    assert keyed.seen[-1].key == OLD
    volume.write({"api-key": NEW, "tenant-id": TENANT})
    wait_for(lambda: http.get(gw.url + "/b/two").status_code == 200
             and keyed.seen[-1].key == NEW, "the new key sent", timeout=SWITCH)
    [line] = [m for m in messages(logs) if m.startswith("credential api_key reloaded")]
    assert line == (f"credential api_key reloaded from {volume.path('api-key')}: "
                    f"fingerprint {fp(NEW)} (was {fp(OLD)})")
    # The swap gave the tenant file a new path too: re-read, same value, counted ok.
    assert reloads(registry, "ok") == 2 and reloads(registry, "error") == 0
    assert keyed.received[-1].header("x-tenant-id") == TENANT
    assert not any(NEW in m or OLD in m for m in messages(logs))


def test_an_emptied_file_keeps_the_last_value_and_names_the_file(http, start, keyed, volume,
                                                                  logs):
    registry = CollectorRegistry()
    gw = start(registry=registry)
    volume.write({"api-key": "", "tenant-id": TENANT})
    wait_for(lambda: reloads(registry, "error") == 1, "the error counted", timeout=SWITCH)
    assert http.get(gw.url + "/b/x").status_code == 200
    assert keyed.seen[-1].key == OLD
    [error] = [r for r in logs.records if r.levelno == logging.ERROR]
    assert error.getMessage() == (f"credential api_key: REUSELY_API_KEY_FILE "
                                  f"{volume.path('api-key')} is empty; keeping the last good value")
    volume.write({"api-key": NEW, "tenant-id": TENANT})  # a good value again: used
    wait_for(lambda: http.get(gw.url + "/b/y").status_code == 200
             and keyed.seen[-1].key == NEW, "the new key sent", timeout=SWITCH)


@pytest.mark.parametrize("how", ["key-gone", "a-directory", "line-break"])
def test_an_unreadable_file_keeps_the_last_value(http, start, keyed, volume, logs, how):
    registry = CollectorRegistry()
    gw = start(registry=registry)
    if how == "key-gone":  # the Secret lost the key: the symlink dangles
        volume.write({"tenant-id": TENANT})
        why = "cannot read REUSELY_API_KEY_FILE {}: No such file or directory"
    elif how == "a-directory":
        os.remove(volume.path("api-key"))
        os.mkdir(volume.path("api-key"))
        why = "cannot read REUSELY_API_KEY_FILE {}: Is a directory"
    else:  # a value no header can carry must never reach Reusely
        volume.write({"api-key": "two\nlines-of-key", "tenant-id": TENANT})
        why = "REUSELY_API_KEY_FILE {} holds a character an HTTP header cannot carry"
    why = why.format(volume.path("api-key"))

    def errors() -> list[str]:
        return [r.getMessage() for r in logs.records if r.levelno == logging.ERROR]

    # (replacing the file by a directory is two steps: the gap may be seen first)
    wait_for(lambda: any(why in e for e in errors()), "the error logged", timeout=SWITCH)
    assert reloads(registry, "error") == len(errors())
    assert all(e.startswith("credential api_key: ") and volume.path("api-key") in e
               and e.endswith("; keeping the last good value") for e in errors()), errors()
    assert http.get(gw.url + "/b/x").status_code == 200
    assert keyed.seen[-1].key == OLD
    assert "lines-of-key" not in " ".join(messages(logs))


def test_a_route_disabled_for_a_missing_value_works_once_its_file_has_one(http, start, keyed,
                                                                           volume, logs):
    gw = start()
    r = http.get(gw.url + "/m/x")
    assert r.status_code == 503 and error_of(r) == "credential_not_configured"
    volume.write({"api-key": OLD, "tenant-id": TENANT, "marketplace-key": "market-5555eeee"})
    wait_for(lambda: http.get(gw.url + "/m/y").status_code == 200, "the route enabled",
             timeout=SWITCH)
    assert keyed.received[-1].header("x-marketplace-key") == "market-5555eeee"
    assert "route market enabled: its credentials are all set now" in messages(logs)


def test_the_poll_finds_a_change_the_directory_watch_cannot_see(http, start, keyed, tmp_path):
    named, target = elsewhere(tmp_path, OLD)
    gw = start({"REUSELY_API_KEY_FILE": named}, credential_poll=0.5)
    target.write_text(NEW + "\n")  # in place, in a directory nobody watches
    wait_for(lambda: http.get(gw.url + "/b/x").status_code == 200
             and keyed.seen[-1].key == NEW, "the new key sent", timeout=SWITCH)


def test_a_changed_limit_key_file_is_not_used_and_the_log_says_so(http, start, volume, logs):
    volume.write({"api-key": OLD, "tenant-id": TENANT, "limit-key": "limit-key-one-6666"})
    gw = start({"GATEWAY_LIMIT_KEY_SECRET_FILE": volume.path("limit-key")})
    for _ in range(2):
        assert http.post(gw.url + "/b/x", json={"email": "a@example.com"}).status_code == 200
    volume.write({"api-key": OLD, "tenant-id": TENANT, "limit-key": "limit-key-two-7777"})
    wait_for(lambda: any("GATEWAY_LIMIT_KEY_SECRET_FILE" in m for m in messages(logs)),
             "the warning", timeout=SWITCH)
    [warning] = [r for r in logs.records if "GATEWAY_LIMIT_KEY_SECRET_FILE" in r.getMessage()]
    assert warning.levelno == logging.WARNING
    assert "stays the one read at start-up until the gateway restarts" in warning.getMessage()
    r = http.post(gw.url + "/b/x", json={"email": "a@example.com"})
    assert r.status_code == 429  # the same key: the count goes on
    assert "limit-key-two" not in " ".join(messages(logs))


# -- Reusely's 401 after a rotation --------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_a_read_refused_with_a_key_whose_file_changed_unseen_is_sent_once_more(
        http, start, keyed, tmp_path, method):
    named, target = elsewhere(tmp_path, OLD)
    registry = CollectorRegistry()
    gw = start({"REUSELY_API_KEY_FILE": named}, credential_poll=3600, registry=registry)
    target.write_text(NEW)  # Reusely and the file change at once; no event reaches the watch
    keyed.accepted = {NEW}
    r = http.request(method, gw.url + "/b/x")
    assert r.status_code == 200
    assert [(s.method, s.key, s.status) for s in keyed.seen] == [(method, OLD, 401),
                                                                 (method, NEW, 200)]
    for status in ("401", "200"):
        assert registry.get_sample_value("gateway_upstream_responses_total",
                                         {"route": "reads", "status": status}) == 1
    assert reloads(registry, "ok") == 1


def test_a_post_refused_after_the_file_changed_is_never_sent_twice(http, start, keyed,
                                                                    tmp_path):
    named, target = elsewhere(tmp_path, OLD)
    gw = start({"REUSELY_API_KEY_FILE": named}, credential_poll=3600)
    target.write_text(NEW)
    keyed.accepted = {NEW}
    r = http.post(gw.url + "/b/x", json={"email": "a@example.com"})
    assert r.status_code == 502 and error_of(r) == "upstream_credentials_rejected"
    assert "Unauthenticated" not in r.text and "www-authenticate" not in r.headers
    assert [(s.method, s.key) for s in keyed.seen] == [("POST", OLD)]
    # The 401 made the worker read the file: the next POST carries the new key.
    assert http.post(gw.url + "/b/x", json={"email": "b@example.com"}).status_code == 200
    assert keyed.seen[-1].key == NEW


def test_a_read_in_flight_when_the_key_rotates_is_sent_once_more(http, start, keyed, volume,
                                                                  logs):
    registry = CollectorRegistry()
    gw = start(registry=registry)
    answers: list[httpx.Response] = []
    caller = threading.Thread(target=lambda: answers.append(http.get(gw.url + "/b/hold")))
    caller.start()
    wait_for(lambda: keyed.received, "the request at Reusely")
    volume.write({"api-key": NEW, "tenant-id": TENANT})
    wait_for(lambda: reloads(registry, "ok") >= 1, "the new key read", timeout=SWITCH)
    keyed.accepted = {NEW}
    keyed.hold.set()  # Reusely answers the request sent with the old key: 401
    caller.join(10)
    assert answers[0].status_code == 200
    assert [(s.key, s.status) for s in keyed.seen] == [(OLD, 401), (NEW, 200)]
    assert any("sending the request once more" in m for m in messages(logs))


def test_a_401_with_nothing_changed_is_a_502_sent_once(http, start, keyed):
    gw = start()
    keyed.accepted = {"a-key-nobody-has"}
    r = http.get(gw.url + "/b/x")
    assert r.status_code == 502 and error_of(r) == "upstream_credentials_rejected"
    assert "Unauthenticated" not in r.text
    assert keys_sent(keyed) == [OLD]


# -- every value since start-up is a secret --------------------------------------------


def test_every_value_held_since_start_up_is_dropped_from_answers(http, start, keyed, volume):
    gw = start()
    for value in (NEW, NEWER):
        volume.write({"api-key": value, "tenant-id": TENANT})
        wait_for(lambda v=value: http.get(gw.url + "/b/x").status_code == 200
                 and keyed.seen[-1].key == v, "the new key sent", timeout=SWITCH)
    for value in (OLD, NEW, NEWER, TENANT):
        r = http.get(f"{gw.url}/b/echo-value/key%3D{value}")
        assert r.status_code == 200 and r.headers["x-upstream"] == "kept"
        assert "x-echo" not in r.headers, value
    r = http.get(gw.url + "/b/echo-value/harmless-value")
    assert r.headers["x-echo"] == "harmless-value"


def test_a_file_in_a_directory_made_later_is_found_by_the_poll(http, gateway_factory, keyed,
                                                               tmp_path, logs):
    later = tmp_path / "not-yet"
    gw = gateway_factory(POLICY, upstream_url=keyed.url, credential_poll=0.3,
                         env={"REUSELY_MARKETPLACE_KEY_FILE": str(later / "marketplace-key")})
    assert http.get(gw.url + "/m/x").status_code == 503
    later.mkdir()
    (later / "marketplace-key").write_text("market-8888aaaa\n")
    wait_for(lambda: http.get(gw.url + "/m/y").status_code == 200, "the route enabled",
             timeout=SWITCH)
    assert keyed.received[-1].header("x-marketplace-key") == "market-8888aaaa"
    warned = [m for m in messages(logs) if m.startswith("cannot watch")]
    assert len(warned) == 1 and "looking at the files every 0.3 s instead" in warned[0]
