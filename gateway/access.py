"""Who is calling: a bearer token -> `Caller`, and whether it may call a route.

Public routes need no token; a token that is sent must be valid (401
otherwise) and makes its client the caller, so quotas, metrics and logs name
it. Internal routes need a valid token whose client lists the route (401
without one, 403 when the client lacks the route). The Origin rules of public
routes are `cors`'s.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from gateway.config import Client, Route
from gateway.errors import Forbidden, Unauthorized
from gateway.tokens import TokenTable

_BEARER = re.compile(rb"^[Bb][Ee][Aa][Rr][Ee][Rr] ([A-Za-z0-9\-._~+/]+=*)$")


@dataclass(frozen=True, slots=True)
class Caller:
    name: str  # the client's name, or "public"
    client: Client | None = None


PUBLIC = Caller("public")


class Access:
    def __init__(self, tokens: TokenTable) -> None:
        self._tokens = tokens

    def caller(self, authorization: bytes | None) -> Caller:
        """The caller named by an `Authorization` header: nobody (public), a client, or 401."""
        if authorization is None:
            return PUBLIC
        match = _BEARER.match(authorization)
        client = self._tokens.lookup(match.group(1).decode("ascii")) if match else None
        if client is None:
            raise Unauthorized()  # one answer for malformed and unknown tokens alike
        return Caller(client.name, client)

    @staticmethod
    def authorize(route: Route, caller: Caller) -> None:
        """401 or 403 unless `caller` may call `route`.

        On a public route a token only says who is calling: refusing it there
        would refuse what the same request without the token gets.
        """
        if route.access == "public":
            return
        if caller.client is None:
            raise Unauthorized()
        if not caller.client.allows(route.name):
            raise Forbidden()
