"""The caller's address through the real gateway: trusted hops, ports, IPv6 /64, the protocol."""

from __future__ import annotations

import httpx

CATALOG = "/api/v2/public/catalog/categories"


def policy(trusted: str) -> str:
    return f"""
limits:
  trusted_proxies: {trusted}
routes:
  - name: catalog
    path: /api/v2/public/catalog/{{rest:path}}
    methods: [GET]
    credentials: [api_key, tenant_id]
    access: public
    limits:
      - {{per: ip, rate: "2/hour"}}
"""


BEHIND_PROXY = policy('["127.0.0.1/32"]')
DIRECT = policy("[]")


def get(http: httpx.Client, gw, **headers: str) -> int:
    sent = {name.replace("_", "-"): value for name, value in headers.items()}
    return http.get(gw.url + CATALOG, headers=sent).status_code


def test_a_trusted_hop_with_a_port_counts_without_it(http, gateway_factory, upstream):
    gw = gateway_factory(BEHIND_PROXY)
    assert get(http, gw, x_forwarded_for="203.0.113.7:51234") == 200
    assert get(http, gw, x_forwarded_for="203.0.113.7:51235") == 200
    assert get(http, gw, x_forwarded_for="203.0.113.7") == 429
    assert get(http, gw, x_forwarded_for="[2001:db8::1]:443") == 200
    assert get(http, gw, x_forwarded_for="[2001:db8::1]:444") == 200
    assert get(http, gw, x_forwarded_for="2001:db8::1") == 429
    assert [got.header("x-forwarded-for") for got in upstream.received][:2] == [
        "203.0.113.7:51234, 127.0.0.1", "203.0.113.7:51235, 127.0.0.1"]


def test_ipv6_callers_are_limited_per_64(http, gateway_factory):
    gw = gateway_factory(BEHIND_PROXY)
    assert get(http, gw, x_forwarded_for="2001:db8:1:2::1") == 200
    assert get(http, gw, x_forwarded_for="2001:db8:1:2:ffff:ffff:ffff:ffff") == 200
    assert get(http, gw, x_forwarded_for="2001:db8:1:2::99") == 429
    assert get(http, gw, x_forwarded_for="2001:db8:1:3::1") == 200  # the next /64


def test_an_ipv4_mapped_hop_counts_as_its_ipv4_address(http, gateway_factory):
    gw = gateway_factory(BEHIND_PROXY)
    assert get(http, gw, x_forwarded_for="::ffff:203.0.113.9") == 200
    assert get(http, gw, x_forwarded_for="203.0.113.9") == 200
    assert get(http, gw, x_forwarded_for="[::ffff:cb00:7109]:80") == 429


def test_an_unparsable_hop_counts_as_the_proxy_that_sent_it(http, gateway_factory):
    gw = gateway_factory(BEHIND_PROXY)
    assert get(http, gw, x_forwarded_for="junk-1") == 200
    assert get(http, gw, x_forwarded_for="unknown") == 200
    assert get(http, gw, x_forwarded_for="junk-" + "x" * 4000) == 429
    assert get(http, gw) == 429  # the proxy itself: the same key
    assert get(http, gw, x_forwarded_for="203.0.113.7") == 200


def test_a_trusted_proxy_sets_the_forwarded_protocol(http, gateway_factory, upstream):
    gw = gateway_factory(BEHIND_PROXY)
    get(http, gw, x_forwarded_proto="https", x_forwarded_for="203.0.113.1")
    get(http, gw, x_forwarded_proto="gopher", x_forwarded_for="203.0.113.2")
    get(http, gw, x_forwarded_for="203.0.113.3")
    assert [got.header("x-forwarded-proto") for got in upstream.received] == [
        "https", "http", "http"]


def test_an_untrusted_peer_sets_neither_its_address_nor_the_protocol(http, gateway_factory,
                                                                     upstream):
    gw = gateway_factory(DIRECT)
    assert get(http, gw, x_forwarded_for="203.0.113.1", x_forwarded_proto="https") == 200
    assert get(http, gw, x_forwarded_for="203.0.113.2", x_forwarded_proto="https") == 200
    assert get(http, gw, x_forwarded_for="203.0.113.3") == 429
    assert [(got.header("x-forwarded-for"), got.header("x-forwarded-proto"))
            for got in upstream.received] == [("127.0.0.1", "http")] * 2
