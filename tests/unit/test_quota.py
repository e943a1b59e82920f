"""Quotas on in-process memory storage: which windows a caller or a value counts in, read
without consuming, and the keys the gateway itself counts under."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
import yaml
from limits import parse_many
from limits.aio.storage import MemoryStorage
from prometheus_client import CollectorRegistry

from gateway.config import Client, Route
from gateway.environment import load_settings
from gateway.errors import ConfigError, RateLimited
from gateway.forwarding import ip_limit_key
from gateway.limiter import Limiter
from gateway.limitkeys import LimitKeys, normalise
from gateway.metrics import Metrics
from gateway.quota import Entry, Quotas, rate_of
from gateway.settings import Settings
from gateway.store import Store

T = TypeVar("T")
SECRET = b"unit-test-limit-key"
HASH = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
ROUTES: list[dict[str, Any]] = [
    {"name": "catalog", "path": "/catalog", "access": "public", "limits": [
        {"per": "ip", "rate": "10/minute;100/day"}, {"per": "global", "rate": "50/hour"}]},
    {"name": "checkout", "path": "/checkout", "methods": ["POST"], "access": "public",
     "limits": [{"per": "body:email", "rate": "5/hour"},
                {"per": "body:customer.phone", "rate": "5/hour"},
                {"per": "header:x-shopper-email", "rate": "7/hour"},
                {"per": "ip", "rate": "30/hour"},
                {"per": "client", "rate": "20/hour", "shadow": True}]},
    {"name": "inventory", "path": "/inventory", "limits": [
        {"per": "client", "rate": "3/minute"}, {"per": "header:x-shop", "rate": "9/hour"}]},
    {"name": "admin", "path": "/admin", "limits": [{"per": "global", "rate": "7/hour"}]},
]
CLIENTS: list[dict[str, Any]] = [
    {"name": "pricing", "token_sha256": HASH, "routes": ["catalog", "inventory"], "limits": [
        {"per": "client", "rate": "600/minute;10000/day"},
        {"per": "header:x-member", "rate": "100/hour"},
        {"per": "ip", "rate": "40/hour", "shadow": True}]},
    {"name": "ops", "token_sha256": HASH.replace("9", "8"), "routes": ["*"]},
]


def settings() -> Settings:
    text = yaml.safe_dump({"routes": ROUTES, "clients": CLIENTS})
    return load_settings({"REUSELY_API_KEY": "k"}, text=text, source="test")


class Harness:
    def __init__(self) -> None:
        self.settings = settings()
        self.store = Store(None, budget=0.25, storage=MemoryStorage())
        self.limiter = Limiter(self.settings, self.store, LimitKeys(SECRET),
                               Metrics(CollectorRegistry(), version="test"))
        self.quotas = Quotas(self.settings, self.limiter, self.store)

    def route(self, name: str) -> Route:
        return next(r for r in self.settings.policy.routes if r.name == name)

    def client(self, name: str) -> Client:
        return next(c for c in self.settings.policy.clients if c.name == name)

    async def request(self, route: str, *, ip: str = "192.0.2.1", client: str | None = None,
                      body: dict[str, str] | None = None) -> str | None:
        """One request through the limiter as the gateway makes it: the `per` refusing it."""
        check = self.limiter.begin(self.route(route), self.client(client) if client else None,
                                   ip_key=ip_limit_key(ip), headers={})
        assert check is not None
        try:
            await check.full(check.values(body or {}))
        except RateLimited as exc:
            return exc.per
        return None

    async def quota(self, client: str, *, ip: str = "192.0.2.1",
                    headers: dict[bytes, bytes] | None = None) -> list[Entry]:
        return await self.quotas.read(self.quotas.of_client(
            self.client(client), ip_key=ip_limit_key(ip), headers=headers or {}))


def run(scenario: Callable[[Harness], Awaitable[T]]) -> T:
    async def main() -> T:
        return await scenario(Harness())
    return asyncio.run(main())


def rows(entries: list[Entry]) -> list[tuple[str | None, str, str, int]]:
    return [(e.route, e.per, e.rate, e.remaining) for e in entries]


def test_a_windows_rate_is_written_as_the_policy_writes_it():
    assert [rate_of(i) for i in parse_many("5/hour")] == ["5/hour"]
    assert [rate_of(i) for i in parse_many("100/minute;1000/day")] == ["100/minute", "1000/day"]
    assert [rate_of(i) for i in parse_many("3/4 seconds")] == ["3/4 seconds"]


def test_a_client_sees_its_own_limits_then_the_cheap_ones_of_its_routes_one_per_window():
    async def scenario(h: Harness) -> list[Entry]:
        return await h.quota("pricing")

    assert rows(run(scenario)) == [
        (None, "client", "600/minute", 600), (None, "client", "10000/day", 10000),
        ("catalog", "ip", "10/minute", 10), ("catalog", "ip", "100/day", 100),
        ("catalog", "global", "50/hour", 50), ("inventory", "client", "3/minute", 3)]


def test_a_header_limit_of_the_clients_own_counts_the_header_the_quota_request_carries():
    async def scenario(h: Harness) -> tuple[list[Entry], list[Entry]]:
        for _ in range(2):
            check = h.limiter.begin(h.route("inventory"), h.client("pricing"), ip_key="x",
                                    headers={b"x-member": b" Ada "})
            assert check is not None
            await check.full(check.values({}))
        return (await h.quota("pricing", headers={b"x-member": b"Ada\t"}),
                await h.quota("pricing", headers={b"x-member": b"grace"}))

    ada, grace = run(scenario)
    assert (None, "header:x-member", "100/hour", 98) in rows(ada)
    assert (None, "header:x-member", "100/hour", 100) in rows(grace)


def test_a_client_with_a_star_sees_every_route_and_no_shadow_body_or_header_limit():
    async def scenario(h: Harness) -> list[Entry]:
        return await h.quota("ops")

    assert rows(run(scenario)) == [
        ("catalog", "ip", "10/minute", 10), ("catalog", "ip", "100/day", 100),
        ("catalog", "global", "50/hour", 50), ("checkout", "ip", "30/hour", 30),
        ("inventory", "client", "3/minute", 3), ("admin", "global", "7/hour", 7)]


def test_numbers_after_requests_and_reading_them_consumes_nothing():
    async def scenario(h: Harness) -> None:
        for _ in range(2):
            assert await h.request("inventory", client="pricing") is None
        for _ in range(3):
            assert await h.request("catalog", client="pricing") is None
        assert await h.request("catalog") is None  # anonymous, same address
        reads = [await h.quota("pricing") for _ in range(5)]
        assert all(rows(r) == rows(reads[0]) for r in reads)
        assert rows(reads[0]) == [
            (None, "client", "600/minute", 595), (None, "client", "10000/day", 9995),
            ("catalog", "ip", "10/minute", 6), ("catalog", "ip", "100/day", 96),
            ("catalog", "global", "50/hour", 46), ("inventory", "client", "3/minute", 1)]
        # What the quota says is left is exactly what the limiter still lets through.
        assert await h.request("inventory", client="pricing") is None
        assert await h.request("inventory", client="pricing") == "client"

    run(scenario)


def test_reset_is_0_for_an_empty_window_and_the_seconds_until_the_oldest_leaves_otherwise():
    async def scenario(h: Harness) -> None:
        assert all(e.reset == 0 for e in await h.quota("pricing"))
        assert await h.request("catalog") is None
        found = {(e.per, e.rate): e.reset for e in await h.quota("pricing")}
        assert 59 <= found["ip", "10/minute"] <= 60
        assert 86399 <= found["ip", "100/day"] <= 86400
        assert 3599 <= found["global", "50/hour"] <= 3600
        assert found["client", "600/minute"] == 0  # anonymous: not the client's

    run(scenario)


def test_remaining_is_never_negative_when_the_window_holds_more_than_its_limit():
    async def scenario(h: Harness) -> list[Entry]:
        counted = h.quotas.of_client(h.client("ops"), ip_key="192.0.2.1", headers={})
        admin = [c for c in counted if c.limit.scope == "admin"]
        for _ in range(9):  # more than 7: as after a policy lowered the rate
            await h.store.limits.acquire_entry(admin[0].limit.item.key_for(*admin[0].ids),
                                               100, 3600)
        return await h.quotas.read(admin)

    (entry,) = run(scenario)
    assert (entry.limit, entry.remaining) == (7, 0)


@pytest.mark.parametrize(("counted_from", "seen_from", "same"), [
    ("2001:db8:1:2::5", "2001:db8:1:2:ffff:ffff:ffff:ffff", True),
    ("2001:db8:1:2::5", "[2001:db8:1:2::77]:443", True),
    ("2001:db8:1:2::5", "2001:db8:1:3::5", False),
    ("::ffff:198.51.100.7", "198.51.100.7", True),
    ("198.51.100.7", "198.51.100.8", False),
])
def test_the_quota_reads_the_ip_window_the_gateway_counts_ipv6_by_its_64(
        counted_from: str, seen_from: str, same: bool):
    async def scenario(h: Harness) -> dict[tuple[str, str], int]:
        assert await h.request("catalog", ip=counted_from) is None
        return {(e.per, e.rate): e.remaining for e in await h.quota("pricing", ip=seen_from)}

    found = run(scenario)
    assert found["ip", "10/minute"] == (9 if same else 10)
    assert found["global", "50/hour"] == 49


# -- support: the windows a value counts in ---------------------------------------


def test_an_email_finds_the_window_the_gateway_counted_whatever_its_spelling():
    async def scenario(h: Harness) -> list[Entry]:
        for _ in range(5):
            assert await h.request("checkout", body={
                "body:email": normalise("email", "victim@example.com") or ""}) is None
        assert await h.request("checkout", body={"body:email": "victim@example.com"}) \
            == "body:email"
        return await h.quotas.read(h.quotas.of_value(h.route("checkout"), "email",
                                                     " Victim@Example.COM\u200b"))

    entries = run(scenario)
    assert [(e.per, e.rate, e.remaining) for e in entries] == [
        ("body:email", "5/hour", 0), ("header:x-shopper-email", "7/hour", 7)]
    assert 3599 <= entries[0].reset <= 3600


def test_a_phone_matches_phone_fields_only_and_keeps_its_digits():
    async def scenario(h: Harness) -> list[tuple[str, ...]]:
        full_width = "\uff10\uff11\uff10"  # 010
        counted = h.quotas.of_value(h.route("checkout"), "phone", f"+1 (555) {full_width}-0000")
        gateway = h.limiter.counted(h.limiter.route_limits("checkout"), client="public",
                                    ip_key="x", values={"body:customer.phone": "15550100000"})
        assert [c.ids for c in counted] == [c.ids for c in gateway if "phone" in c.ids[2]]
        return [c.ids for c in counted]

    assert [ids[2] for ids in run(scenario)] == ["body:customer.phone"]


def test_ip_and_client_values_find_their_windows_the_clients_own_included():
    async def scenario(h: Harness) -> None:
        by_ip = h.quotas.of_value(h.route("catalog"), "ip", "::ffff:198.51.100.7")
        assert [(c.ids[2], c.limit.item.amount) for c in by_ip] == [("ip", 10), ("ip", 100)]
        assert by_ip == h.quotas.of_value(h.route("catalog"), "ip", "198.51.100.7")
        by_client = h.quotas.of_value(h.route("inventory"), "client", "pricing")
        assert [(c.limit.scope, c.ids[3], c.limit.item.amount) for c in by_client] == [
            ("inventory", "pricing", 3), ("client:pricing", "pricing", 600),
            ("client:pricing", "pricing", 10000)]
        shadow = h.quotas.of_value(h.route("checkout"), "client", "public")
        assert [(c.limit.scope, c.limit.rule.shadow) for c in shadow] == [("checkout", True)]

    run(scenario)


@pytest.mark.parametrize(("route", "by", "value", "line"), [
    ("catalog", "email", "a@example.com", "--email: route catalog has no limit keyed by an "
     "email field"),
    ("admin", "phone", "1555", "--phone: route admin has no limit keyed by a phone field"),
    ("admin", "ip", "192.0.2.1", "--ip: route admin has no limit keyed by ip"),
    ("catalog", "client", "ops", "--client: route catalog has no limit keyed by client"),
    ("catalog", "ip", "example.com", "--ip: 'example.com' is not an IP address"),
    ("catalog", "ip", "10.0.0.0/8", "--ip: '10.0.0.0/8' is not an IP address"),
    ("checkout", "email", " \u200b\ufeff ", "--email: nothing is left of ' \\u200b\\ufeff ' "
     "once normalised"),
    ("checkout", "phone", "+--", "--phone: nothing is left of '+--' once normalised"),
    ("inventory", "client", "nobody", "--client: no client named 'nobody' in the policy "
     "(clients: ops, pricing; public: anonymous callers)"),
])
def test_a_value_that_names_no_window_is_one_located_line(route: str, by: str, value: str,
                                                           line: str):
    h = Harness()
    with pytest.raises(ConfigError) as caught:
        h.quotas.of_value(h.route(route), by, value)
    assert caught.value.problems == [line]


def test_clear_deletes_exactly_the_windows_of_that_value():
    async def scenario(h: Harness) -> None:
        for email in ("victim@example.com", "other@example.com"):
            for _ in range(5):
                assert await h.request("checkout", body={"body:email": email}) is None
        victim = h.quotas.of_value(h.route("checkout"), "email", "victim@example.com")
        await h.quotas.clear(victim)
        assert [e.remaining for e in await h.quotas.read(victim)] == [5, 7]
        other = h.quotas.of_value(h.route("checkout"), "email", "other@example.com")
        assert [e.remaining for e in await h.quotas.read(other)] == [0, 7]
        ip = h.quotas.of_value(h.route("checkout"), "ip", "192.0.2.1")
        assert [e.remaining for e in await h.quotas.read(ip)] == [20]
        assert await h.request("checkout", body={"body:email": "victim@example.com"}) is None

    run(scenario)
