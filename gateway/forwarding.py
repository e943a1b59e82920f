"""Where a request comes from on the network.

`X-Forwarded-For` is believed only from a peer in `limits.trusted_proxies`,
and then walked from the right: the first address that is not itself a trusted
proxy is the client (uvicorn's `proxy_headers` habit). From an untrusted peer a
caller-sent `X-Forwarded-For` changes nothing, and upstream receives the peer
address alone.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from functools import lru_cache

from gateway.config import IPNetwork


@dataclass(frozen=True, slots=True)
class Network:
    client_ip: str
    limit_key: str
    forwarded_for: bytes
    forwarded_proto: bytes


class Forwarding:
    def __init__(self, trusted: tuple[IPNetwork, ...]) -> None:
        self._trusted = trusted
        self._is_trusted = lru_cache(maxsize=1024)(self._check)

    def _check(self, address: str) -> bool:
        if not self._trusted:
            return False
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in net for net in self._trusted)

    def resolve(self, peer: str, xff: bytes | None, scheme: str,
                proto: bytes | None) -> Network:
        xff_text = xff.decode("latin-1") if xff is not None else None
        ip = self.client_ip(peer, xff_text)
        return Network(ip, ip, self.forwarded_for(peer, xff_text).encode(),
                       self.forwarded_proto(peer, scheme, proto.decode("latin-1")
                                            if proto is not None else None).encode())

    def client_ip(self, peer: str, xff: str | None) -> str:
        """The address limits are keyed on: the peer, or the rightmost untrusted XFF hop."""
        if not xff or not self._is_trusted(peer):
            return peer
        hops = [h.strip() for h in xff.split(",") if h.strip()]
        for hop in reversed(hops):
            if not self._is_trusted(hop):
                return hop
        return hops[0] if hops else peer

    def forwarded_for(self, peer: str, xff: str | None) -> str:
        """The X-Forwarded-For value to send upstream."""
        if xff and self._is_trusted(peer):
            return f"{xff}, {peer}"
        return peer

    def forwarded_proto(self, peer: str, scheme: str, sent: str | None) -> str:
        if sent and self._is_trusted(peer) and sent in ("http", "https"):
            return sent
        return scheme
