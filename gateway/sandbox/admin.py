"""The merchant admin area (needs ``x-secret-key``), as third-party code calls it.

    GET  /api/v2/admin/orders?buyback_type=mail-in
    POST /api/v2/admin/pricing                       {product_id, conditions: [...]}
    GET  /api/v2/admin/products/{productId}/pricing

Pricing bodies are ``{"product_id": 1, "conditions": [{"name": "Good",
"price": 300, "is_custom_price": true}]}``; a price set here is what the
catalog's ``condition`` read shows from then on, in the same app.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from gateway.sandbox.catalog import CONDITIONS, PRODUCTS, Condition, Pricing, Product
from gateway.sandbox.envelope import Errors, invalid, is_id, json_object, not_found, ok, paginate

MAX_PRICE = 100_000

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


def _price_changes(body: dict[str, Any], errors: Errors) -> list[tuple[Condition, float]]:
    rows = body.get("conditions")
    if not isinstance(rows, list) or not rows:
        errors["conditions"] = ["The conditions must be a non-empty array."]
        return []
    by_name = {c.name.lower(): c for c in CONDITIONS}
    changes = []
    for index, row in enumerate(rows):
        where = f"conditions.{index}"
        if not isinstance(row, dict):
            errors[where] = [f"The {where} must be an object."]
            continue
        name: Any = row.get("name")
        price: Any = row.get("price")
        condition = by_name.get(name.strip().lower()) if isinstance(name, str) else None
        if condition is None:
            errors[f"{where}.name"] = [f"The selected {where}.name is invalid."]
        number = isinstance(price, int | float) and not isinstance(price, bool)
        if not number or not 0 <= price <= MAX_PRICE:
            errors[f"{where}.price"] = [f"The {where}.price must be between 0 and {MAX_PRICE}."]
        custom = row.get("is_custom_price", True)
        if not isinstance(custom, bool):
            errors[f"{where}.is_custom_price"] = [
                f"The {where}.is_custom_price must be true or false."
            ]
        if condition is not None and number and not errors:
            changes.append((condition, round(float(price), 2)))
    return changes


def _pricing_result(pricing: Pricing, product: Product) -> dict[str, Any]:
    return {"product_id": product.id, "name": product.name, "pricing": pricing.rows(product)}


class Admin:
    """Orders and pricing, sharing one app's :class:`Pricing` with the catalog."""

    def __init__(self, pricing: Pricing) -> None:
        self.pricing = pricing

    async def orders(self, request: Request) -> Response:
        kind = request.query_params.get("buyback_type")
        items = [o for o in ORDERS if kind in (None, o["buyback_type"])]
        return ok(paginate(request, items), "Orders retrieved")

    async def set_pricing(self, request: Request) -> Response:
        body = await json_object(request)
        if isinstance(body, JSONResponse):
            return body
        errors: Errors = {}
        product_id: Any = body.get("product_id")
        product = PRODUCTS.get(product_id) if is_id(product_id) else None
        if product is None:
            errors["product_id"] = ["The selected product_id is invalid."]
        changes = _price_changes(body, errors)
        if errors or product is None:
            return invalid(errors)
        for condition, price in changes:
            self.pricing.set(product, condition, price)
        return ok(_pricing_result(self.pricing, product), "Pricing updated")

    async def product_pricing(self, request: Request) -> Response:
        raw = request.path_params["product_id"]
        product = PRODUCTS.get(int(raw)) if raw.isdigit() and len(raw) < 10 else None
        if product is None:
            return not_found("Product not found.")
        return ok(_pricing_result(self.pricing, product), "Pricing retrieved")
