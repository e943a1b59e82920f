"""`reusely-gateway` on the command line: serve's signals, check-config, token, --version."""

from __future__ import annotations

import hashlib
import json
import re
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
import yaml

from gateway import __version__
from tests.support.gateway import CLI, KEYS, ROOT, ServedGateway, clean_env, free_port, wait_for
from tests.support.upstream import Upstream

ROUTE = """
  - name: {name}
    path: {path}
    methods: [GET]
    credentials: [{credentials}]
    access: public
"""
POLICY = "routes:" + ROUTE.format(name="catalog", path="/api/v2/public/catalog/{rest:path}",
                                  credentials="api_key, tenant_id") \
    + ROUTE.format(name="behaviour", path="/b/{kind}", credentials="api_key")
EXTRA = ROUTE.format(name="extra", path="/extra/{rest:path}", credentials="marketplace_key")

BROKEN = """
colour: blue
upstream:
  timout: {connect: 1}
limits:
  trusted_proxies: ["10.0.0.0/8", "10.0.0.0/33"]
routes:
  - name: catalog
    path: /api/v2/public/catalog/{rest:path}
    credentials: [api_key, tenant]
    access: public
    limits:
      - {per: ip, rate: "5/hr"}
    cache: 10
  - name: dup
    path: /one
  - name: dup
    path: /two
clients:
  - name: team
    token_sha256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
    routes: [catalog, nowhere]
"""
BROKEN_PROBLEMS = (
    "colour: unknown key",
    "upstream.timout: unknown key",
    "limits.trusted_proxies[1]: '10.0.0.0/33' is not an IP address or CIDR",
    "routes[0].credentials: 'tenant' is not one of",
    'routes[0].limits[0].rate: "5/hr" is not a rate like "5/hour"',
    "routes[0].cache: unknown key",
    "routes[2].name: 'dup' is already the name of routes[1]",
    "clients[0].routes: 'nowhere' is not a route name",
)


def run(*args: str, env: dict[str, str] | None = None, timeout: float = 20
        ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, *args], capture_output=True, text=True, cwd=ROOT,
                          env=env if env is not None else clean_env(), timeout=timeout,
                          check=False)


@pytest.fixture
def policy(tmp_path: Path) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY)
    return path


@pytest.fixture
def served(policy: Path, upstream: Upstream, tmp_path: Path) -> Iterator[ServedGateway]:
    key_file = tmp_path / "marketplace-key"
    key_file.write_text("market-key-v1\n")
    gw = ServedGateway(policy, upstream.url, workers=2,
                       env={"REUSELY_MARKETPLACE_KEY_FILE": str(key_file)})
    gw.start()
    yield gw
    gw.stop()


# -- serve: signals ------------------------------------------------------------


def test_sigterm_lets_the_in_flight_request_finish_then_exits_0_and_refuses_new_ones(
        served, upstream):
    result: list[httpx.Response] = []
    thread = threading.Thread(
        target=lambda: result.append(httpx.get(served.url + "/b/slow", timeout=20)))
    thread.start()
    try:
        assert upstream.first_sent.wait(10)
        served.signal(signal.SIGTERM)
        # Draining: new connections are refused while the slow request finishes.
        wait_for(lambda: refused(served.url), "new connections refused")
        assert not upstream.last_sent.is_set() and not result
    finally:
        upstream.release.set()
        thread.join(20)
    [response] = result
    assert response.status_code == 200
    assert response.text == "firstlast"
    assert served.proc is not None
    assert served.proc.wait(15) == 0
    assert refused(served.url)
    assert "Traceback" not in served.output()


def refused(url: str) -> bool:
    try:
        httpx.get(url + "/healthz", timeout=2)
    except httpx.ConnectError:
        return True
    except httpx.HTTPError:
        pass
    return False


