"""The credential table: per-route headers, replaced whole when a value changes."""

from __future__ import annotations

import hashlib

from gateway.credentials import CredentialSet, fingerprint, fingerprints, header_value
from gateway.environment import load_settings
from gateway.settings import Secret

POLICY = """
routes:
  - name: catalog
    path: /catalog/{rest:path}
    credentials: [api_key, tenant_id]
  - name: market
    path: /market/{rest:path}
    credentials: [marketplace_key]
  - name: open
    path: /open
"""


def credential_set(**values: str) -> CredentialSet:
    settings = load_settings({}, text=POLICY)
    return CredentialSet({k: Secret(v) for k, v in values.items()}, settings.policy.routes)


def test_a_route_adds_exactly_its_credentials_and_is_disabled_while_one_is_missing():
    creds = credential_set(api_key="key-1111aaaa", tenant_id="tenant-1", secret_key="s-1")
    assert creds.headers_for("catalog") == [(b"x-api-key", b"key-1111aaaa"),
                                            (b"x-tenant-id", b"tenant-1")]
    assert creds.headers_for("open") == []
    assert creds.headers_for("market") is None
    assert creds.missing("market") == ("marketplace_key",)


def test_a_new_value_replaces_the_table_and_enables_the_routes_it_completes():
    creds = credential_set(api_key="key-1111aaaa", tenant_id="tenant-1")
    before = creds.headers_for("catalog")
    assert creds.replace("api_key", Secret("key-2222bbbb")) == []
    assert creds.headers_for("catalog") == [(b"x-api-key", b"key-2222bbbb"),
                                            (b"x-tenant-id", b"tenant-1")]
    assert before == [(b"x-api-key", b"key-1111aaaa"), (b"x-tenant-id", b"tenant-1")]
    assert creds.replace("marketplace_key", Secret("market-1")) == ["market"]
    assert creds.headers_for("market") == [(b"x-marketplace-key", b"market-1")]
    assert creds.missing("market") == ()


def test_every_value_held_since_start_up_stays_known():
    creds = credential_set(api_key="key-1111aaaa", tenant_id="tenant-1")
    creds.replace("api_key", Secret("key-2222bbbb"))
    creds.replace("api_key", Secret("key-3333cccc"))
    creds.replace("api_key", Secret("key-2222bbbb"))
    assert list(creds.seen) == [b"key-1111aaaa", b"tenant-1", b"key-2222bbbb", b"key-3333cccc"]
    assert b"key-1111aaaa" in creds.seen and len(creds.seen) == 4


def test_a_value_no_header_can_carry_disables_its_routes_instead_of_being_sent():
    creds = credential_set(api_key="two\nlines", tenant_id="tenant-1")
    assert creds.headers_for("catalog") is None
    assert creds.missing("catalog") == ("api_key",)
    assert b"two\nlines" not in creds.seen
    assert header_value("tab\tinside") == b"tab\tinside"
    assert header_value("caf\u00e9") == b"caf\xe9"
    for bad in ("a\rb", "a\x00b", "a\x7fb", "snow\u2603man"):
        assert header_value(bad) is None


def test_a_fingerprint_is_the_first_8_hex_digits_of_the_sha256():
    assert fingerprint("key-1111aaaa") == hashlib.sha256(b"key-1111aaaa").hexdigest()[:8]
    values = {"tenant_id": Secret("t"), "api_key": Secret("k"), "secret_key": None}
    assert list(fingerprints(values)) == ["api_key", "tenant_id"]
