"""Header hygiene both ways: what may reach Reusely, and what may reach the caller.

To Reusely go the caller's headers minus what would change the request's
meaning or identity there. Hop-by-hop headers (and those `Connection`
lists) belong to one connection. Credentials, `Authorization` and `Cookie`
are the gateway's or the caller's own, never Reusely's business. Addressing
headers are the gateway's to write (`X-Forwarded-For`, `-Proto`) or must not
be believed at all (`Forwarded`, `X-Real-IP`, `X-Forwarded-Host`, ...). The
method and URL overrides (`X-HTTP-Method-Override`, `X-Original-URL`, ...)
would let a caller send a different request than the one the gateway judged.
A name holding `_` is dropped because CGI-style servers (PHP-FPM and the
like) turn `-` and `_` alike into `_`: `x_api_key` would reach the
application as `HTTP_X_API_KEY`, beside or instead of the gateway's own
`x-api-key` (nginx drops such names by default for the same reason).

To the caller go Reusely's headers minus hop-by-hop ones, cookies, CORS
headers (the gateway answers CORS per route and origin), credential-named
headers, and any header whose value holds a credential value (an
`X-Debug-Auth: key=...` echo), whatever its name.

Both run on every request: one pass over the list, frozenset lookups, no regex.
ASGI servers give request header names lower-cased; Reusely's are lowered here.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

from gateway.config import CREDENTIAL_HEADERS

HOP_BY_HOP = frozenset({
    b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"te",
    b"trailer", b"transfer-encoding", b"upgrade", b"proxy-connection",
})
CREDENTIAL_NAMES = frozenset(h.encode() for h in CREDENTIAL_HEADERS.values())
# Headers that would make Reusely (or a server in front of it) see another
# method, URL, host or caller than the one the gateway judged.
MEANING_CHANGING = frozenset({
    b"x-http-method-override", b"x-http-method", b"x-method-override",
    b"x-original-url", b"x-rewrite-url",
    b"x-forwarded-host", b"x-forwarded-port", b"x-forwarded-prefix", b"x-forwarded-server",
    b"true-client-ip", b"cf-connecting-ip", b"x-client-ip", b"x-real-ip", b"forwarded",
})
# Never forwarded to Reusely: besides hop-by-hop, credentials and the above,
# what the gateway sets itself and what belongs to the caller alone.
REQUEST_DROP = HOP_BY_HOP | CREDENTIAL_NAMES | MEANING_CHANGING | frozenset({
    b"host", b"authorization", b"cookie", b"x-forwarded-for", b"x-forwarded-proto",
    b"x-request-id", b"expect",
})
RESPONSE_DROP = HOP_BY_HOP | CREDENTIAL_NAMES | frozenset({
    b"set-cookie", b"set-cookie2", b"x-request-id", b"date",  # uvicorn sets Date
})
# A credential value shorter than this is not looked for in answers: it would
# match innocent values, and a real Reusely credential is far longer.
MIN_SECRET_BYTES = 8
_UNDERSCORE = ord("_")  # `int in bytes` is a memchr; `b"_" in bytes` costs 8x more


# What a `Connection` header may not remove: the body's framing and media type
# were judged by the gateway (a body-keyed route reads only JSON); Reusely must
# get them as judged, not a body with its Content-Type taken away.
END_TO_END = frozenset({b"content-type", b"content-length"})


def _connection_listed(headers: Iterable[tuple[bytes, bytes]]) -> frozenset[bytes]:
    listed: set[bytes] = set()
    for name, value in headers:
        if name.lower() == b"connection":
            listed.update(v.strip().lower() for v in value.split(b","))
    return frozenset(listed - END_TO_END)


def keep_last(raw: list[tuple[bytes, bytes]],
              names: frozenset[bytes]) -> list[tuple[bytes, bytes]]:
    """Only the last of each of `names` when sent more than once: the one a limit counted.

    A `header:` limit counts one value; Reusely must not read another copy.
    """
    last = {n: i for i, (n, _) in enumerate(raw) if n in names}
    return [(n, v) for i, (n, v) in enumerate(raw) if n not in names or last[n] == i]


def clean_request_headers(raw: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The caller's headers that may reach Reusely (names as the ASGI server lowered them)."""
    listed = _connection_listed(raw)
    return [(n, v) for n, v in raw
            if n not in REQUEST_DROP and _UNDERSCORE not in n and (not listed or n not in listed)]


def clean_response_headers(raw: list[tuple[bytes, bytes]],
                           secret_values: Collection[bytes]) -> list[tuple[bytes, bytes]]:
    """Reusely's headers that may reach the caller, names lowered.

    `secret_values` are every credential value configured since start-up;
    a header whose value holds one (of MIN_SECRET_BYTES or more) is dropped.
    Values are searched once, joined; only when a credential is found there
    is each header searched for it (a credential holds no line break, so a
    match across two joined values is not a false drop, just a closer look).
    """
    listed = _connection_listed(raw)
    out = []
    values = []
    for name, value in raw:
        lower = name.lower()
        if lower in RESPONSE_DROP or (listed and lower in listed):
            continue
        if lower.startswith(b"access-control-"):
            continue  # CORS is the gateway's to answer, per route and origin
        out.append((lower, value))
        values.append(value)
    if not secret_values or not out:
        return out
    joined = b"\n".join(values)
    found = [s for s in secret_values if len(s) >= MIN_SECRET_BYTES and s in joined]
    if not found:
        return out
    return [(name, value) for name, value in out if not any(s in value for s in found)]
