"""`reusely-gateway limits show|reset` as support runs it: a subprocess of the venv's
command, against the Redis a real gateway counts in."""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from tests.support.gateway import CLI, KEYS, ROOT, InProcessGateway, clean_env, free_port
from tests.support.http import MAIL_IN, error_of, offer, sha
from tests.support.upstream import Upstream

TOKEN = "pricing-token-1b2c3d"
LIMIT_KEY_SECRET = "limit-key-secret-for-the-cli-test-4e5f"
VICTIM = "victim@example.com"
POLICY = f"""
routes:
  - name: checkout-mail-in
    path: {MAIL_IN}
    methods: [POST]
    credentials: [api_key, tenant_id]
    access: public
    limits:
      - {{per: "body:email", rate: "5/hour"}}
      - {{per: "body:phone", rate: "5/hour"}}
      - {{per: ip, rate: "30/hour;100/day"}}
  - name: inventory
    path: /api/v2/public/inventory/{{rest:path}}
    methods: [GET]
    credentials: [api_key]
    access: internal
    limits:
      - {{per: client, rate: "2/minute"}}
clients:
  - name: pricing-team
    token_sha256: "{sha(TOKEN)}"
    routes: [inventory]
    limits:
      - {{per: client, rate: "600/minute"}}
"""


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY)
    return path


@pytest.fixture
def gateway(gateway_factory: Callable[..., InProcessGateway], redis_url: str
            ) -> InProcessGateway:
    return gateway_factory(POLICY, env={"GATEWAY_REDIS_URL": redis_url,
                                        "GATEWAY_LIMIT_KEY_SECRET": LIMIT_KEY_SECRET})


def cli_env(**extra: str) -> dict[str, str]:
    """What a support shell in the gateway's container has: its settings, nothing else."""
    return clean_env(**{**KEYS, "GATEWAY_LIMIT_KEY_SECRET": LIMIT_KEY_SECRET, **extra})


