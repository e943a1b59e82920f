"""The environment: credentials and their files, the limit key, binds, and every warning once."""

from __future__ import annotations

import os

import pytest

from gateway.environment import default_policy_text, hide_password, load_settings, policy_text
from gateway.errors import ConfigError

MINIMAL = """
routes:
  - name: catalog
    path: /api/v2/public/catalog/{rest:path}
    methods: [GET]
    credentials: [api_key]
    access: public
"""
TWO_ROUTES = MINIMAL + """  - name: inventory
    path: /api/v2/public/inventory/{rest:path}
    credentials: [api_key, secret_key, marketplace_key]
"""


def test_without_gateway_config_the_cwd_file_or_the_builtin_policy_is_used(tmp_path):
    text, source = policy_text({}, cwd=tmp_path)
    assert source == "built-in default policy" and text == default_policy_text()
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "gateway.yaml").write_text(MINIMAL)
    text, source = policy_text({}, cwd=tmp_path)
    assert text == MINIMAL and source.endswith("config/gateway.yaml")


def test_file_variables_win_and_lose_their_trailing_newline(tmp_path):
    key_file = tmp_path / "api-key"
    key_file.write_text("from-file\n")
    settings = load_settings({"REUSELY_API_KEY": "from-env",
                              "REUSELY_API_KEY_FILE": str(key_file)}, text=MINIMAL)
    api_key = settings.credentials["api_key"]
    assert api_key is not None and api_key.reveal() == "from-file"
    assert "from-file" not in repr(settings)


def test_an_unreadable_credential_file_disables_rather_than_crashes(tmp_path):
    settings = load_settings({"REUSELY_API_KEY_FILE": str(tmp_path / "nope")}, text=MINIMAL)
    assert settings.credentials["api_key"] is None
    assert "REUSELY_API_KEY_FILE: cannot read" in settings.credential_problems["api_key"]


def test_environment_problems_are_located():
    with pytest.raises(ConfigError) as info:
        load_settings({"GATEWAY_BIND": "nope", "GATEWAY_WORKERS": "0",
                       "GATEWAY_LOG_LEVEL": "loud", "GATEWAY_REDIS_URL": "http://x",
                       "REUSELY_BASE_URL": "ftp://x"}, text=MINIMAL)
    found = info.value.problems
    for prefix in ("GATEWAY_BIND:", "GATEWAY_WORKERS:", "GATEWAY_LOG_LEVEL:",
                   "GATEWAY_REDIS_URL:", "REUSELY_BASE_URL:"):
        assert any(p.startswith(prefix) for p in found), (prefix, found)


def test_every_documented_redis_url_scheme_is_accepted():
    for url in ("redis://h:6379/0", "rediss://h", "redis+sentinel://h:26379/mymaster",
                "redis+cluster://h:7000"):
        assert load_settings({"GATEWAY_REDIS_URL": url}, text=MINIMAL).redis_url == url




def test_a_missing_config_file_names_what_pointed_at_it(tmp_path):
    missing = str(tmp_path / "absent.yaml")
    with pytest.raises(ConfigError) as info:
        policy_text({"GATEWAY_CONFIG": missing})
    assert info.value.problems[0].startswith(f"GATEWAY_CONFIG: cannot read {missing}: ")
    with pytest.raises(ConfigError) as info:
        policy_text({"GATEWAY_CONFIG": missing}, named_by="--config absent.yaml")
    assert info.value.problems[0].startswith(f"--config absent.yaml: cannot read {missing}: ")


# -- the limit key ----------------------------------------------------------------


def test_the_limit_key_is_derived_from_the_api_key_exactly_as_before():
    """Existing Redis counts stay valid only while this derivation never changes."""
    settings = load_settings({"REUSELY_API_KEY": "test-api-key-5f1c"}, text=MINIMAL)
    assert settings.limit_key.hex() == (
        "c95ca5fda793bf1daa2df274307009779551524dd84f59e8163a1381ea259f56")
    assert settings.limit_key_source == "derived from REUSELY_API_KEY"
    assert not any("limit key" in w or "LIMIT_KEY" in w for w in settings.warnings)


def test_a_limit_key_secret_is_used_as_given_and_never_shown(tmp_path):
    settings = load_settings({"REUSELY_API_KEY": "k", "GATEWAY_LIMIT_KEY_SECRET": "sécret"},
                             text=MINIMAL)
    assert settings.limit_key == "sécret".encode()
    assert settings.limit_key_source == "GATEWAY_LIMIT_KEY_SECRET"
    secret_file = tmp_path / "limit-key"
    secret_file.write_text("from-a-file\n")
    settings = load_settings({"GATEWAY_LIMIT_KEY_SECRET_FILE": str(secret_file)}, text=MINIMAL)
    assert settings.limit_key == b"from-a-file"
    assert settings.credential_files == {"limit_key_secret": str(secret_file)}
    assert "from-a-file" not in repr(settings) and repr(settings.limit_key) not in repr(settings)


