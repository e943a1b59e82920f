"""Callers for the unit tests of access and CORS: three bearer tokens and a parsed policy.

`ops` may call every route; `pricing` holds two tokens (the old and the new
of a rotation) and may call `catalog` and `inventory`. `catalog` is public,
`inventory` and `orders` internal.
"""

from __future__ import annotations

from gateway.config import Route
from gateway.policy import Policy, parse_policy
from tests.support.http import sha

OPS_TOKEN = "ops-token-1a2b3c"
OLD_TOKEN = "pricing-old-token-4d5e"
NEW_TOKEN = "pricing-new-token-6f7a"


def policy(origins: list[str] | None = None) -> Policy:
    """The policy, its CORS allow-list `origins` (none by default)."""
    data = {
        "cors": {"allow_origins": origins or []},
        "routes": [
            {"name": "catalog", "path": "/api/v2/public/catalog/{rest:path}",
             "methods": ["GET", "HEAD"], "credentials": ["api_key"], "access": "public"},
            {"name": "inventory", "path": "/api/v2/public/inventory/{rest:path}",
             "methods": ["GET"], "credentials": ["api_key"], "access": "internal"},
            {"name": "orders", "path": "/api/v2/orders/{rest:path}",
             "methods": ["GET"], "credentials": ["api_key"], "access": "internal"},
        ],
        "clients": [
            {"name": "ops", "token_sha256": sha(OPS_TOKEN), "routes": ["*"]},
            {"name": "pricing", "token_sha256": [sha(OLD_TOKEN), sha(NEW_TOKEN)],
             "routes": ["catalog", "inventory"]},
        ],
    }
    return parse_policy(data)


def route(p: Policy, name: str) -> Route:
    return next(r for r in p.routes if r.name == name)
