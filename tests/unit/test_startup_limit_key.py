"""The limit key `serve` works out once and hands to every worker it starts, then or later."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.environment import STARTUP_LIMIT_KEY, load_settings, startup_limit_key
from gateway.errors import ConfigError

MINIMAL = "routes:\n  - name: a\n    path: /a\n    credentials: [api_key]\n"


def test_a_worker_keeps_the_key_derived_at_start_up_after_the_api_key_file_changes(
        tmp_path: Path):
    key_file = tmp_path / "api-key"
    key_file.write_text("api-key-at-start-up\n")
    env = {"REUSELY_API_KEY_FILE": str(key_file)}
    at_start = load_settings(env, text=MINIMAL)
    handed = startup_limit_key(at_start)
    assert handed == f"derived:{at_start.limit_key.hex()}"
    key_file.write_text("api-key-rotated\n")
    rotated = load_settings(env, text=MINIMAL)
    assert rotated.limit_key != at_start.limit_key  # what a worker would have done alone
    worker = load_settings({**env, STARTUP_LIMIT_KEY: handed}, text=MINIMAL)
    assert worker.limit_key == at_start.limit_key
    assert worker.limit_key_source == "derived from REUSELY_API_KEY"
    assert worker.credentials["api_key"].reveal() == "api-key-rotated"  # the credential is new


def test_a_limit_key_secret_is_handed_on_too_and_its_file_is_then_not_needed(tmp_path: Path):
    secret_file = tmp_path / "limit-key"
    secret_file.write_text("limit-key-at-start-up\n")
    env = {"REUSELY_API_KEY": "k", "GATEWAY_LIMIT_KEY_SECRET_FILE": str(secret_file)}
    handed = startup_limit_key(load_settings(env, text=MINIMAL))
    assert handed == "secret:" + b"limit-key-at-start-up".hex()
    secret_file.unlink()
    with pytest.raises(ConfigError):
        load_settings(env, text=MINIMAL)
    worker = load_settings({**env, STARTUP_LIMIT_KEY: handed}, text=MINIMAL)
    assert worker.limit_key == b"limit-key-at-start-up"
    assert worker.limit_key_source == "GATEWAY_LIMIT_KEY_SECRET"


def test_a_random_key_is_not_handed_on():
    assert startup_limit_key(load_settings({}, text=MINIMAL)) is None


@pytest.mark.parametrize("value", ["derived:zz", "derived:", "other:00ff", "00ff"])
def test_a_malformed_start_up_key_is_a_located_problem(value: str):
    with pytest.raises(ConfigError) as caught:
        load_settings({"REUSELY_API_KEY": "k", STARTUP_LIMIT_KEY: value}, text=MINIMAL)
    assert caught.value.problems == [f"{STARTUP_LIMIT_KEY}: set by `reusely-gateway serve` "
                                     "for its workers only; unset it"]
