"""`make run` as a newcomer meets it: the banner's claims are true and every example works.

scripts/run.sh is started as `make run` starts it, on free ports taken from
the environment. The banner is parsed and each example is run with bash and
curl exactly as printed; a new example without a check here fails the test.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support.scripts import ScriptRun, command_line, loopback_bind, script_env

BANNER_END = "# 7."
CHECKOUT = "/api/v3/public/offer/mail-in"


@dataclass
class Stack:
    run: ScriptRun
    gateway: str
    sandbox: str
    metrics: str
    banner: str
    token: str


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    gateway, metrics, sandbox = loopback_bind(), loopback_bind(), loopback_bind()
    env = script_env(GATEWAY_BIND=gateway, GATEWAY_METRICS_BIND=metrics, SANDBOX_BIND=sandbox)
    run = ScriptRun("run", env, tmp_path_factory.mktemp("make-run"))
    try:
        text = run.wait_for_output(BANNER_END)
        text = run.wait_for_output("gateway_requests_total'", timeout=10)
        banner = text[text.index("reusely-gateway is running"):]
        match = re.search(r"made for this run only:\n\s+(\S+)\n", banner)
        assert match, banner
        yield Stack(run, f"http://{gateway}", f"http://{sandbox}", f"http://{metrics}",
                    banner, match[1])
    finally:
        run.stop()


def examples(banner: str) -> dict[int, str]:
    """Example number -> its shell commands, continuation lines joined."""
    found = {}
    for block in re.split(r"\n\s*\n", banner):
        lines = [line.strip() for line in block.splitlines()]
        heading = next((line for line in lines if re.match(r"# \d+\. ", line)), None)
        commands = [line for line in lines if line and not line.startswith("#")]
        if heading is None or not commands:
            continue
        script = "\n".join(commands).replace("\\\n", " ")
        found[int(heading.split(".")[0][2:])] = script
    return found


def sh(script: str) -> str:
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.returncode == 0, f"{script}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def http_parts(output: str) -> tuple[int, dict[str, str], str]:
    """(status, headers, body) of `curl -i` output."""
    head, _, body = output.replace("\r\n", "\n").partition("\n\n")
    status_line, *header_lines = head.splitlines()
    headers = {k.lower(): v.strip() for k, v in (h.split(":", 1) for h in header_lines)}
    return int(status_line.split()[1]), headers, body


def check_catalog(out: str, stack: Stack) -> None:
    body = json.loads(out)
    assert [c["slug"] for c in body["result"]["data"]] == ["phones", "tablets"]


def check_checkouts(out: str, stack: Stack) -> None:
    assert out.split() == ["201"] * 5 + ["429"]


def check_refusal(out: str, stack: Stack) -> None:
    status, headers, body = http_parts(out)
    assert status == 429
    assert json.loads(body)["error"]["code"] == "rate_limited"  # the gateway, not Reusely
    assert 1 <= int(headers["retry-after"]) <= 3600


def check_internal(out: str, stack: Stack) -> None:
    body = json.loads(out)
    assert body["status_code"] == 200
    assert [o["id"] for o in body["result"]["data"]] == [5001, 5002]


def check_no_token(out: str, stack: Stack) -> None:
    status, headers, body = http_parts(out)
    assert status == 401
    assert json.loads(body)["error"]["code"] == "unauthorized"
    assert headers["www-authenticate"].startswith("Bearer")


def check_lapsed(out: str, stack: Stack) -> None:
    lapsed, rest = out.split("\n", 1)
    response, reset = rest.strip().rsplit("\n", 1)
    assert json.loads(lapsed)["lapsed"] is True
    status, _, body = http_parts(response)
    # Reusely refusing the gateway's key is not the caller's fault: a 502 of the gateway's.
    answer = json.loads(body)
    assert status == 502 and answer["error"]["code"] == "upstream_credentials_rejected", out
    assert json.loads(reset)["lapsed"] is False
    assert httpx.get(stack.gateway + "/api/v2/public/catalog/categories").status_code == 200


def check_health(out: str, stack: Stack) -> None:
    readyz, *metrics = out.strip().splitlines()
    assert json.loads(readyz)["status"] == "ok"
    assert any('route="catalog"' in line and 'status="200"' in line for line in metrics)
    assert any('client="make-run-demo"' in line for line in metrics)


CHECKS: dict[int, Callable[[str, Stack], None]] = {
    1: check_catalog, 2: check_checkouts, 3: check_refusal, 4: check_internal,
    5: check_no_token, 6: check_lapsed, 7: check_health,
}


def test_every_example_the_banner_prints_works_as_printed(stack: Stack) -> None:
    found = examples(stack.banner)
    assert sorted(found) == sorted(CHECKS), "every banner example needs a check here"
    for number in sorted(found):
        CHECKS[number](sh(found[number]), stack)


def test_the_banner_tells_where_things_are_and_the_truth_about_limits(stack: Stack) -> None:
    banner = stack.banner
    assert f"running on {stack.gateway}" in banner
    assert stack.sandbox in banner
    assert f"{stack.metrics}/metrics" in banner
    assert "memory of its one worker" in banner
    workers = [p for p in stack.run.members() if "gunicorn" in command_line(p)]
    assert len(workers) == 2, "one gunicorn master and exactly one worker"


def test_twelve_concurrent_checkouts_for_one_email_let_exactly_five_through(
    stack: Stack,
) -> None:
    body = {"email": "rush@example.com", "first_name": "Ada", "last_name": "Lovelace",
            "payout_method": "paypal", "offer_detail": [{"product_id": 1, "condition_id": 2}]}

    def checkout(_: int) -> httpx.Response:
        return httpx.post(stack.gateway + CHECKOUT, json=body, timeout=20, trust_env=False)

    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(checkout, range(12)))
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [201] * 5 + [429] * 7
    assert {a.json()["error"]["code"] for a in answers if a.status_code == 429} == {
        "rate_limited"}


def test_the_demo_token_reaches_every_internal_area_the_sandbox_answers(stack: Stack) -> None:
    auth = {"Authorization": f"Bearer {stack.token}"}
    with httpx.Client(base_url=stack.gateway, headers=auth, trust_env=False) as client:
        priced = client.post("/api/v2/admin/pricing", json={
            "product_id": 1, "conditions": [{"name": "Good", "price": 333}]})
        assert priced.status_code == 200, priced.text
        pricing = client.get("/api/v2/admin/products/1/pricing").json()["result"]["pricing"]
        assert pricing[1] == {"condition_id": 2, "name": "Good", "price": 333,
                              "is_custom_price": True}
        lead = client.post("/api/v3/public/offer/mail-in/from-lead", json={
            "offer_id": "eyJpdiI6InNhbmRib3gtbGVhZC0xIn0", "address": "1 Main St",
            "payout_method": "paypal"})
        assert lead.status_code == 200, lead.text
        assert lead.json()["result"]["box_id"] == "BOX-7001"
        # The token is not a Reusely key: without it the internal routes stay shut.
        assert httpx.post(stack.gateway + "/api/v2/admin/pricing", json={}).status_code == 401


def test_the_sandbox_switches_cannot_be_reached_through_the_gateway(stack: Stack) -> None:
    for method in ("GET", "POST", "DELETE"):
        response = httpx.request(method, stack.gateway + "/_sandbox/state", json={"lapsed": True},
                                 trust_env=False)
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "route_not_found"
    assert httpx.get(stack.sandbox + "/_sandbox/state").json()["lapsed"] is False


def test_ctrl_c_stops_everything_and_leaves_nothing_behind(stack: Stack) -> None:
    temp_dirs = set(re.findall(r"(/\S+/reusely-run\.\w+)/sandbox\.log", stack.banner))
    assert len(temp_dirs) == 1
    (temp_dir,) = temp_dirs
    assert Path(temp_dir, "gateway.yaml").exists()
    assert stack.token not in Path(temp_dir, "gateway.yaml").read_text()
    status = stack.run.interrupt()
    assert status == 130
    assert stack.run.members() == []
    assert not Path(temp_dir).exists()
    assert "Segmentation fault" not in stack.run.output()
    for url in (stack.gateway, stack.sandbox, stack.metrics):
        with pytest.raises(httpx.ConnectError):
            httpx.get(url + "/", timeout=2, trust_env=False)