class Limits:
    """`reusely-gateway limits ...` with the test's policy file and environment."""

    def __init__(self, policy_file: Path, env: dict[str, str]) -> None:
        self.policy_file, self.env = policy_file, env
        self.outputs: list[str] = []

    def __call__(self, *args: str, env: dict[str, str] | None = None
                 ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([CLI, "limits", *args, "--config", str(self.policy_file)],
                              capture_output=True, text=True, cwd=ROOT, timeout=30,
                              env=env if env is not None else self.env, check=False)
        self.outputs.append(done.stdout + done.stderr)
        return done


@pytest.fixture
def limits(policy_file: Path, redis_url: str) -> Iterator[Limits]:
    run = Limits(policy_file, cli_env(GATEWAY_REDIS_URL=redis_url))
    yield run
    hidden = [LIMIT_KEY_SECRET, KEYS["REUSELY_API_KEY"],
              hmac.new(b"reusely-gateway limit key v1", KEYS["REUSELY_API_KEY"].encode(),
                       hashlib.sha256).hexdigest(),
              LIMIT_KEY_SECRET.encode().hex(), hide("body:email", VICTIM)]
    for output in run.outputs:  # nothing any run printed holds a secret or a key name
        assert "Traceback" not in output
        for secret in hidden:
            assert secret not in output


def hide(per: str, value: str) -> str:
    return hmac.new(LIMIT_KEY_SECRET.encode(), f"{per}\0{value}".encode(),
                    hashlib.sha256).hexdigest()[:32]


def checkout(http: httpx.Client, gw: InProcessGateway, **fields: Any) -> httpx.Response:
    return http.post(gw.url + MAIL_IN, json=offer(**fields))


def one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 2, done
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


def test_support_finds_a_refused_shopper_clears_the_count_and_the_next_checkout_passes(
        http, gateway, limits, upstream: Upstream, redis_url: str):
    assert [checkout(http, gateway, email=VICTIM).status_code for _ in range(5)] == [200] * 5
    refused = checkout(http, gateway, email=VICTIM)
    assert refused.status_code == 429
    assert error_of(refused) == "rate_limited"

    shown = limits("show", "--route", "checkout-mail-in", "--email", " Victim@Example.com\u200b")
    assert shown.returncode == 0, shown.stderr
    (line,) = shown.stdout.splitlines()
    head, _, seconds = line.rpartition(", a slot frees in ")
    assert head == "route checkout-mail-in, body:email 5/hour: 0 of 5 left"
    assert seconds.endswith(" s") and 3590 <= int(seconds[:-2]) <= 3600

    store = redis.Redis.from_url(redis_url)
    try:
        email_keys = store.keys(f"*{hide('body:email', VICTIM)}*")
        others = set(store.keys("*")) - set(email_keys)
        assert len(email_keys) == 1 and others  # the ip windows
        reset = limits("reset", "--route", "checkout-mail-in", "--email", "VICTIM@example.com")
        assert reset.returncode == 0, reset.stderr
        assert reset.stdout == \
            "route checkout-mail-in, body:email 5/hour: cleared (0 of 5 left before)\n"
        assert store.keys(f"*{hide('body:email', VICTIM)}*") == []
        assert set(store.keys("*")) == others  # nothing else was touched
    finally:
        store.close()
    again = limits("show", "--route", "checkout-mail-in", "--email", VICTIM)
    assert again.stdout == "route checkout-mail-in, body:email 5/hour: 5 of 5 left, " \
        "nothing counted\n"

    before = len(upstream.received)
    assert checkout(http, gateway, email=VICTIM).status_code == 200
    assert len(upstream.received) == before + 1
    after = limits("show", "--route", "checkout-mail-in", "--email", VICTIM)
    assert after.stdout.startswith("route checkout-mail-in, body:email 5/hour: 4 of 5 left, "
                                   "a slot frees in ")


def test_json_output_for_scripts(http, gateway, limits):
    for _ in range(3):
        assert checkout(http, gateway, phone="+1 (555) 010-0000").status_code == 200
    shown = limits("show", "--route", "checkout-mail-in", "--phone", "15550100000", "--json")
    assert shown.returncode == 0, shown.stderr
    body = json.loads(shown.stdout)
    (entry,) = body.pop("limits")
    assert body == {"route": "checkout-mail-in", "by": "phone"}
    assert 3590 <= entry.pop("reset") <= 3600
    assert entry == {"route": "checkout-mail-in", "per": "body:phone", "rate": "5/hour",
                     "limit": 5, "remaining": 2, "shadow": False}
    by_ip = json.loads(limits("show", "--route", "checkout-mail-in", "--ip", "::ffff:127.0.0.1",
                              "--json").stdout)
    assert [(e["rate"], e["remaining"]) for e in by_ip["limits"]] == [("30/hour", 27),
                                                                      ("100/day", 97)]
    cleared = json.loads(limits("reset", "--route", "checkout-mail-in", "--ip", "127.0.0.1",
                                "--json").stdout)
    assert [(e["rate"], e["remaining"]) for e in cleared["cleared"]] == [("30/hour", 27),
                                                                        ("100/day", 97)]
    by_ip = json.loads(limits("show", "--route", "checkout-mail-in", "--ip", "127.0.0.1",
                              "--json").stdout)
    assert [(e["remaining"], e["reset"]) for e in by_ip["limits"]] == [(30, 0), (100, 0)]


def test_a_client_is_shown_its_route_limit_and_its_own(http, gateway, limits):
    for _ in range(2):
        assert http.get(gateway.url + "/api/v2/public/inventory/x",
                        headers={"authorization": f"Bearer {TOKEN}"}).status_code == 200
    shown = limits("show", "--route", "inventory", "--client", "pricing-team")
    lines = shown.stdout.splitlines()
    assert lines[0].startswith("route inventory, client 2/minute: 0 of 2 left, a slot frees in ")
    assert lines[1].startswith("client pricing-team's own limit, client 600/minute: 598 of 600 "
                               "left, a slot frees in ")
    assert len(lines) == 2
    assert limits("reset", "--route", "inventory", "--client", "pricing-team").returncode == 0
    assert http.get(gateway.url + "/api/v2/public/inventory/x",
                    headers={"authorization": f"Bearer {TOKEN}"}).status_code == 200


def test_every_reason_to_stop_is_exit_2_with_one_line(limits, redis_url, tmp_path: Path):
    route = ("--route", "checkout-mail-in")
    lines = {
        "no redis": one_line_error(limits("show", *route, "--ip", "127.0.0.1", env=cli_env())),
        "refused": one_line_error(limits(
            "show", *route, "--email", VICTIM,
            env=cli_env(GATEWAY_REDIS_URL=f"redis://:hunter2-pw@127.0.0.1:{free_port()}/0"))),
        "no route": one_line_error(limits("show", "--route", "nope", "--ip", "127.0.0.1")),
        "no such limit": one_line_error(limits("reset", "--route", "inventory", "--email",
                                               VICTIM)),
        "no client limit": one_line_error(limits("show", *route, "--client", "public")),
        "unknown client": one_line_error(limits("show", "--route", "inventory", "--client",
                                                "nobody")),
        "bad ip": one_line_error(limits("show", *route, "--ip", "2001:db8::/64x")),
        "empty email": one_line_error(limits("show", *route, "--email", " \u200b ")),
        "no limit key": one_line_error(limits(
            "show", *route, "--email", VICTIM,
            env={k: v for k, v in cli_env(GATEWAY_REDIS_URL=redis_url).items()
                 if k not in ("GATEWAY_LIMIT_KEY_SECRET", "REUSELY_API_KEY")})),
    }
    assert lines["no redis"] == (
        "limits: GATEWAY_REDIS_URL is not set: without Redis each gateway worker counts in its "
        "own memory, which no other process can read or clear")
    assert lines["refused"].startswith("limits: Redis at redis://***@127.0.0.1:")
    assert lines["refused"].endswith(" could not answer (unreachable)")
    assert "hunter2" not in lines["refused"]
    assert lines["no route"] == \
        "--route: no route named 'nope' (routes: checkout-mail-in, inventory)"
    assert lines["no such limit"] == \
        "--email: route inventory has no limit keyed by an email field"
    assert lines["no client limit"] == \
        "--client: route checkout-mail-in has no limit keyed by client"
    assert lines["unknown client"].startswith("--client: no client named 'nobody'")
    assert lines["bad ip"] == "--ip: '2001:db8::/64x' is not an IP address"
    assert lines["empty email"] == "--email: nothing is left of ' \\u200b ' once normalised"
    assert lines["no limit key"].startswith("limits: neither GATEWAY_LIMIT_KEY_SECRET nor "
                                            "REUSELY_API_KEY is set")


def test_the_gateways_metrics_directory_is_left_alone(limits, redis_url, tmp_path: Path):
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    done = limits("show", "--route", "checkout-mail-in", "--email", VICTIM,
                  env=cli_env(GATEWAY_REDIS_URL=redis_url,
                              PROMETHEUS_MULTIPROC_DIR=str(metrics_dir)))
    assert done.returncode == 0, done.stderr
    assert list(metrics_dir.iterdir()) == []
