"""The caller's request body: read bounded, and read once the way Reusely reads it.

Most routes stream the body through untouched (`stream`), bounded by the
route's `max_body_bytes` whether or not a Content-Length was sent. Routes with
`body:` limits must find the fields they count (`keyed_values`), and what the
gateway counts must be what Reusely reads, or an attacker counts as a decoy
while Reusely reads the victim. So a body-keyed request is accepted only in the
one form both sides read alike:

- its body is JSON (exactly one `Content-Type`, `application/json` or
  `application/*+json`, any parameters), else 415: a form-encoded body that
  merely looks like JSON would be read as a form by Reusely;
- it is UTF-8 JSON whose objects name no key twice (parsers disagree on which
  duplicate wins), else 400;
- its query string names none of the route's body fields (`?email=`,
  case-insensitively, `customer[email]` naming `customer.email`), else 400:
  a framework that merges query and body would read the query's value;
- a field's value is a string (or `null`: absent), valid Unicode (a lone
  surrogate, escaped, is refused) with no control character left once
  normalised (a NUL would make a fresh key for the same mailbox), else 400.
"""

from __future__ import annotations

import asyncio
import json
import unicodedata
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, MutableMapping
from typing import Any
from urllib.parse import unquote_to_bytes

from gateway.config import Route
from gateway.errors import (
    ClientDisconnected,
    InvalidBody,
    PayloadTooLarge,
    RequestTimeout,
    UnsupportedMediaType,
)
from gateway.limitkeys import normalise

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]


SMALL = 4096  # bytes: a body this size costs less to read and parse than a Redis call
FIRST_WAIT = 0.05  # seconds a small body may take to follow its head before the cheap check


def is_small(headers: dict[bytes, bytes], read: bytes | None) -> bool:
    """A body known to be at most SMALL bytes: none, a small Content-Length, or read."""
    if read is not None:
        return len(read) <= SMALL
    if b"transfer-encoding" in headers:
        return False
    length = headers.get(b"content-length", b"0").strip(b" ")
    return length.isdigit() and int(length) <= SMALL


async def read_whole(route: Route, headers: dict[bytes, bytes], receive: Receive) -> bytes:
    """A route's whole body, bounded by its `max_body_bytes` (an Idempotency-Key's case)."""
    check_length(headers, route.max_body_bytes)
    if not has_body(headers):
        return b""
    return await read(receive, route.max_body_bytes, route.timeout.write)


async def outgoing(route: Route, method: str, headers: dict[bytes, bytes],
                   receive: Receive) -> bytes | AsyncIterator[bytes] | None:
    """What goes to Reusely of a request's body: streamed as it arrives, bounded.

    A GET or HEAD has no use for a body: one that comes anyway is read (bounded,
    and within the route's write timeout) before a connection to Reusely is
    taken, so a caller trickling a body cannot hold connections of the pool.
    """
    check_length(headers, route.max_body_bytes)
    if not has_body(headers):
        return None
    if method in ("GET", "HEAD"):
        return await read(receive, route.max_body_bytes, route.timeout.write)
    return stream(receive, route.max_body_bytes, route.timeout.write)


async def read_keyed(route: Route, query: bytes, headers: dict[bytes, bytes],
                     raw_headers: Iterable[tuple[bytes, bytes]], receive: Receive,
                     read_already: bytes | None, first: Message | None = None,
                     ) -> tuple[bytes, dict[str, str]]:
    """A body-keyed route's body, read once (unless `read_already`), and its keyed values.

    `first` is the body's first message when it was already received.
    """
    check_query(query, route.body_fields)
    check_length(headers, route.max_body_bytes)
    if not has_body(headers):
        return b"", {}
    check_media_type(raw_headers)
    raw = read_already if read_already is not None else await read(
        receive, route.max_body_bytes, route.timeout.write, first)
    return raw, keyed_values(raw, route.body_fields)


async def first_message(receive: Receive, wait: float) -> Message | None:
    """The body's first message if it comes within `wait` seconds, else None (nothing lost)."""
    try:
        async with asyncio.timeout(wait):
            return await receive()
    except TimeoutError:
        return None


