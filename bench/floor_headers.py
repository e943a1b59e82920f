"""What the two floor proxies forward and add: one definition for both.

Standard library only, so that both floors import it from their own venvs
(bench/.venv-floor-aiohttp, bench/.venv-floor-granian). Not part of the product.
"""

from __future__ import annotations

import os

HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-connection", "te", "trailer",
                        "transfer-encoding", "upgrade"})
# Never forwarded: hop-by-hop, the caller's Host, and what a caller must not pass on.
NOT_FORWARDED = HOP_BY_HOP | {"host", "authorization", "cookie", "content-length"}


def credential_headers() -> dict[str, str]:
    """The three Reusely headers, from the environment (as the gateway's settings are)."""
    return {"x-api-key": os.environ["REUSELY_API_KEY"],
            "x-tenant-id": os.environ["REUSELY_TENANT_ID"],
            "x-secret-key": os.environ["REUSELY_SECRET_KEY"]}


def base_url() -> str:
    return os.environ["REUSELY_BASE_URL"].rstrip("/")
