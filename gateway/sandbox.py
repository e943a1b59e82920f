"""A small stand-in for Reusely's API, for offline work, demos and tests.

It answers only the paths named in ``reusely-api.md`` (docs and third-party
code), in the envelope seen in the wild::

    {"status_code": 200, "message": "...", "result": {...}}

with lists under ``result.data`` next to a Laravel-like paginator
(``current_page``, ``last_page``, ``per_page``, ``total``, ``from``, ``to``).

    GET  /api/v2/public/catalog/categories
    GET  /api/v2/public/catalog/category-brand/{category_slug}
    GET  /api/v2/public/catalog/model-device/{brand_slug}/{device_slug}
    GET  /api/v2/public/catalog/spec?brand=&model=
    GET  /api/v2/public/catalog/condition?brand=&spec[model]=&spec[size]=
    POST /api/v3/public/offer/mail-in
    GET  /api/v2/admin/orders                     (needs x-secret-key too)

Every request needs ``x-api-key`` (and ``x-tenant-id`` when one is
configured); ``/api/v2/admin/`` also needs ``x-secret-key``. Otherwise 401
``{"status_code": 401, "message": "Unauthenticated."}``. Credentials are
compared in constant time and never echoed back.

The fixed catalog: categories ``phones`` and ``tablets``; devices
``apple/iphone``, ``samsung/galaxy`` (phones) and ``apple/ipad`` (tablets);
four models with two sizes each, giving products 1 to 8 (in the order
iphone-15 128gb, 256gb, iphone-14 128gb, 256gb, galaxy-s24 128gb, 256gb,
ipad-air-5 64gb, 256gb); conditions 1 (Flawless), 2 (Good), 3 (Broken).

The mail-in checkout counts requests per email (trimmed, lower-cased) over
a moving hour, as a throttle in front of validation would, and refuses the
sixth with 429 ``{"status_code": 429, "message": "Too many requests for
this email"}``. All state lives inside the app built by :func:`create_app`.
"""

from __future__ import annotations

import hmac
import json
import math
import re
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["create_app"]

PER_PAGE = 15
MAIL_IN_LIMIT = 5
MAIL_IN_WINDOW = 3600.0
ADMIN_PREFIX = "/api/v2/admin/"
INVALID = "The given data was invalid."

Errors = dict[str, list[str]]


# --- the fixed catalog (immutable) -------------------------------------------


@dataclass(frozen=True)
class _Category:
    id: int
    slug: str
    name: str


@dataclass(frozen=True)
class _Device:
    id: int
    category: str
    brand_slug: str
    brand_name: str
    slug: str
    name: str


@dataclass(frozen=True)
class _Model:
    id: int
    brand: str
    device: str
    slug: str
    name: str
    sizes: tuple[tuple[str, str, int], ...]  # (slug, name, price when flawless)


@dataclass(frozen=True)
class _Condition:
    id: int
    name: str
    factor: float
    terms: tuple[str, ...]


