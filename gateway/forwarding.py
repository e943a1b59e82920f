"""Where a request comes from on the network, worked out once per request.

`X-Forwarded-For` is believed only from a peer in `limits.trusted_proxies`,
and then walked from the right: the first address that is not itself a trusted
proxy is the caller (uvicorn's `proxy_headers` habit; if every hop is trusted,
the leftmost). From an untrusted peer a caller-sent `X-Forwarded-For` changes
nothing, and upstream receives the peer address alone. `X-Forwarded-Proto` is
likewise believed only from a trusted peer, and only as `http` or `https`.

A hop may carry a port (`203.0.113.7:51234`, `[2001:db8::1]:443`); it counts
without it. A hop that is not an IP address (`unknown`, a name, garbage) stops
the walk: the caller is then the trusted proxy that handed it to us (the
nearest one to its right, or the peer), so whatever a caller writes there, it
cannot make up a fresh identity per request, nor make a key of arbitrary length.

`ip` limits count an IPv4 caller by its address and an IPv6 caller by its /64
(one subscriber typically holds a whole /64); an IPv4-mapped IPv6 address
(`::ffff:203.0.113.7`) counts as its IPv4 address. `ip_limit_key` is that
rule, shared by the request path, `/gateway/quota` and `limits --ip`.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from functools import lru_cache

from gateway.config import IPNetwork

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# No IP address, bracketed, with a zone and a port, is longer than this; a
# longer hop is not parsed at all (nor kept in a cache).
MAX_ADDRESS_LENGTH = 64
_CACHE_SIZE = 4096
_LOW_64 = (1 << 64) - 1
_PROTOS = frozenset({b"http", b"https"})


@dataclass(frozen=True, slots=True)
class Network:
    # The caller's address: the peer, or (peer trusted) the rightmost
    # X-Forwarded-For hop that is not trusted, port stripped.
    client_ip: str
    # What `ip` limits count: an IPv4 address, or an IPv6 caller's /64.
    limit_key: str
    # The X-Forwarded-For value to send upstream.
    forwarded_for: bytes
    # The X-Forwarded-Proto value to send upstream.
    forwarded_proto: bytes


def parse_address(text: str) -> IPAddress:
    """An address as written in X-Forwarded-For: bare, `v4:port`, `[v6]` or `[v6]:port`.

    Raises ValueError for anything else. A zone (`fe80::1%eth0`) is dropped.
    """
    text = text.strip()
    if len(text) > MAX_ADDRESS_LENGTH:
        raise ValueError("too long for an IP address")
    if text.startswith("["):
        inside, sep, port = text[1:].partition("]")
        if not sep or (port and not (port[0] == ":" and _is_port(port[1:]))):
            raise ValueError(f"{text!r} is not a bracketed IPv6 address")
        address: IPAddress = ipaddress.IPv6Address(inside)
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
        if not _is_port(port):
            raise ValueError(f"{text!r} has no valid port")
        address = ipaddress.IPv4Address(host)
    else:
        address = ipaddress.ip_address(text)
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address.scope_id is not None:
            return ipaddress.IPv6Address(int(address))
    return address


def _is_port(text: str) -> bool:
    return 0 < len(text) <= 5 and text.isascii() and text.isdigit() and int(text) <= 65535


def _key_of(address: IPAddress) -> str:
    if isinstance(address, ipaddress.IPv4Address):
        return str(address)
    return f"{ipaddress.IPv6Address(int(address) & ~_LOW_64)}/64"


def ip_limit_key(address: str) -> str:
    """What `ip` limits count for this address: `203.0.113.7`, or `2001:db8:1:2::/64`.

    Accepts what `parse_address` accepts; raises ValueError otherwise.
    """
    return _key_of(parse_address(address))


class Forwarding:
    """Resolves a request's addresses; cheap when the peer is not a trusted proxy."""

    def __init__(self, trusted: tuple[IPNetwork, ...]) -> None:
        self._trusted = trusted
        self._direct = lru_cache(maxsize=_CACHE_SIZE)(self._direct_network)
        self._peer = lru_cache(maxsize=_CACHE_SIZE)(self._judge_peer)
        self._hop = lru_cache(maxsize=_CACHE_SIZE)(self._judge_hop)

    def resolve(self, peer: str, xff: bytes | None, scheme: str,
                proto: bytes | None) -> Network:
        """The caller's address, its limit key, and the forwarding headers to send on."""
        if not self._trusted:
            return self._direct(peer, scheme)
        peer_key, peer_trusted = self._peer(peer)
        if not peer_trusted:
            return self._direct(peer, scheme)
        client, key = self._walk(xff, (peer, peer_key)) if xff else (peer, peer_key)
        sent_proto = proto.strip().lower() if proto is not None else b""
        return Network(
            client_ip=client,
            limit_key=key,
            forwarded_for=xff + b", " + peer.encode() if xff else peer.encode(),
            forwarded_proto=sent_proto if sent_proto in _PROTOS else scheme.encode(),
        )

    def _direct_network(self, peer: str, scheme: str) -> Network:
        return Network(peer, self._peer(peer)[0], peer.encode(), scheme.encode())

    def _judge_peer(self, peer: str) -> tuple[str, bool]:
        """(limit key, trusted) of the socket peer. It parses, unless it is not an IP
        socket (a Unix socket path): then it is its own key, and not trusted."""
        try:
            address = parse_address(peer)
        except ValueError:
            return peer[:MAX_ADDRESS_LENGTH], False
        return _key_of(address), self._trusted_address(address)

    def _trusted_address(self, address: IPAddress) -> bool:
        return any(address in net for net in self._trusted)

    def _judge_hop(self, hop: bytes) -> tuple[str, str, bool] | None:
        """(address, limit key, trusted) of an X-Forwarded-For hop; None if unparsable."""
        try:
            address = parse_address(hop.decode("latin-1"))
        except ValueError:
            return None
        return str(address), _key_of(address), self._trusted_address(address)

    def _walk(self, xff: bytes, nearest: tuple[str, str]) -> tuple[str, str]:
        """(client_ip, limit_key) from a trusted peer's X-Forwarded-For, right to left.

        `nearest` is the trusted peer's; it stands when a hop is unparsable.
        """
        for raw in reversed(xff.split(b",")):
            hop = raw.strip()
            if not hop:
                continue
            judged = self._hop(hop) if len(hop) <= MAX_ADDRESS_LENGTH else None
            if judged is None:
                return nearest
            client, key, trusted = judged
            nearest = (client, key)
            if not trusted:
                return nearest
        return nearest