def has_body(headers: dict[bytes, bytes]) -> bool:
    length = headers.get(b"content-length")
    return (length is not None and length.strip(b" ") != b"0") or b"transfer-encoding" in headers


def check_length(headers: dict[bytes, bytes], limit: int) -> None:
    """413 at once when the declared Content-Length is over the route's limit."""
    length = headers.get(b"content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise PayloadTooLarge()


async def stream(receive: Receive, limit: int, within: float,
                 first: Message | None = None) -> AsyncIterator[bytes]:
    """The body's chunks as they arrive: 413 once more than `limit` bytes came, 408
    unless the whole body came within `within` seconds (a caller trickling a body
    must not hold the gateway's resources at will)."""
    deadline = asyncio.get_running_loop().time() + within
    size = 0
    message = first
    while True:
        if message is None:
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise RequestTimeout() from None
        if message["type"] == "http.disconnect":
            raise ClientDisconnected()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge()
        if chunk:
            yield chunk
        if not message.get("more_body"):
            return
        message = None


async def read(receive: Receive, limit: int, within: float,
               first: Message | None = None) -> bytes:
    return b"".join([chunk async for chunk in stream(receive, limit, within, first)])


def _is_json(value: bytes) -> bool:
    media = value.split(b";", 1)[0].strip().lower()
    return media == b"application/json" or (media.startswith(b"application/")
                                             and media.endswith(b"+json"))


def _has_control(value: str) -> bool:
    if value.isascii() and value.isprintable():
        return False
    return any(unicodedata.category(c) == "Cc" for c in value)


def check_media_type(raw_headers: Iterable[tuple[bytes, bytes]]) -> None:
    """415 unless exactly one Content-Type is sent and it is JSON."""
    types = [v for n, v in raw_headers if n == b"content-type"]
    if len(types) != 1 or not _is_json(types[0]):
        raise UnsupportedMediaType()


def _query_names(query: bytes) -> Iterable[str]:
    for part in query.replace(b";", b"&").split(b"&"):
        name = unquote_to_bytes(part.split(b"=", 1)[0].replace(b"+", b" "))
        text = name.decode("utf-8", "replace").strip().lower()
        # customer[email] and customer[email][] name customer.email
        yield text.replace("][", ".").replace("[", ".").replace("]", "").rstrip(".")


def check_query(query: bytes, fields: tuple[str, ...]) -> None:
    """400 when the query string names one of the route's body fields."""
    if not query:
        return
    wanted = {f.lower() for f in fields}
    for name in _query_names(query):
        if name in wanted:
            raise InvalidBody(f"The query string names the body field {name!r}: send it "
                              "in the JSON body only.")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise InvalidBody("The JSON body names a key twice.")
    return out


def keyed_values(body: bytes, fields: tuple[str, ...]) -> dict[str, str]:
    """`{"body:<field>": normalised value}` for each field present, or InvalidBody."""
    if not body:
        return {}
    try:
        data = json.loads(body.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except InvalidBody:
        raise
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise InvalidBody("The request body is not valid UTF-8 JSON.") from exc
    if not isinstance(data, dict):
        raise InvalidBody("The request body must be a JSON object.")
    values: dict[str, str] = {}
    for name in fields:
        node: Any = data
        for part in name.split("."):
            if node is None:
                break
            if not isinstance(node, dict):
                raise InvalidBody(f"The field {name!r} must be inside a JSON object.")
            node = node.get(part)
        if node is None:
            continue
        if not isinstance(node, str):
            raise InvalidBody(f"The field {name!r} must be a string.")
        try:
            node.encode("utf-8")
        except UnicodeEncodeError as exc:  # a lone surrogate, e.g. "\ud800"
            raise InvalidBody(f"The field {name!r} is not valid Unicode.") from exc
        value = normalise(name, node)
        if value is not None and _has_control(value):
            # "victim@example.com\0" would be a fresh key each time, while a reader
            # that trims NUL (as PHP's trim does) sees the victim's address.
            raise InvalidBody(f"The field {name!r} holds a control character.")
        if value is not None:
            values["body:" + name] = value
    return values
