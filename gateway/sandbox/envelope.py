"""The answers Reusely seems to give, in the envelope third-party code reads.

    {"status_code": 200, "message": "...", "result": {...}}

Lists sit under ``result.data`` next to a Laravel-like paginator
(``current_page``, ``last_page``, ``per_page``, ``total``, ``from``, ``to``);
validation failures are 400 with ``errors`` naming each field, as Laravel
does. Every sandbox module answers through these helpers so the shape never
drifts between areas.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

PER_PAGE = 15
INVALID = "The given data was invalid."

Errors = dict[str, list[str]]


def envelope(
    status: int, message: str, *, headers: Mapping[str, str] | None = None, **extra: Any
) -> JSONResponse:
    return JSONResponse({"status_code": status, "message": message, **extra}, status, headers)


def ok(result: Any, message: str = "Success", *, status: int = 200) -> JSONResponse:
    return envelope(status, message, result=result)


def invalid(errors: Errors) -> JSONResponse:
    return envelope(400, INVALID, errors=errors)


def not_found(message: str = "Not found.") -> JSONResponse:
    return envelope(404, message)


def unauthenticated() -> JSONResponse:
    return envelope(401, "Unauthenticated.")


def page_number(request: Request) -> int:
    raw = request.query_params.get("page", "1")
    return int(raw) if raw.isdigit() and 1 <= int(raw) <= 10_000 else 1


def paginate(request: Request, items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    page = page_number(request)
    start = (page - 1) * PER_PAGE
    chunk = [dict(item) for item in items[start : start + PER_PAGE]]
    return {
        "current_page": page,
        "data": chunk,
        "from": start + 1 if chunk else None,
        "last_page": max(1, math.ceil(len(items) / PER_PAGE)),
        "per_page": PER_PAGE,
        "to": start + len(chunk) if chunk else None,
        "total": len(items),
    }


async def json_object(request: Request) -> dict[str, Any] | JSONResponse:
    """The request body as a JSON object, or the 400 to answer instead."""
    try:
        body = json.loads(await request.body())
    except (ValueError, UnicodeDecodeError):
        return invalid({"body": ["The request body must be valid JSON."]})
    if not isinstance(body, dict):
        return invalid({"body": ["The request body must be a JSON object."]})
    return body


def required_string(body: Mapping[str, Any], field: str, errors: Errors) -> None:
    value = body.get(field)
    if value is None or (isinstance(value, str) and not value.strip()):
        errors[field] = [f"The {field} field is required."]
    elif not isinstance(value, str):
        errors[field] = [f"The {field} must be a string."]


def is_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
