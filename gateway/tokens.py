"""Client tokens: a bearer token -> its client, by SHA-256, in constant time.

The policy holds only the SHA-256 of each token (`reusely-gateway token new`
prints both). Every known hash is compared with `hmac.compare_digest` and the
loop never stops early, so the time taken does not depend on which hash, if
any, matched.
"""

from __future__ import annotations

import hashlib
import hmac

from gateway.config import Client


def token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenTable:
    def __init__(self, clients: tuple[Client, ...]) -> None:
        self._entries = [(h.encode(), client) for client in clients for h in client.token_sha256]

    def lookup(self, token: str) -> Client | None:
        digest = token_sha256(token).encode()
        found = None
        for known, client in self._entries:
            if hmac.compare_digest(digest, known):
                found = client
        return found
