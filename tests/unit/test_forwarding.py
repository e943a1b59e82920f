"""forwarding: the caller's address, its `ip` limit key and the forwarding headers."""

from __future__ import annotations

import ipaddress
import time

import pytest

from gateway.forwarding import MAX_ADDRESS_LENGTH, Forwarding, Network, ip_limit_key

TRUSTED = Forwarding((ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("fd00::/8")))
NOBODY = Forwarding(())


# -- the ip limit key -----------------------------------------------------------


@pytest.mark.parametrize(("address", "key"), [
    ("203.0.113.7", "203.0.113.7"),
    ("2001:db8:1:2:aaaa:bbbb:cccc:dddd", "2001:db8:1:2::/64"),
    ("2001:db8:1:2::1", "2001:db8:1:2::/64"),
    ("2001:DB8:1:2::FFFF", "2001:db8:1:2::/64"),
    ("2001:db8:1:3::1", "2001:db8:1:3::/64"),
    ("::ffff:203.0.113.7", "203.0.113.7"),
    ("::FFFF:cb00:7107", "203.0.113.7"),
    ("::1", "::/64"),
    ("fe80::1%eth0", "fe80::/64"),
    ("203.0.113.7:51234", "203.0.113.7"),
    ("[2001:db8::1]:443", "2001:db8::/64"),
    ("[2001:db8::1]", "2001:db8::/64"),
    ("[::ffff:203.0.113.7]:80", "203.0.113.7"),
    (" 203.0.113.7 ", "203.0.113.7"),
])
def test_ipv4_counts_by_address_and_ipv6_by_its_64(address, key):
    assert ip_limit_key(address) == key


@pytest.mark.parametrize("text", [
    "", "unknown", "example.com", "203.0.113", "203.0.113.256", "010.0.0.1",
    "203.0.113.7:", "203.0.113.7:http", "203.0.113.7:99999", "203.0.113.7:-1",
    "[2001:db8::1", "[2001:db8::1]443", "[203.0.113.7]", "2001:db8::1:443:x",
    "203.0.113.7:80:80", "[" + "1" * 70 + "]", "_hidden", "1" * 1000,
])
def test_anything_but_an_address_is_refused(text):
    with pytest.raises(ValueError):
        ip_limit_key(text)


# -- an untrusted peer ------------------------------------------------------------


def test_without_trusted_proxies_the_peer_is_the_caller_whatever_it_sends():
    network = NOBODY.resolve("203.0.113.7", b"6.6.6.6, 10.0.0.1", "http", b"https")
    assert network == Network(client_ip="203.0.113.7", limit_key="203.0.113.7",
                              forwarded_for=b"203.0.113.7", forwarded_proto=b"http")


def test_an_untrusted_peer_cannot_set_its_address_or_protocol():
    network = TRUSTED.resolve("203.0.113.7", b"10.0.0.1", "https", b"http")
    assert network == Network("203.0.113.7", "203.0.113.7", b"203.0.113.7", b"https")


def test_an_ipv6_peer_is_limited_by_its_64():
    one = NOBODY.resolve("2001:db8:1:2::1", None, "http", None)
    other = NOBODY.resolve("2001:db8:1:2:ffff::9", None, "http", None)
    assert one.client_ip == "2001:db8:1:2::1"
    assert one.limit_key == other.limit_key == "2001:db8:1:2::/64"
    assert one.forwarded_for == b"2001:db8:1:2::1"


def test_an_ipv4_mapped_peer_counts_as_its_ipv4_address():
    network = NOBODY.resolve("::ffff:203.0.113.7", None, "http", None)
    assert network.limit_key == "203.0.113.7"


def test_a_peer_that_is_not_an_ip_address_is_its_own_bounded_key():
    network = NOBODY.resolve("/run/gateway.sock" + "x" * 200, None, "http", None)
    assert len(network.limit_key) <= MAX_ADDRESS_LENGTH


def test_the_common_case_is_answered_from_a_bounded_cache():
    forwarding = Forwarding(())
    first = forwarding.resolve("203.0.113.7", None, "http", None)
    assert forwarding.resolve("203.0.113.7", b"1.2.3.4", "http", None) is first
    for i in range(10_000):
        forwarding.resolve(f"2001:db8::{i:x}", None, "http", None)
    assert forwarding._direct.cache_info().currsize <= 4096


# -- a trusted peer ----------------------------------------------------------------


def test_a_trusted_peer_without_x_forwarded_for_is_the_caller():
    network = TRUSTED.resolve("10.1.2.3", None, "http", None)
    assert network == Network("10.1.2.3", "10.1.2.3", b"10.1.2.3", b"http")


