"""`Exchange`: what one request has become so far.

Filled in along the request path (route, caller, status, what Reusely
answered, whether a limit refused it) and read once at the end by the metrics
and the access log. `headers` accumulates what the modules add to the answer
(CORS, cache status, idempotent replay) and `limit_headers` the latest limit
check's X-RateLimit-* and RateLimit fields; the one writer
(`respond.Reply`) sends them with whatever answer the request gets.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gateway.errors import Headers


@dataclass(slots=True)
class Exchange:
    request_id: bytes
    method: str
    path: str
    route: str = "unmatched"
    client: str = "public"
    status: int = 0
    upstream_status: int | None = None
    limited: bool = False
    started: bool = False
    headers: Headers = field(default_factory=list)
    limit_headers: Headers = field(default_factory=list)  # the latest limit check's