CATEGORIES = (_Category(1, "phones", "Phones"), _Category(2, "tablets", "Tablets"))
DEVICES = (
    _Device(1, "phones", "apple", "Apple", "iphone", "iPhone"),
    _Device(2, "phones", "samsung", "Samsung", "galaxy", "Galaxy"),
    _Device(3, "tablets", "apple", "Apple", "ipad", "iPad"),
)
MODELS = (
    _Model(
        1,
        "apple",
        "iphone",
        "iphone-15",
        "iPhone 15",
        (("128gb", "128 GB", 420), ("256gb", "256 GB", 480)),
    ),
    _Model(
        2,
        "apple",
        "iphone",
        "iphone-14",
        "iPhone 14",
        (("128gb", "128 GB", 300), ("256gb", "256 GB", 350)),
    ),
    _Model(
        3,
        "samsung",
        "galaxy",
        "galaxy-s24",
        "Galaxy S24",
        (("128gb", "128 GB", 360), ("256gb", "256 GB", 400)),
    ),
    _Model(
        4,
        "apple",
        "ipad",
        "ipad-air-5",
        "iPad Air (5th gen)",
        (("64gb", "64 GB", 250), ("256gb", "256 GB", 310)),
    ),
)
CONDITIONS = (
    _Condition(1, "Flawless", 1.0, ("Powers on and works fully", "No scratches or dents")),
    _Condition(2, "Good", 0.75, ("Powers on and works fully", "Light signs of wear")),
    _Condition(3, "Broken", 0.3, ("Cracked screen or back", "Or does not power on")),
)
# product_id -> (model, size slug, size name, flawless price); ids 1..8
PRODUCTS: Mapping[int, tuple[_Model, str, str, int]] = MappingProxyType(
    {
        index: (model, size[0], size[1], size[2])
        for index, (model, size) in enumerate(((m, s) for m in MODELS for s in m.sizes), start=1)
    }
)
CONDITION_IDS = frozenset(c.id for c in CONDITIONS)
ORDERS: tuple[Mapping[str, Any], ...] = tuple(
    MappingProxyType(o)
    for o in (
        {
            "id": 5001,
            "box_id": "BOX-5001",
            "buyback_type": "mail-in",
            "status": "Pending",
            "customer_name": "Ada Lovelace",
            "customer_email": "ada@example.com",
            "payout_total": 315,
            "created_at": "2025-01-06T10:00:00Z",
        },
        {
            "id": 5002,
            "box_id": "BOX-5002",
            "buyback_type": "in-store",
            "status": "Paid",
            "customer_name": "Alan Turing",
            "customer_email": "alan@example.com",
            "payout_total": 126,
            "created_at": "2025-01-07T15:30:00Z",
        },
    )
)
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


# --- responses ---------------------------------------------------------------


def _envelope(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"status_code": status, "message": message, **extra}, status)


def _ok(result: Any, message: str = "Success") -> JSONResponse:
    return _envelope(200, message, result=result)


def _invalid(errors: Errors) -> JSONResponse:
    return _envelope(400, INVALID, errors=errors)


def _not_found(message: str = "Not found.") -> JSONResponse:
    return _envelope(404, message)


def _page_number(request: Request) -> int:
    raw = request.query_params.get("page", "1")
    return int(raw) if raw.isdigit() and int(raw) >= 1 else 1


