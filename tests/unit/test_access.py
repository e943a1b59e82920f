"""Who is calling: bearer token lookup, and the caller each route sees."""

from __future__ import annotations

import pytest

from gateway.access import PUBLIC, Access
from gateway.config import Client
from gateway.errors import Forbidden, Unauthorized
from gateway.policy import Policy, parse_policy
from gateway.tokens import TokenTable, token_sha256
from tests.support.callers import NEW_TOKEN, OLD_TOKEN, OPS_TOKEN, policy, route
from tests.support.http import sha


def access() -> tuple[Access, Policy]:
    p = policy()
    return Access(TokenTable(p.clients)), p


# -- TokenTable ---------------------------------------------------------------


def test_a_token_finds_its_client_by_sha256():
    table = TokenTable(policy().clients)
    found = table.lookup(OPS_TOKEN)
    assert isinstance(found, Client) and found.name == "ops"
    assert token_sha256(OPS_TOKEN) == sha(OPS_TOKEN)


def test_both_hashes_of_a_client_being_rotated_find_it():
    table = TokenTable(policy().clients)
    assert table.lookup(OLD_TOKEN) is not None and table.lookup(OLD_TOKEN).name == "pricing"
    assert table.lookup(NEW_TOKEN) is not None and table.lookup(NEW_TOKEN).name == "pricing"


@pytest.mark.parametrize("token", ["", "nope", OPS_TOKEN + "x", OPS_TOKEN[:-1],
                                   OPS_TOKEN.upper(), sha(OPS_TOKEN)])
def test_an_unknown_token_finds_nobody(token):
    assert TokenTable(policy().clients).lookup(token) is None


def test_a_table_without_clients_finds_nobody():
    assert TokenTable(()).lookup(OPS_TOKEN) is None


def test_upper_case_hashes_in_the_policy_are_accepted():
    p = parse_policy({
        "routes": [{"name": "r", "path": "/r", "access": "internal"}],
        "clients": [{"name": "a", "token_sha256": sha(OPS_TOKEN).upper(), "routes": ["r"]}],
    })
    assert TokenTable(p.clients).lookup(OPS_TOKEN) is not None


# -- Access -------------------------------------------------------------------


def caller_of(a: Access, p: Policy, name: str, authorization: str | None):  # type: ignore[no-untyped-def]
    caller = a.caller(None if authorization is None else authorization.encode())
    a.authorize(route(p, name), caller)
    return caller


def test_a_public_route_without_a_token_is_the_public_caller():
    a, p = access()
    assert caller_of(a, p, "catalog", None) is PUBLIC


@pytest.mark.parametrize("authorization", [
    None, "", "Bearer", "Bearer ", "Basic x", "Basic b3BzOnB3", f"Bearer  {OPS_TOKEN}",
    f"Bearer {OPS_TOKEN} ", f"Bearer {OPS_TOKEN} extra", f"Token {OPS_TOKEN}", OPS_TOKEN,
    "Bearer unknown-token", f"Bearer\t{OPS_TOKEN}", f"Bearer {OPS_TOKEN}\u00e9",
])
def test_missing_malformed_and_unknown_tokens_are_the_same_401(authorization):
    a, p = access()
    with pytest.raises(Unauthorized) as err:
        caller_of(a, p, "inventory", authorization)
    assert dict(err.value.headers)[b"www-authenticate"].startswith(b"Bearer")
    assert err.value.message == Unauthorized.message  # no hint which case it was


def test_the_bearer_scheme_is_case_insensitive():
    a, p = access()
    for scheme in ("Bearer", "bearer", "BEARER"):
        assert caller_of(a, p, "inventory", f"{scheme} {OPS_TOKEN}").name == "ops"


def test_a_valid_token_is_its_client_and_a_route_it_lacks_is_forbidden():
    a, p = access()
    caller = caller_of(a, p, "inventory", f"Bearer {NEW_TOKEN}")
    assert caller.name == "pricing" and caller.client is not None
    known = a.caller(f"Bearer {NEW_TOKEN}".encode())
    assert known.name == "pricing"  # known before the route refuses it: metrics name it
    with pytest.raises(Forbidden):
        a.authorize(route(p, "orders"), known)
    assert caller_of(a, p, "orders", f"Bearer {OPS_TOKEN}").name == "ops"


def test_a_token_sent_on_a_public_route_must_be_valid_and_names_the_caller():
    a, p = access()
    with pytest.raises(Unauthorized):
        caller_of(a, p, "catalog", "Bearer unknown-token")
    with pytest.raises(Unauthorized):
        caller_of(a, p, "catalog", "Basic x")
    assert caller_of(a, p, "catalog", f"Bearer {OLD_TOKEN}").name == "pricing"


def test_a_token_on_a_public_route_its_client_does_not_list_still_names_the_caller():
    p = parse_policy({
        "routes": [{"name": "catalog", "path": "/c/{rest:path}", "access": "public"},
                   {"name": "inventory", "path": "/i/{rest:path}", "access": "internal"}],
        "clients": [{"name": "stock", "token_sha256": sha(OPS_TOKEN), "routes": ["inventory"]}],
    })
    a = Access(TokenTable(p.clients))
    assert caller_of(a, p, "catalog", f"Bearer {OPS_TOKEN}").name == "stock"
