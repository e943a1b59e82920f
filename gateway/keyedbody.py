"""A body-keyed route's body, read in the cheapest order the limits allow.

Split from app.py because the order is a decision of its own: the cheap
limits (ip, client, global) must answer a caller the same way whatever the
body, a large body must not be read before they let it, and a small one that
came with its head costs less to read than a Redis call (`read`).
"""

from __future__ import annotations

from gateway import body
from gateway.config import Route
from gateway.errors import InvalidBody, PayloadTooLarge, UnsupportedMediaType
from gateway.exchange import Exchange
from gateway.limiter import LimitCheck
from gateway.respond import Receive, Scope


async def read(route: Route, scope: Scope, headers: dict[bytes, bytes], receive: Receive,
               limits: LimitCheck | None, whole: bytes | None,
               ex: Exchange) -> tuple[bytes, dict[str, str]]:
    """A body-keyed route's body, read once and bounded, and the values it is counted by.

    `whole` is the body when it was read already (for an Idempotency-Key).
    The cheap limits (ip, client, global) answer first whatever the body. A large
    body, or one of unknown length, is not read before they are checked (one
    read-only Redis call). A small one (`body.SMALL`) costs less to read and
    parse than that call: when it came with its head (within `body.FIRST_WAIT`),
    it is read first and every limit is then decided in one call; if the body is
    refused (400, 413, 415), the cheap limits are checked before that answer, so
    the caller gets the same answer either way. A small body that does not come
    at once is waited for only after the cheap limits let it.
    """
    first = None  # the body's first message, when it came with its head
    deferred = False  # the cheap limits are checked in the one call, after the body
    if limits is not None:
        if body.is_small(headers, whole):
            pending = whole is None and body.has_body(headers)
            if pending:
                first = await body.first_message(receive, body.FIRST_WAIT)
            deferred = not pending or first is not None
        if not deferred:
            ex.limit_headers = await limits.cheap()
    try:
        return await body.read_keyed(route, scope["query_string"], headers, scope["headers"],
                                     receive, whole, first)
    except (InvalidBody, PayloadTooLarge, UnsupportedMediaType):
        if deferred and limits is not None:
            ex.limit_headers = await limits.cheap()
        raise
