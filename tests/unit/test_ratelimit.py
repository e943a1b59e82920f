"""Rate limit keys and decisions on in-process memory storage (`async+memory://`)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
import yaml
from limits.aio.storage import MemoryStorage
from limits.storage import storage_from_string

from gateway.config import Route, Settings
from gateway.environment import load_settings
from gateway.errors import InvalidBody
from gateway.ratelimit import Decision, Limiter, body_values, create_storage, normalise

T = TypeVar("T")
SECRET = b"unit-test-limit-key"


def settings(routes: list[dict[str, Any]], clients: list[dict[str, Any]] | None = None,
             **env: str) -> Settings:
    text = yaml.safe_dump({"routes": routes, "clients": clients or []})
    return load_settings({"REUSELY_API_KEY": "k", **env}, text=text, source="test")


def mail_in(*limits: dict[str, Any], name: str = "checkout") -> dict[str, Any]:
    return {"name": name, "path": f"/{name}", "methods": ["POST"], "access": "public",
            "credentials": ["api_key"], "limits": list(limits)}


def run(factory: Callable[[Limiter], Awaitable[T]], s: Settings) -> T:
    """Run `factory(limiter)` on a fresh loop with a fresh memory storage."""

    async def main() -> T:
        storage = storage_from_string("async+memory://")
        assert isinstance(storage, MemoryStorage)
        return await factory(Limiter(s, storage, secret=SECRET))

    return asyncio.run(main())


def headers_of(decision: Decision) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in decision.headers}


async def check(limiter: Limiter, route: Route, *, ip: str = "10.0.0.1", caller: str = "public",
                body: dict[str, str] | None = None, client_rules: tuple[Any, ...] = (),
                headers: dict[str, str] | None = None) -> Decision:
    return await limiter.check(route, caller=caller, client_rules=client_rules, ip=ip,
                               headers=headers or {}, body=body or {})


# -- normalise ----------------------------------------------------------------


@pytest.mark.parametrize(("raw", "expected"), [
    ("ada@example.com", "ada@example.com"),
    ("  Ada@Example.COM\t\n", "ada@example.com"),
    ("ADA@EXAMPLE.COM ", "ada@example.com"),
    ("\uff41\uff44\uff41@example.com", "ada@example.com"),  # full-width letters fold under NFKC
])
def test_emails_are_trimmed_and_lower_cased(raw, expected):
    assert normalise("email", raw) == expected


@pytest.mark.parametrize(("raw", "expected"), [
    ("+1 (555) 010-0000", "+15550100000"),
    ("+15550100000", "+15550100000"),
    ("  +1.555.010.0000 ", "+15550100000"),
    ("1 555 010 0000", "15550100000"),
    ("555-0100 ext. 7", "55501007"),
    ("00 44 20 7946 0000", "00442079460000"),
    ("(+1) 555", "1555"),  # a + not leading the trimmed value is not kept
])
def test_phones_keep_digits_and_a_leading_plus(raw, expected):
    assert normalise("phone", raw) == expected


def test_the_field_kind_is_read_from_the_leaf_of_a_dotted_name():
    assert normalise("customer.email", " A@B.C ") == "a@b.c"
    assert normalise("lead.phone_number", "+1 555") == "+1555"
    assert normalise("coupon", "  Ab C ") == "Ab C"  # other fields: trimmed only


# -- body_values --------------------------------------------------------------


def route_with(*fields: str) -> Route:
    s = settings([mail_in(*({"per": f"body:{f}", "rate": "5/hour"} for f in fields))])
    return s.policy.routes[0]


def test_present_fields_are_normalised_and_absent_or_null_ones_left_out():
    r = route_with("email", "phone")
    assert body_values(r, b'{"email": " Ada@Example.com ", "phone": "+1 (555) 010-0000"}') == {
        "email": "ada@example.com", "phone": "+15550100000"}
    assert body_values(r, b'{"email": "a@b.c"}') == {"email": "a@b.c"}
    assert body_values(r, b'{"email": null, "phone": "555"}') == {"phone": "555"}
    assert body_values(r, b'{"other": 1}') == {}
    assert body_values(r, b"{}") == {}


def test_the_body_is_json_whatever_its_encoding_of_whitespace():
    r = route_with("email")
    assert body_values(r, b'\n  {"email":"a@b.c"}  \n') == {"email": "a@b.c"}


def test_nested_fields_are_found_by_dotted_name():
    r = route_with("customer.email")
    assert body_values(r, b'{"customer": {"email": "A@B.C"}}') == {"customer.email": "a@b.c"}
    assert body_values(r, b'{"customer": null}') == {}
    assert body_values(r, b"{}") == {}
    with pytest.raises(InvalidBody):
        body_values(r, b'{"customer": "a@b.c"}')


@pytest.mark.parametrize("body", [
    b"", b"not json", b"[]", b'["email"]', b'"a@b.c"', b"42", b"null", b"true",
    b'{"email": "a@b.c"', b"\xff\xfe\x00",
])
def test_a_body_that_is_not_a_json_object_is_invalid(body):
    with pytest.raises(InvalidBody):
        body_values(route_with("email"), body)


def test_a_deeply_nested_body_is_invalid_not_a_crash():
    with pytest.raises(InvalidBody):
        body_values(route_with("email"), b"[" * 100_000 + b"]" * 100_000)


@pytest.mark.parametrize("value", [1, 1.5, True, False, [], ["a@b.c"], {"v": "a@b.c"}])
def test_a_present_field_that_is_not_a_string_is_invalid(value):
    with pytest.raises(InvalidBody):
        body_values(route_with("email"), json.dumps({"email": value}).encode())


# -- Limiter.check ------------------------------------------------------------


def test_a_route_without_limits_decides_nothing():
    s = settings([mail_in()])

    async def go(limiter: Limiter) -> Decision:
        return await check(limiter, s.policy.routes[0])

    d = run(go, s)
    assert d.refused_per is None and d.headers == [] and not d.storage_error


def test_the_sixth_request_for_one_email_is_refused_with_retry_after():
    s = settings([mail_in({"per": "body:email", "rate": "5/hour"})])
    r = s.policy.routes[0]

    async def go(limiter: Limiter) -> list[Decision]:
        return [await check(limiter, r, body={"email": "a@b.c"}) for _ in range(6)]

    decisions = run(go, s)
    assert [d.refused_per for d in decisions] == [None] * 5 + ["body:email"]
    assert [headers_of(d)["x-ratelimit-remaining"] for d in decisions] == \
        ["4", "3", "2", "1", "0", "0"]
    assert 3590 <= decisions[-1].retry_after <= 3600


def test_a_refusal_by_one_limit_does_not_consume_the_others():
    s = settings([mail_in({"per": "body:email", "rate": "2/hour"},
                          {"per": "ip", "rate": "4/hour"})])
    r = s.policy.routes[0]

    async def go(limiter: Limiter) -> list[Decision]:
        out = [await check(limiter, r, body={"email": "a@b.c"}) for _ in range(5)]
        # Three refusals by the email limit used none of the ip limit's 4:
        out += [await check(limiter, r, body={"email": f"other{i}@b.c"}) for i in range(3)]
        return out

    d = run(go, s)
    assert [x.refused_per for x in d] == [None, None, "body:email", "body:email", "body:email",
                                          None, None, "ip"]


def test_separate_routes_separate_ips_and_separate_emails_count_apart():
    s = settings([mail_in({"per": "body:email", "rate": "1/hour"}, {"per": "ip", "rate": "1/hour"},
                          name="one"),
                  mail_in({"per": "body:email", "rate": "1/hour"}, name="two")])
    one, two = s.policy.routes

    async def go(limiter: Limiter) -> list[str | None]:
        return [(await check(limiter, one, ip="10.0.0.1", body={"email": "a@b.c"})).refused_per,
                (await check(limiter, two, ip="10.0.0.1", body={"email": "a@b.c"})).refused_per,
                (await check(limiter, one, ip="10.0.0.2", body={"email": "b@b.c"})).refused_per,
                (await check(limiter, one, ip="10.0.0.1", body={"email": "c@b.c"})).refused_per,
                (await check(limiter, one, ip="10.0.0.3", body={"email": "a@b.c"})).refused_per]

    assert run(go, s) == [None, None, None, "ip", "body:email"]


def test_a_keyed_limit_applies_only_when_its_key_is_present():
    s = settings([mail_in({"per": "body:email", "rate": "1/hour"},
                          {"per": "body:phone", "rate": "1/hour"},
                          {"per": "header:x-shop", "rate": "1/hour"})])
    r = s.policy.routes[0]

    async def go(limiter: Limiter) -> list[str | None]:
        out = [(await check(limiter, r)).refused_per for _ in range(3)]
        out.append((await check(limiter, r, body={"phone": "+1555"})).refused_per)
        out.append((await check(limiter, r, body={"phone": "+1555"})).refused_per)
        out.append((await check(limiter, r, headers={"x-shop": "s1"})).refused_per)
        out.append((await check(limiter, r, headers={"x-shop": "s1"})).refused_per)
        out.append((await check(limiter, r, headers={"x-shop": "s2"})).refused_per)
        return out

    assert run(go, s) == [None, None, None, None, "body:phone", None, "header:x-shop", None]


def test_headers_name_the_tightest_limit_the_longer_window_on_a_tie():
    s = settings([mail_in({"per": "ip", "rate": "3/minute"},
                          {"per": "global", "rate": "3/hour"},
                          {"per": "body:email", "rate": "10/day"})])
    r = s.policy.routes[0]

    async def go(limiter: Limiter) -> Decision:
        return await check(limiter, r, body={"email": "a@b.c"})

    h = headers_of(run(go, s))
    # ip and global both have 2 left; global's hour is the longer window.
    assert (h["x-ratelimit-limit"], h["x-ratelimit-remaining"]) == ("3", "2")
    assert int(h["x-ratelimit-reset"]) == 3600
    assert h["ratelimit"].startswith('"checkout.global";r=2;t=')
    policy = h["ratelimit-policy"]
    for name, q, w in (("checkout.ip", 3, 60), ("checkout.global", 3, 3600),
                       ("checkout.body-email", 10, 86400)):
        assert f'"{name}";q={q};w={w}' in policy
    assert "a@b.c" not in repr(h)


def test_headers_follow_the_limit_with_fewest_remaining():
    s = settings([mail_in({"per": "ip", "rate": "2/minute"}, {"per": "global", "rate": "5/hour"})])
    r = s.policy.routes[0]

    async def go(limiter: Limiter) -> list[Decision]:
        return [await check(limiter, r) for _ in range(2)]

    first, second = map(headers_of, run(go, s))
    assert (first["x-ratelimit-limit"], first["x-ratelimit-remaining"]) == ("2", "1")
    assert (second["x-ratelimit-limit"], second["x-ratelimit-remaining"]) == ("2", "0")
    assert 1 <= int(second["x-ratelimit-reset"]) <= 60


def test_several_rates_in_one_limit_each_count():
    s = settings([mail_in({"per": "ip", "rate": "2/minute;3/hour"})])
    r = s.policy.routes[0]

    async def go(limiter: Limiter) -> list[Decision]:
        return [await check(limiter, r) for _ in range(3)]

    decisions = run(go, s)
    assert [d.refused_per for d in decisions] == [None, None, "ip"]
    policy = headers_of(decisions[0])["ratelimit-policy"]
    assert '"checkout.ip.60s";q=2;w=60' in policy and '"checkout.ip.3600s";q=3;w=3600' in policy


def test_a_shadow_limit_refuses_nothing_adds_no_headers_and_reports_each_would_be_refusal():
    s = settings([mail_in({"per": "body:email", "rate": "1/hour", "shadow": True})])
    r = s.policy.routes[0]

    async def go(limiter: Limiter) -> list[Decision]:
        return [await check(limiter, r, body={"email": "a@b.c"}) for _ in range(3)]

    decisions = run(go, s)
    assert [d.refused_per for d in decisions] == [None, None, None]
    assert [d.headers for d in decisions] == [[], [], []]
    assert [d.shadow_refused for d in decisions] == [[], [("checkout", "body:email")],
                                                     [("checkout", "body:email")]]


def test_a_shadow_limit_beside_an_enforced_one_leaves_the_enforced_headers_alone():
    s = settings([mail_in({"per": "ip", "rate": "1/hour", "shadow": True},
                          {"per": "global", "rate": "10/hour"})])
    r = s.policy.routes[0]

    async def go(limiter: Limiter) -> list[Decision]:
        return [await check(limiter, r) for _ in range(2)]

    _, second = run(go, s)
    assert second.refused_per is None and second.shadow_refused == [("checkout", "ip")]
    h = headers_of(second)
    assert (h["x-ratelimit-limit"], h["x-ratelimit-remaining"]) == ("10", "8")
    assert "checkout.ip" not in h["ratelimit-policy"]


def test_client_limits_count_across_routes():
    clients = [{"name": "pricing", "token_sha256": "0" * 64, "routes": ["*"],
                "limits": [{"per": "client", "rate": "3/hour"}]}]
    s = settings([mail_in(name="one"), mail_in(name="two")], clients)
    one, two = s.policy.routes
    rules = s.policy.clients[0].limits

    async def go(limiter: Limiter) -> list[str | None]:
        out = []
        for r in (one, two, one, two):
            d = await check(limiter, r, caller="pricing", client_rules=rules)
            out.append(d.refused_per)
        d = await check(limiter, one, caller="other", client_rules=rules)
        out.append(d.refused_per)
        return out

    assert run(go, s) == [None, None, None, "client", None]


def test_storage_keys_never_hold_the_email_phone_or_ip():
    s = settings([mail_in({"per": "body:email", "rate": "5/hour"},
                          {"per": "body:phone", "rate": "5/hour"},
                          {"per": "ip", "rate": "5/hour"})])
    r = s.policy.routes[0]

    async def go() -> list[str]:
        storage = MemoryStorage()
        limiter = Limiter(s, storage, secret=SECRET)
        await check(limiter, r, ip="203.0.113.9",
                    body={"email": "ada@example.com", "phone": "+15550100000"})
        return list(storage.events)

    keys = asyncio.run(go())
    assert len(keys) == 3
    for key in keys:
        for secret in ("ada@example.com", "+15550100000", "15550100000", "203.0.113.9"):
            assert secret not in key


def test_create_storage_is_memory_without_a_redis_url():
    assert isinstance(create_storage(settings([mail_in()])), MemoryStorage)


def test_a_shadow_limit_with_two_rates_reports_a_request_once():
    s = settings([mail_in({"per": "ip", "rate": "1/minute;1/hour", "shadow": True})])
    r = s.policy.routes[0]

    async def go(limiter: Limiter) -> list[Decision]:
        return [await check(limiter, r) for _ in range(2)]

    assert [d.shadow_refused for d in run(go, s)] == [[], [("checkout", "ip")]]