class Traffic:
    """Sequential GETs in a thread until stopped: one keep-alive client, one fresh-connection."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.results: list[int | str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._loop, args=(keep,)) for keep in (5, 0)]

    def _loop(self, keepalive: int) -> None:
        with httpx.Client(limits=httpx.Limits(max_keepalive_connections=keepalive),
                          timeout=10) as client:
            while not self._stop.is_set():
                try:
                    self.results.append(client.get(self.url).status_code)
                except httpx.HTTPError as exc:
                    self.results.append(repr(exc))

    def __enter__(self) -> Traffic:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(15)


def refusals(gw: ServedGateway) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in gw.output().splitlines() if line.strip()]
    return [line for line in lines if "5/hr" in line.get("message", "")]


def booted(gw: ServedGateway) -> int:
    return gw.output().count("Application startup complete")


def test_sighup_reloads_policy_and_credential_files_without_losing_a_request(
        served, policy, upstream, tmp_path):
    master = served.proc.pid
    assert httpx.get(served.url + "/extra/x").status_code == 404
    with Traffic(served.url + "/api/v2/public/catalog/during-reload") as traffic:
        wait_for(lambda: len(traffic.results) > 20, "traffic before the reload")
        policy.write_text(POLICY + EXTRA)
        (tmp_path / "marketplace-key").write_text("market-key-v2\n")
        served.signal(signal.SIGHUP)
        wait_for(lambda: httpx.get(served.url + "/extra/x").status_code != 404,
                 "the new route answers")
        count = len(traffic.results)
        wait_for(lambda: len(traffic.results) > count + 20, "traffic after the reload")
    assert traffic.results and set(traffic.results) == {200}, \
        [r for r in traffic.results if r != 200]
    r = httpx.get(served.url + "/extra/y")
    assert r.status_code == 200
    assert upstream.received[-1].header("x-marketplace-key") == "market-key-v2"
    assert served.proc.pid == master and served.proc.poll() is None
    assert httpx.get(served.metrics_url).status_code == 200
    assert "Traceback" not in served.output()


def test_sighup_with_a_broken_policy_keeps_the_running_one_and_logs_where(served, policy):
    workers_booted = booted(served)
    policy.write_text(POLICY.replace("credentials: [api_key]",
                                     "credentials: [api_key]\n    limits: [{per: ip, rate: 5/hr}]"))
    with Traffic(served.url + "/api/v2/public/catalog/during-bad-reload") as traffic:
        served.signal(signal.SIGHUP)
        wait_for(lambda: refusals(served), "the refusal logged")
        wait_for(lambda: booted(served) >= workers_booted + 2, "the workers restarted")
    assert set(traffic.results) == {200}, [r for r in traffic.results if r != 200]
    assert httpx.get(served.url + "/b/ok").status_code == 200  # the old policy runs
    [refusal] = refusals(served)
    assert refusal["level"] == "error"
    assert 'routes[1].limits[0].rate: "5/hr" is not a rate like "5/hour"' in refusal["message"]
    assert served.proc.poll() is None
    assert "Traceback" not in served.output()


def test_serve_with_a_broken_policy_exits_2_at_once_with_the_located_error(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(BROKEN)
    result = run("serve", "--config", str(bad), "--bind", f"127.0.0.1:{free_port()}",
                 "--metrics-bind", f"127.0.0.1:{free_port()}", "--workers", "1",
                 env=clean_env(**KEYS))
    assert result.returncode == 2
    assert 'routes[0].limits[0].rate: "5/hr" is not a rate like "5/hour"' in result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    missing = run("serve", "--config", str(tmp_path / "absent.yaml"), env=clean_env(**KEYS))
    assert missing.returncode == 2 and "absent.yaml" in missing.stderr
    assert "Traceback" not in missing.stdout + missing.stderr


# -- check-config --------------------------------------------------------------


def test_check_config_summarises_the_default_policy_without_printing_secret_values():
    keys = {k: v for k, v in KEYS.items() if k != "REUSELY_SECRET_KEY"}
    result = run("check-config", env=clean_env(**keys))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "config/gateway.yaml" in out
    for route, access in (("catalog", "public"), ("checkout-mail-in", "public"),
                          ("offer-from-lead", "internal"), ("admin", "internal")):
        assert re.search(rf"^  {route}: .*\[{access}\]", out, re.M), route
    assert "api_key set" in out and "tenant_id set" in out
    assert "secret_key missing" in out
    assert re.search(r"^warning: .*admin.*secret_key missing", out, re.M)
    assert re.search(r"^  admin: .*DISABLED", out, re.M)
    assert re.search(r"^  catalog: .*enabled", out, re.M)
    assert "body:email 5/hour" in out
    assert re.search(r"^clients \(0\)", out, re.M)
    for value in KEYS.values():
        assert value not in out + result.stderr


def test_check_config_names_every_problem_where_it_is_and_exits_2(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(BROKEN)
    result = run("check-config", "--config", str(bad), env=clean_env(**KEYS))
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    for problem in BROKEN_PROBLEMS:
        assert sum(line.startswith(problem) for line in lines) == 1, (problem, lines)
    assert len(lines) == len(BROKEN_PROBLEMS), lines
    assert "Traceback" not in result.stdout + result.stderr
    assert not any(v in result.stdout + result.stderr for v in KEYS.values())


def test_check_config_on_invalid_yaml_names_line_and_column(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("routes:\n  - name: a\n    path: [unclosed\n")
    result = run("check-config", "--config", str(bad))
    assert result.returncode == 2
    assert re.search(rf"^{re.escape(str(bad))}:\d+:\d+: ", result.stderr, re.M), result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_check_config_with_a_missing_file_exits_2(tmp_path):
    result = run("check-config", "--config", str(tmp_path / "absent.yaml"))
    assert result.returncode == 2
    assert "absent.yaml" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_a_missing_file_is_blamed_on_what_named_it(tmp_path):
    result = run("check-config", "--config", "absent.yaml")
    assert result.returncode == 2
    assert result.stderr.startswith(f"--config absent.yaml: cannot read {ROOT / 'absent.yaml'}: ")
    absent = tmp_path / "absent.yaml"
    result = run("check-config", env=clean_env(GATEWAY_CONFIG=str(absent)))
    assert result.returncode == 2
    assert result.stderr.startswith(f"GATEWAY_CONFIG: cannot read {absent}: ")


def test_check_config_says_where_values_come_from_and_never_a_password(tmp_path):
    key_file = tmp_path / "api-key"
    key_file.write_text(KEYS["REUSELY_API_KEY"] + "\n")
    result = run("check-config", env=clean_env(
        REUSELY_API_KEY_FILE=str(key_file), REUSELY_TENANT_ID_FILE=str(tmp_path / "nope"),
        REUSELY_BASE_URL="https://gateway:hunter2-pass@api.example.com"))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "upstream: https://***@api.example.com" in out
    assert "hunter2-pass" not in out + result.stderr
    assert KEYS["REUSELY_API_KEY"] not in out + result.stderr
    assert f"  api_key from file {key_file}" in out.splitlines()
    assert "limit key: derived from REUSELY_API_KEY" in out.splitlines()
    warnings = [line for line in out.splitlines() if line.startswith("warning: ")]
    assert "warning: credentials come from files and GATEWAY_LIMIT_KEY_SECRET is not set: " \
        "a rotated API key would change the limit keys" in warnings
    assert any(w.startswith("warning: credential tenant_id: REUSELY_TENANT_ID_FILE: cannot read")
               for w in warnings)
    assert len(warnings) == len(set(warnings))
    assert out.splitlines()[-1].endswith(f", {len(warnings)} warning(s)")


def test_the_running_gateway_logs_every_warning_check_config_prints(upstream, tmp_path):
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY + EXTRA + ROUTE.format(name="shadowed", path="/b/x",
                                                    credentials="api_key"))
    gw = ServedGateway(policy, upstream.url,
                       env={"REUSELY_MARKETPLACE_KEY_FILE": str(tmp_path / "nope")})
    result = run("check-config", "--config", str(policy), env=gw.env)
    assert result.returncode == 0, result.stderr
    warnings = [line.removeprefix("warning: ") for line in result.stdout.splitlines()
                if line.startswith("warning: ")]
    for expected in ("routes[3] (shadowed): GET requests to /b/x are taken by routes[1]",
                     "route extra is disabled: marketplace_key missing",
                     "credential marketplace_key: REUSELY_MARKETPLACE_KEY_FILE: cannot read"):
        assert any(w.startswith(expected) for w in warnings), (expected, warnings)
    gw.start()
    try:
        logged = [json.loads(line) for line in gw.output().splitlines() if line.strip()]
    finally:
        gw.stop()
    said = [line.get("message") for line in logged if line.get("level") == "warning"]
    for warning in warnings:
        assert said.count(warning) == 1, (warning, said)  # one worker: each once


# -- schema ----------------------------------------------------------------------

SCHEMA_FILE = ROOT / "config" / "policy.schema.json"
SHIPPED = [ROOT / "config" / "gateway.yaml", ROOT / "gateway" / "default_policy.yaml",
           ROOT / "examples" / "widget" / "gateway.yaml", *sorted((ROOT / "bench").glob("*.yaml"))]


def schema_validator() -> jsonschema.Draft202012Validator:
    result = run("schema")
    assert result.returncode == 0, result.stderr
    schema = json.loads(result.stdout)
    jsonschema.Draft202012Validator.check_schema(schema)
    assert SCHEMA_FILE.read_text() == result.stdout, \
        "the published schema is stale: reusely-gateway schema > config/policy.schema.json"
    return jsonschema.Draft202012Validator(schema)


def test_schema_prints_the_policy_schema_every_shipped_policy_passes():
    validator = schema_validator()
    hinted = 0
    for path in SHIPPED:
        text = path.read_text()
        errors = [f"{list(e.absolute_path)}: {e.message}"
                  for e in validator.iter_errors(yaml.safe_load(text))]
        assert not errors, (path, errors)
        hint = re.search(r"^# yaml-language-server: \$schema=(\S+)$", text, re.M)
        if hint:  # an editor's hint must lead to the published schema
            assert (path.parent / hint.group(1)).resolve() == SCHEMA_FILE.resolve(), path
            hinted += 1
    assert hinted >= 3


def test_the_schema_refuses_a_misspelt_key_as_check_config_does(tmp_path):
    validator = schema_validator()
    data = yaml.safe_load((ROOT / "examples" / "widget" / "gateway.yaml").read_text())
    data["routes"][1]["limts"] = data["routes"][1].pop("limits")
    errors = list(validator.iter_errors(data))
    assert len(errors) == 1 and "'limts' was unexpected" in errors[0].message
    assert list(errors[0].absolute_path) == ["routes", 1]
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(data))
    result = run("check-config", "--config", str(bad), env=clean_env(**KEYS))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "routes[1].limts: unknown key (known keys: name, path, methods, credentials, access, "
        "cache_ttl, stale_if_error, stale_while_revalidate, idempotency, limits, timeout, "
        "max_body_bytes, retries, on_error)"]


# -- token new, --version ------------------------------------------------------


def test_token_new_prints_a_fresh_url_safe_token_and_its_sha256_line():
    seen = set()
    for _ in range(2):
        result = run("token", "new")
        assert result.returncode == 0
        token = re.search(r"^token: ([A-Za-z0-9_-]{43,})$", result.stdout, re.M)
        digest = re.search(r'^token_sha256: "([0-9a-f]{64})"$', result.stdout, re.M)
        assert token and digest, result.stdout
        assert hashlib.sha256(token.group(1).encode()).hexdigest() == digest.group(1)
        seen.add(token.group(1))
    assert len(seen) == 2


def test_version_prints_the_package_version():
    result = run("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == __version__