def test_the_rightmost_untrusted_hop_is_the_caller_and_the_peer_is_appended():
    network = TRUSTED.resolve("10.0.0.1", b"6.6.6.6, 203.0.113.7, 10.9.9.9", "http", None)
    assert network.client_ip == "203.0.113.7"
    assert network.limit_key == "203.0.113.7"
    assert network.forwarded_for == b"6.6.6.6, 203.0.113.7, 10.9.9.9, 10.0.0.1"


@pytest.mark.parametrize(("xff", "client", "key"), [
    (b"203.0.113.7:51234", "203.0.113.7", "203.0.113.7"),
    (b"[2001:db8:5:6::1]:443", "2001:db8:5:6::1", "2001:db8:5:6::/64"),
    (b"[2001:db8:5:6::1]", "2001:db8:5:6::1", "2001:db8:5:6::/64"),
    (b"2001:db8:5:6::1", "2001:db8:5:6::1", "2001:db8:5:6::/64"),
    (b"::ffff:203.0.113.7", "203.0.113.7", "203.0.113.7"),
    (b"6.6.6.6,203.0.113.7:9,10.0.0.2:8080", "203.0.113.7", "203.0.113.7"),
    (b"203.0.113.7, , 10.0.0.2,", "203.0.113.7", "203.0.113.7"),
])
def test_a_trusted_hop_counts_without_its_port_or_brackets(xff, client, key):
    network = TRUSTED.resolve("10.0.0.1", xff, "http", None)
    assert (network.client_ip, network.limit_key) == (client, key)


def test_the_port_does_not_make_a_new_identity():
    keys = {TRUSTED.resolve("10.0.0.1", f"203.0.113.7:{port}".encode(), "http", None).limit_key
            for port in range(1000, 1100)}
    assert keys == {"203.0.113.7"}


def test_a_trusted_ipv6_proxy_and_an_ipv4_mapped_trusted_peer_are_trusted():
    assert TRUSTED.resolve("fd00::5", b"203.0.113.7", "http", None).client_ip == "203.0.113.7"
    network = TRUSTED.resolve("::ffff:10.0.0.1", b"203.0.113.7", "http", None)
    assert network.client_ip == "203.0.113.7"


def test_when_every_hop_is_trusted_the_leftmost_is_the_caller():
    network = TRUSTED.resolve("10.0.0.1", b"10.0.0.3, 10.0.0.2", "http", None)
    assert (network.client_ip, network.limit_key) == ("10.0.0.3", "10.0.0.3")


@pytest.mark.parametrize(("xff", "client"), [
    (b"unknown", "10.0.0.1"),  # the peer handed it to us
    (b"garbage, 10.0.0.2", "10.0.0.2"),  # the trusted hop that handed it to us
    (b"203.0.113.7, not-an-ip", "10.0.0.1"),  # the walk stops: what is left of it is unread
    (b"203.0.113.7:99999", "10.0.0.1"),
    (b"[2001:db8::1", "10.0.0.1"),
    (b"\xff\xfe", "10.0.0.1"),
    (b"2" * 20_000, "10.0.0.1"),
])
def test_an_unparsable_hop_makes_the_caller_the_proxy_that_sent_it(xff, client):
    network = TRUSTED.resolve("10.0.0.1", xff, "http", None)
    assert (network.client_ip, network.limit_key) == (client, client)
    assert network.forwarded_for == xff + b", 10.0.0.1"


def test_no_x_forwarded_for_can_make_a_long_or_fresh_key():
    forwarding = Forwarding((ipaddress.ip_network("10.0.0.0/8"),))
    keys = {forwarding.resolve("10.0.0.1", f"junk-{i}-{'x' * i}".encode(), "http", None).limit_key
            for i in range(200)}
    assert keys == {"10.0.0.1"}


def test_a_16_kib_x_forwarded_for_is_resolved_quickly():
    xff = b", ".join(b"10.0.%d.%d" % (i // 250, i % 250) for i in range(1600))
    started = time.perf_counter()
    network = TRUSTED.resolve("10.0.0.1", xff, "http", None)
    # Linear: ~2 ms here. A walk quadratic in the hops would take seconds; the
    # margin is for a machine loaded by other work.
    assert time.perf_counter() - started < 0.5
    assert network.client_ip == "10.0.0.0"


@pytest.mark.parametrize(("sent", "forwarded"), [
    (b"https", b"https"), (b"http", b"http"), (b"HTTPS", b"https"), (b" https ", b"https"),
    (b"ftp", b"http"), (b"https, http", b"http"), (b"", b"http"), (None, b"http"),
])
def test_a_trusted_peer_sets_the_forwarded_protocol_to_http_or_https_only(sent, forwarded):
    assert TRUSTED.resolve("10.0.0.1", None, "http", sent).forwarded_proto == forwarded


def test_the_protocol_of_the_connection_is_forwarded_by_default():
    assert NOBODY.resolve("203.0.113.7", None, "https", None).forwarded_proto == b"https"
    assert TRUSTED.resolve("10.0.0.1", None, "https", None).forwarded_proto == b"https"
