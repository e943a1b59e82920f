"""`reusely-gateway sandbox` reads its switches from the environment at start."""

from __future__ import annotations

import os
import subprocess

import httpx

from tests.support.gateway import CLI, free_port, wait_for


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REUSELY_", "SANDBOX_"))}
    return {**env, "REUSELY_API_KEY": "cli-test-key", **extra}


def _state(url: str) -> httpx.Response | None:
    try:
        return httpx.get(f"{url}/_sandbox/state", timeout=1, trust_env=False)
    except httpx.TransportError:
        return None


def test_a_bad_switch_variable_stops_the_sandbox_with_exit_2_and_one_line() -> None:
    result = subprocess.run([CLI, "sandbox", "--bind", f"127.0.0.1:{free_port()}"],
                            env=_env(SANDBOX_LAPSED="maybe"), capture_output=True, text=True,
                            timeout=30, check=False)
    assert result.returncode == 2
    assert "SANDBOX_LAPSED" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_switch_variables_apply_from_the_first_request() -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen([CLI, "sandbox", "--bind", f"127.0.0.1:{port}"],
                               env=_env(SANDBOX_RATE_LIMIT="/api/v3/", SANDBOX_RETRY_AFTER="42"),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        state = wait_for(lambda: _state(url), "the sandbox to answer", timeout=30)
        assert state.json()["rate_limit"] == {"path_prefix": "/api/v3/", "retry_after": "42"}
        refused = httpx.post(f"{url}/api/v3/public/offer/mail-in", json={},
                             headers={"x-api-key": "cli-test-key"}, trust_env=False)
        assert refused.status_code == 429
        assert refused.headers["retry-after"] == "42"
        allowed = httpx.get(f"{url}/api/v2/public/catalog/categories",
                            headers={"x-api-key": "cli-test-key"}, trust_env=False)
        assert allowed.status_code == 200
    finally:
        process.terminate()
        process.wait(10)
