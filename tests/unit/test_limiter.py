"""Limit decisions on in-process memory storage: what is counted, refused, and said."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
import yaml
from limits.aio.storage import MemoryStorage
from prometheus_client import CollectorRegistry

from gateway.config import Client, Route
from gateway.environment import load_settings
from gateway.errors import RateLimited
from gateway.limiter import Limiter
from gateway.limitkeys import LimitKeys
from gateway.metrics import Metrics
from gateway.settings import Settings
from gateway.store import Store

T = TypeVar("T")
SECRET = b"unit-test-limit-key"


def settings(routes: list[dict[str, Any]], clients: list[dict[str, Any]] | None = None
             ) -> Settings:
    text = yaml.safe_dump({"routes": routes, "clients": clients or []})
    return load_settings({"REUSELY_API_KEY": "k"}, text=text, source="test")


def mail_in(*limits: dict[str, Any], name: str = "checkout") -> dict[str, Any]:
    return {"name": name, "path": f"/{name}", "methods": ["POST"], "access": "public",
            "credentials": ["api_key"], "limits": list(limits)}


class Harness:
    def __init__(self, s: Settings, storage: MemoryStorage) -> None:
        self.registry = CollectorRegistry()
        self.limiter = Limiter(s, Store(None, budget=0.25, storage=storage), LimitKeys(SECRET),
                               Metrics(self.registry, version="test"))

    async def check(self, route: Route, *, ip: str = "10.0.0.1", client: Client | None = None,
                    body: dict[str, str] | None = None,
                    headers: dict[bytes, bytes] | None = None) -> tuple[str | None, dict[str, str]]:
        """(the `per` that refused, or None; the answer's rate limit headers)."""
        check = self.limiter.begin(route, client, ip_key=ip, headers=headers or {})
        if check is None:
            return None, {}
        values = check.values({f"body:{k}": v for k, v in (body or {}).items()})
        try:
            out = await check.full(values)
        except RateLimited as exc:
            return exc.per, {k.decode(): v.decode() for k, v in exc.headers}
        return None, {k.decode(): v.decode() for k, v in out}

    def shadowed(self, route: str, per: str) -> float:
        return self.registry.get_sample_value("gateway_rate_limit_shadow_total",
                                              {"route": route, "per": per}) or 0.0


def run(s: Settings, scenario: Callable[[Harness], Awaitable[T]]) -> T:
    async def main() -> T:
        return await scenario(Harness(s, MemoryStorage()))
    return asyncio.run(main())


def test_a_route_without_limits_decides_nothing():
    s = settings([mail_in()])

    async def go(h: Harness) -> object:
        return h.limiter.begin(s.policy.routes[0], None, ip_key="10.0.0.1", headers={})

    assert run(s, go) is None


def test_the_sixth_request_for_one_email_is_refused_with_retry_after():
    s = settings([mail_in({"per": "body:email", "rate": "5/hour"})])
    r = s.policy.routes[0]

    async def go(h: Harness) -> list[tuple[str | None, dict[str, str]]]:
        return [await h.check(r, body={"email": "a@b.c"}) for _ in range(6)]

    decisions = run(s, go)
    assert [per for per, _ in decisions] == [None] * 5 + ["body:email"]
    assert [h["x-ratelimit-remaining"] for _, h in decisions] == ["4", "3", "2", "1", "0", "0"]
    assert 3590 <= int(decisions[-1][1]["retry-after"]) <= 3600


def test_a_refusal_by_one_limit_does_not_consume_the_others():
    s = settings([mail_in({"per": "body:email", "rate": "2/hour"},
                          {"per": "ip", "rate": "4/hour"})])
    r = s.policy.routes[0]

    async def go(h: Harness) -> list[str | None]:
        out = [(await h.check(r, body={"email": "a@b.c"}))[0] for _ in range(5)]
        # Three refusals by the email limit used none of the ip limit's 4:
        out += [(await h.check(r, body={"email": f"other{i}@b.c"}))[0] for i in range(3)]
        return out

    assert run(s, go) == [None, None, "body:email", "body:email", "body:email", None, None, "ip"]


def test_the_cheap_check_refuses_before_the_body_and_consumes_nothing():
    s = settings([mail_in({"per": "body:email", "rate": "5/hour"},
                          {"per": "ip", "rate": "2/hour"})])
    r = s.policy.routes[0]

    async def go(h: Harness) -> list[str]:
        out = []
        for reads in (3, 1):  # three reads of a 2/hour window would fill it if they counted
            check = h.limiter.begin(r, None, ip_key="10.0.0.1", headers={})
            assert check is not None
            for _ in range(reads):
                await check.cheap()
            await check.full(check.values({"body:email": "a@b.c"}))
            out.append("counted")
        check = h.limiter.begin(r, None, ip_key="10.0.0.1", headers={})
        assert check is not None
        with pytest.raises(RateLimited) as refused:
            await check.cheap()
        out.append(refused.value.per)
        return out

    assert run(s, go) == ["counted", "counted", "ip"]


def test_separate_routes_separate_ips_and_separate_emails_count_apart():
    s = settings([mail_in({"per": "body:email", "rate": "1/hour"}, {"per": "ip", "rate": "1/hour"},
                          name="one"),
                  mail_in({"per": "body:email", "rate": "1/hour"}, name="two")])
    one, two = s.policy.routes

    async def go(h: Harness) -> list[str | None]:
        return [(await h.check(one, ip="10.0.0.1", body={"email": "a@b.c"}))[0],
                (await h.check(two, ip="10.0.0.1", body={"email": "a@b.c"}))[0],
                (await h.check(one, ip="10.0.0.2", body={"email": "b@b.c"}))[0],
                (await h.check(one, ip="10.0.0.1", body={"email": "c@b.c"}))[0],
                (await h.check(one, ip="10.0.0.3", body={"email": "a@b.c"}))[0]]

    assert run(s, go) == [None, None, None, "ip", "body:email"]


def test_a_keyed_limit_applies_only_when_its_key_is_present():
    s = settings([mail_in({"per": "body:email", "rate": "1/hour"},
                          {"per": "body:phone", "rate": "1/hour"},
                          {"per": "header:x-shop", "rate": "1/hour"})])
    r = s.policy.routes[0]

    async def go(h: Harness) -> list[str | None]:
        out = [(await h.check(r))[0] for _ in range(3)]
        out.append((await h.check(r, body={"phone": "1555"}))[0])
        out.append((await h.check(r, body={"phone": "1555"}))[0])
        out.append((await h.check(r, headers={b"x-shop": b"s1"}))[0])
        out.append((await h.check(r, headers={b"x-shop": b" S1\xe2\x80\x8b"}))[0])
        out.append((await h.check(r, headers={b"x-shop": b"s2"}))[0])
        out.append((await h.check(r, headers={b"x-shop": b"  "}))[0])  # empty: absent
        out.append((await h.check(r, headers={b"x-shop": b"  "}))[0])
        return out

    assert run(s, go) == [None, None, None, None, "body:phone", None, None, None, None, None]


def test_headers_name_the_tightest_limit_the_longer_window_on_a_tie():
    s = settings([mail_in({"per": "ip", "rate": "3/minute"},
                          {"per": "global", "rate": "3/hour"},
                          {"per": "body:email", "rate": "10/day"})])
    r = s.policy.routes[0]

    async def go(h: Harness) -> dict[str, str]:
        return (await h.check(r, body={"email": "a@b.c"}))[1]

    h = run(s, go)
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

    async def go(h: Harness) -> list[dict[str, str]]:
        return [(await h.check(r))[1] for _ in range(2)]

    first, second = run(s, go)
    assert (first["x-ratelimit-limit"], first["x-ratelimit-remaining"]) == ("2", "1")
    assert (second["x-ratelimit-limit"], second["x-ratelimit-remaining"]) == ("2", "0")
    assert 1 <= int(second["x-ratelimit-reset"]) <= 60


def test_several_rates_in_one_limit_each_count():
    s = settings([mail_in({"per": "ip", "rate": "2/minute;3/hour"})])
    r = s.policy.routes[0]

    async def go(h: Harness) -> list[tuple[str | None, dict[str, str]]]:
        return [await h.check(r) for _ in range(3)]

    decisions = run(s, go)
    assert [per for per, _ in decisions] == [None, None, "ip"]
    policy = decisions[0][1]["ratelimit-policy"]
    assert '"checkout.ip.60s";q=2;w=60' in policy and '"checkout.ip.3600s";q=3;w=3600' in policy


def test_a_shadow_limit_refuses_nothing_adds_no_headers_and_counts_each_would_be_refusal():
    s = settings([mail_in({"per": "body:email", "rate": "1/hour", "shadow": True})])
    r = s.policy.routes[0]

    async def go(h: Harness) -> tuple[list[tuple[str | None, dict[str, str]]], float]:
        out = [await h.check(r, body={"email": "a@b.c"}) for _ in range(3)]
        return out, h.shadowed("checkout", "body:email")

    decisions, shadowed = run(s, go)
    assert decisions == [(None, {})] * 3
    assert shadowed == 2


def test_a_shadow_limit_beside_an_enforced_one_leaves_the_enforced_headers_alone():
    s = settings([mail_in({"per": "ip", "rate": "1/hour", "shadow": True},
                          {"per": "global", "rate": "10/hour"})])
    r = s.policy.routes[0]

    async def go(h: Harness) -> tuple[tuple[str | None, dict[str, str]], float]:
        await h.check(r)
        return await h.check(r), h.shadowed("checkout", "ip")

    (per, h), shadowed = run(s, go)
    assert per is None and shadowed == 1
    assert (h["x-ratelimit-limit"], h["x-ratelimit-remaining"]) == ("10", "8")
    assert "checkout.ip" not in h["ratelimit-policy"]


def test_a_shadow_limit_with_two_rates_reports_a_request_once():
    s = settings([mail_in({"per": "ip", "rate": "1/minute;1/hour", "shadow": True})])
    r = s.policy.routes[0]

    async def go(h: Harness) -> float:
        await h.check(r)
        await h.check(r)
        return h.shadowed("checkout", "ip")

    assert run(s, go) == 1


def test_client_limits_count_across_routes():
    clients = [{"name": "pricing", "token_sha256": "0" * 64, "routes": ["*"],
                "limits": [{"per": "client", "rate": "3/hour"}]},
               {"name": "other", "token_sha256": "1" * 64, "routes": ["*"],
                "limits": [{"per": "client", "rate": "3/hour"}]}]
    s = settings([mail_in(name="one"), mail_in(name="two")], clients)
    one, two = s.policy.routes
    pricing, other = s.policy.clients

    async def go(h: Harness) -> list[str | None]:
        out = [(await h.check(r, client=pricing))[0] for r in (one, two, one, two)]
        out.append((await h.check(one, client=other))[0])
        out.append((await h.check(one))[0])  # anonymous: no client limit
        return out

    assert run(s, go) == [None, None, None, "client", None, None]


def test_storage_keys_never_hold_the_email_phone_or_ip():
    s = settings([mail_in({"per": "body:email", "rate": "5/hour"},
                          {"per": "body:phone", "rate": "5/hour"},
                          {"per": "ip", "rate": "5/hour"})])
    r = s.policy.routes[0]
    storage = MemoryStorage()

    async def go() -> None:
        h = Harness(s, storage)
        await h.check(r, ip="203.0.113.9", body={"email": "ada@example.com",
                                                 "phone": "15550100000"})

    asyncio.run(go())
    keys = list(storage.events)
    assert len(keys) == 3
    for key in keys:
        for secret in ("ada@example.com", "15550100000", "203.0.113.9"):
            assert secret not in key


def test_a_running_cooldown_refuses_as_upstream_and_consumes_nothing():
    s = settings([mail_in({"per": "body:email", "rate": "2/hour"})])
    r = s.policy.routes[0]

    async def go(h: Harness) -> list[str | None]:
        store = h.limiter._store
        await store.set_ttl("rg/cooldown/checkout/x", 30)
        check = h.limiter.begin(r, None, ip_key="10.0.0.1", headers={})
        assert check is not None
        out: list[str | None] = []
        for cooldowns in (("rg/cooldown/checkout/x",), ("rg/cooldown/checkout/y",)) * 2:
            check = h.limiter.begin(r, None, ip_key="10.0.0.1", headers={})
            assert check is not None
            try:
                await check.full({"body:email": "a@b.c"}, cooldowns)
                out.append(None)
            except RateLimited as exc:
                assert 29 <= exc.retry_after <= 30 or exc.per != "upstream"
                out.append(exc.per)
        return out

    assert run(s, go) == ["upstream", None, "upstream", None]


def test_a_limit_names_its_redis_keys_exactly_as_the_limits_library_does() -> None:
    """The script path builds keys from precomputed parts; `limits`' own strategy (memory,
    Cluster) and the support tools build them with `key_for`: both must count alike."""
    s = settings([mail_in({"per": "body:email", "rate": "5/hour;20 per 2 days"},
                          {"per": "ip", "rate": "30/minute"})])
    limiter = Harness(s, MemoryStorage()).limiter
    for limit in limiter.route_limits("checkout"):
        for ids in [("rg", "checkout", limit.rule.per, "a1b2"), ("x",), ("a/b", "c d", "é")]:
            assert limit.key(ids) == limit.item.key_for(*ids)
        assert limit.expiry == limit.item.get_expiry()
        assert limit.policy == f'"{limit.name}";q={limit.item.amount};w={limit.expiry}'