def _paginate(request: Request, items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    page = _page_number(request)
    start = (page - 1) * PER_PAGE
    chunk = list(items[start : start + PER_PAGE])
    return {
        "current_page": page,
        "data": chunk,
        "from": start + 1 if chunk else None,
        "last_page": max(1, math.ceil(len(items) / PER_PAGE)),
        "per_page": PER_PAGE,
        "to": start + len(chunk) if chunk else None,
        "total": len(items),
    }


# --- authentication ----------------------------------------------------------


def _same(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


class _RequireKeys:
    """Answers 401 before routing unless the request carries the right keys."""

    def __init__(
        self, app: ASGIApp, *, api_key: str, secret_key: str, tenant_id: str | None
    ) -> None:
        self.app = app
        self.api_key = api_key
        self.secret_key = secret_key
        self.tenant_id = tenant_id

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not self._allowed(scope):
            response = _envelope(401, "Unauthenticated.")
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _allowed(self, scope: Scope) -> bool:
        headers = Headers(scope=scope)
        if not _same(headers.get("x-api-key"), self.api_key):
            return False
        if self.tenant_id is not None and not _same(headers.get("x-tenant-id"), self.tenant_id):
            return False
        path: str = scope["path"]
        return not (
            path.startswith(ADMIN_PREFIX)
            and not _same(headers.get("x-secret-key"), self.secret_key)
        )


# --- catalog -----------------------------------------------------------------


async def categories(request: Request) -> Response:
    items = [{"id": c.id, "name": c.name, "slug": c.slug} for c in CATEGORIES]
    return _ok(_paginate(request, items), "Categories retrieved")


async def category_brand(request: Request) -> Response:
    slug = request.path_params["category_slug"]
    if not any(c.slug == slug for c in CATEGORIES):
        return _not_found("Category not found.")
    items = [
        {
            "id": d.id,
            "name": d.name,
            "slug": d.slug,
            "brand": {"name": d.brand_name, "slug": d.brand_slug},
        }
        for d in DEVICES
        if d.category == slug
    ]
    return _ok(_paginate(request, items), "Devices retrieved")


async def model_device(request: Request) -> Response:
    brand, device = request.path_params["brand_slug"], request.path_params["device_slug"]
    if not any(d.brand_slug == brand and d.slug == device for d in DEVICES):
        return _not_found("Device not found.")
    items = [
        {"model_id": m.id, "name": m.name, "slug": m.slug}
        for m in MODELS
        if m.brand == brand and m.device == device
    ]
    return _ok(_paginate(request, items), "Models retrieved")


def _find_model(request: Request, model_param: str) -> tuple[_Model | None, Errors]:
    brand = request.query_params.get("brand", "")
    model = request.query_params.get(model_param, "")
    errors: Errors = {}
    for name, value in (("brand", brand), (model_param, model)):
        if not value:
            errors[name] = [f"The {name} field is required."]
    found = next((m for m in MODELS if m.brand == brand and m.slug == model), None)
    return found, errors


async def spec(request: Request) -> Response:
    model, errors = _find_model(request, "model")
    if errors:
        return _invalid(errors)
    if model is None:
        return _not_found("Model not found.")
    choices = [{"slug": slug, "name": name} for slug, name, _ in model.sizes]
    return _ok({"size": {"title": "Size", "choices": choices}}, "Specifications retrieved")


async def condition(request: Request) -> Response:
    model, errors = _find_model(request, "spec[model]")
    size = request.query_params.get("spec[size]", "")
    if not size:
        errors["spec[size]"] = ["The spec[size] field is required."]
    if errors:
        return _invalid(errors)
    product = next(
        (
            (pid, name, price)
            for pid, (m, slug, name, price) in PRODUCTS.items()
            if m == model and slug == size
        ),
        None,
    )
    if model is None or product is None:
        return _not_found("Product not found.")
    product_id, size_name, price = product
    conditions = [
        {
            "id": c.id,
            "name": c.name,
            "price": round(price * c.factor),
            "terms": {"title": c.name, "content": list(c.terms)},
        }
        for c in CONDITIONS
    ]
    result = {
        "product": {"product_id": product_id, "name": f"{model.name} {size_name}"},
        "conditions": conditions,
    }
    return _ok(result, "Conditions retrieved")


# --- mail-in checkout --------------------------------------------------------


def _required_string(body: dict[str, Any], field: str, errors: Errors) -> None:
    value = body.get(field)
    if value is None or (isinstance(value, str) and not value.strip()):
        errors[field] = [f"The {field} field is required."]
    elif not isinstance(value, str):
        errors[field] = [f"The {field} must be a string."]


def _is_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _validate_offer_detail(value: Any, errors: Errors) -> None:
    if not isinstance(value, list) or not value:
        errors["offer_detail"] = ["The offer_detail must be a non-empty array."]
        return
    for index, item in enumerate(value):
        where = f"offer_detail.{index}"
        if not isinstance(item, dict):
            errors[where] = [f"The {where} must be an object."]
            continue
        if not _is_id(item.get("product_id")) or item["product_id"] not in PRODUCTS:
            errors[f"{where}.product_id"] = [f"The selected {where}.product_id is invalid."]
        if not _is_id(item.get("condition_id")) or item["condition_id"] not in CONDITION_IDS:
            errors[f"{where}.condition_id"] = [f"The selected {where}.condition_id is invalid."]


def _validate_mail_in(body: dict[str, Any]) -> Errors:
    errors: Errors = {}
    for field in ("first_name", "last_name", "payout_method"):
        _required_string(body, field, errors)
    _validate_offer_detail(body.get("offer_detail"), errors)
    email, phone = body.get("email"), body.get("phone")
    if email in (None, "") and phone in (None, ""):
        errors["email"] = ["The email field is required when phone is not present."]
    if email not in (None, "") and not (isinstance(email, str) and EMAIL_RE.match(email.strip())):
        errors["email"] = ["The email must be a valid email address."]
    digits = re.sub(r"\D", "", phone) if isinstance(phone, str) else ""
    if phone not in (None, "") and len(digits) < 7:
        errors["phone"] = ["The phone must be a valid phone number."]
    return errors


class _EmailThrottle:
    """At most ``limit`` requests per normalised email in any ``window`` seconds."""

    def __init__(self, clock: Callable[[], float], limit: int, window: float) -> None:
        self.clock = clock
        self.limit = limit
        self.window = window
        self.hits: dict[str, deque[float]] = {}

    def hit(self, email: str) -> bool:
        now = self.clock()
        key = email.strip().lower()
        hits = self.hits.setdefault(key, deque())
        while hits and hits[0] <= now - self.window:
            hits.popleft()
        if len(hits) >= self.limit:
            return False
        hits.append(now)
        return True


def _mail_in_endpoint(clock: Callable[[], float]) -> Callable[[Request], Awaitable[Response]]:
    throttle = _EmailThrottle(clock, MAIL_IN_LIMIT, MAIL_IN_WINDOW)
    counter = iter(range(100001, 10**9))

    async def mail_in(request: Request) -> Response:
        try:
            body = json.loads(await request.body())
        except (ValueError, UnicodeDecodeError):
            return _invalid({"body": ["The request body must be valid JSON."]})
        if not isinstance(body, dict):
            return _invalid({"body": ["The request body must be a JSON object."]})
        email = body.get("email")
        if isinstance(email, str) and email.strip() and not throttle.hit(email):
            return _envelope(429, "Too many requests for this email")
        errors = _validate_mail_in(body)
        if errors:
            return _invalid(errors)
        offer_id = next(counter)
        result = {
            "offer_id": offer_id,
            "box_id": f"BOX-{offer_id}",
            "auth_token": secrets.token_urlsafe(24),
        }
        return _envelope(201, "Offer created", result=result)

    return mail_in


# --- admin (secret area) -----------------------------------------------------


async def admin_orders(request: Request) -> Response:
    kind = request.query_params.get("buyback_type")
    items = [dict(o) for o in ORDERS if kind in (None, o["buyback_type"])]
    return _ok(_paginate(request, items), "Orders retrieved")


# --- the app -----------------------------------------------------------------


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    messages = {404: "Not found.", 405: "Method not allowed."}
    response = _envelope(exc.status_code, messages.get(exc.status_code, exc.detail))
    if exc.headers:
        response.headers.update(exc.headers)
    return response


def create_app(
    *,
    api_key: str,
    secret_key: str,
    tenant_id: str | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Starlette:
    """Build a sandbox app checking these credentials; ``clock`` drives the email limit."""
    catalog = "/api/v2/public/catalog"
    routes = [
        Route(f"{catalog}/categories", categories, methods=["GET"]),
        Route(f"{catalog}/category-brand/{{category_slug}}", category_brand, methods=["GET"]),
        Route(
            f"{catalog}/model-device/{{brand_slug}}/{{device_slug}}",
            model_device,
            methods=["GET"],
        ),
        Route(f"{catalog}/spec", spec, methods=["GET"]),
        Route(f"{catalog}/condition", condition, methods=["GET"]),
        Route("/api/v3/public/offer/mail-in", _mail_in_endpoint(clock), methods=["POST"]),
        Route(f"{ADMIN_PREFIX}orders", admin_orders, methods=["GET"]),
    ]
    middleware = [
        Middleware(_RequireKeys, api_key=api_key, secret_key=secret_key, tenant_id=tenant_id)
    ]
    return Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers={HTTPException: _http_error},
    )