def test_without_secret_or_api_key_the_limit_key_is_random_per_process_and_said_so():
    first, second = (load_settings({}, text=MINIMAL) for _ in range(2))
    assert len(first.limit_key) == 32 and first.limit_key != second.limit_key
    assert first.limit_key_source == "random per process"
    assert sum("random per-process secret" in w for w in first.warnings) == 1


def test_an_api_key_from_a_file_without_a_limit_key_secret_is_a_warning(tmp_path):
    key_file = tmp_path / "api-key"
    key_file.write_text("k\n")
    env = {"REUSELY_API_KEY_FILE": str(key_file)}
    expected = ("credentials come from files and GATEWAY_LIMIT_KEY_SECRET is not set: "
                "a rotated API key would change the limit keys")
    assert expected in load_settings(env, text=MINIMAL).warnings
    with_secret = load_settings({**env, "GATEWAY_LIMIT_KEY_SECRET": "s"}, text=MINIMAL)
    assert expected not in with_secret.warnings
    assert expected not in load_settings({"REUSELY_API_KEY": "k"}, text=MINIMAL).warnings


# -- facts worked out once ------------------------------------------------------------


def test_disabled_routes_and_credential_files_are_worked_out_once(tmp_path):
    secret_file = tmp_path / "secret-key"
    secret_file.write_text("s\n")
    settings = load_settings({"REUSELY_API_KEY": "k",
                              "REUSELY_SECRET_KEY_FILE": str(secret_file),
                              "REUSELY_MARKETPLACE_KEY_FILE": str(tmp_path / "nope")},
                             text=TWO_ROUTES)
    assert settings.disabled_routes == {"inventory": ("marketplace_key",)}
    assert settings.credential_files == {"secret_key": str(secret_file),
                                         "marketplace_key": str(tmp_path / "nope")}
    assert "route inventory is disabled: marketplace_key missing" in settings.warnings
    assert any(w.startswith("credential marketplace_key: REUSELY_MARKETPLACE_KEY_FILE: cannot "
                            "read") for w in settings.warnings)


def test_every_warning_is_said_once():
    text = TWO_ROUTES + """  - name: categories
    path: /api/v2/public/catalog/categories
"""
    settings = load_settings({}, text=text)
    assert len(settings.warnings) == len(set(settings.warnings))
    assert settings.warnings[0].startswith("routes[2] (categories): GET requests")
    assert settings.warnings[0] == settings.policy.warnings[0]
    assert sum(w.startswith("GATEWAY_REDIS_URL is not set") for w in settings.warnings) == 1
    assert sum("is disabled" in w for w in settings.warnings) == 2  # categories needs none
    redis = load_settings({"GATEWAY_REDIS_URL": "redis://h", "REUSELY_API_KEY": "k"},
                          text=MINIMAL)
    assert redis.warnings == ()


def test_the_base_url_is_shown_without_its_password():
    settings = load_settings({"REUSELY_BASE_URL": "https://user:pa55word@api.example.com/v/"},
                             text=MINIMAL)
    assert settings.base_url == "https://user:pa55word@api.example.com/v"
    assert settings.base_url_display == "https://***@api.example.com/v"
    plain = load_settings({}, text=MINIMAL)
    assert plain.base_url == plain.base_url_display == "https://api.reusely.com"
    with pytest.raises(ConfigError) as info:
        load_settings({"REUSELY_BASE_URL": "ftp://user:pa55word@x"}, text=MINIMAL)
    assert "pa55word" not in " ".join(info.value.problems)


def test_workers_default_to_the_cpu_count():
    assert load_settings({}, text=MINIMAL).workers == (os.cpu_count() or 1)
    assert load_settings({"GATEWAY_WORKERS": "3"}, text=MINIMAL).workers == 3


def test_the_packaged_default_policy_loads_with_nothing_set():
    settings = load_settings({}, text=default_policy_text(), source="built-in default policy")
    assert set(settings.disabled_routes) == {r.name for r in settings.policy.routes}
    assert settings.policy_source == "built-in default policy"


@pytest.mark.parametrize(("url", "shown"), [
    ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
    ("redis://user:hunter2-secret@h:6379/0", "redis://***@h:6379/0"),
    ("redis://h:1/6?password=hunter2-secret", "redis://h:1/6?***"),
    ("rediss://:pw@h/0?password=x#frag", "rediss://***@h/0?***"),
])
def test_urls_are_printed_without_their_passwords(url, shown):
    assert hide_password(url) == shown
